"""The command-line edge: Hydra applications over the package (``moo-train``, ``moo-evaluate``;
``python train.py`` and ``python evaluate.py`` in a checkout). With the configs,
the only part of the package that imports Hydra."""
