"""Stage 8, training: the composition root (build), the loop (trainer), greedy pretraining,
lr schedules, the monitor's per-epoch score, non-finite guards, logs and the optimizer."""
