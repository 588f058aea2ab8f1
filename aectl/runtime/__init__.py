"""Stage 2, the runtime: where a process runs and how it talks: the device, the torchrun
context and its collectives, and the progress bars."""
