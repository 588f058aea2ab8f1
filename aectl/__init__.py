"""aectl: config-driven training, evaluation and comparison of autoencoders."""

__version__ = "0.1.0"
