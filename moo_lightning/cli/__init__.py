"""The command-line edge: Hydra applications over the package (``moo-train``, ``moo-evaluate``;
``python train.py`` and ``python evaluate.py`` in a checkout). The only modules that import Hydra."""
