"""Errors that train.py reports as one line although they are raised once training is set up."""

from __future__ import annotations


class ConfigError(ValueError):
    """A wrong setting that can only be detected once training has been set up (the module's
    parameters or features are needed): reported by train.py as one line, like the bad input
    caught before training, while other errors raised during training keep their traceback."""
