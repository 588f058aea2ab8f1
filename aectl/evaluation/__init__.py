"""Stage 7, evaluation: per-split metrics (used by training's validation and by `aectl eval`),
`aectl eval` itself, and its tables and pictures."""
