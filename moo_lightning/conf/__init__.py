# The Hydra configs, shipped with the package (pkg://moo_lightning.conf) so an installed copy runs.
