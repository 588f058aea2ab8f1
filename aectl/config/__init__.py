"""Stage 1, the config: the schema of every setting (train, eval, dataset) and the checks that
refuse a bad one in one line before anything runs. `aectl.config` re-exports the schema."""

from aectl.config.schema import *  # noqa: F401,F403 (the schema's public names, as before the move)
