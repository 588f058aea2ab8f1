"""Stage 5, the objective: the loss terms, each model's training objective, the KL weight's
schedule, and the metrics shared by training's validation and `aectl eval` (one definition)."""
