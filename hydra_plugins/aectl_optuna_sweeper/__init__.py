"""Hydra sweeper `hydra/sweeper=aectl_optuna`: Hydra's Optuna sweeper, made resumable."""
