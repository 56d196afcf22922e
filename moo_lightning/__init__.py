"""moo-lightning: multi-objective fine-tuning with pluggable gradient combiners."""

__version__ = "0.1.0"
