"""aectl: config-driven training, evaluation and comparison of autoencoders.

The Python API (aectl.api) is imported on first use, so `import aectl` stays cheap (no torch):
`aectl.train(overrides)`, `aectl.load(path)`, `aectl.evaluate(path, **options)`.
"""

__version__ = "0.1.0"
__all__ = ["train", "load", "evaluate", "Run", "Autoencoder"]


def __getattr__(name: str):
    if name in __all__:
        from aectl import api

        return getattr(api, name)
    raise AttributeError(f"module 'aectl' has no attribute {name!r}")
