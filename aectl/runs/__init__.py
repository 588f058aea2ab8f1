"""Stage 6, the run folder: checkpoints, the folder's files and locks, TensorBoard, signals
and preemption, and how a run's numbers print everywhere (tables)."""
