"""Hydra sweeper `hydra/sweeper=aectl_optuna`: Hydra's Optuna sweeper, made resumable. It needs
the [optuna] extra; without it the plugin registers nothing (see config.py)."""
