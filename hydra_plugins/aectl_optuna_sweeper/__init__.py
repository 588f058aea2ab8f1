"""Hydra sweeper `hydra/sweeper=aectl_optuna`: aectl's own resumable Optuna sweeper (see
sweeper.py). Without optuna installed the plugin registers nothing (see config.py)."""
