"""moo-lightning: multi-objective fine-tuning with pluggable gradient combiners."""

__version__ = "0.4.0"
