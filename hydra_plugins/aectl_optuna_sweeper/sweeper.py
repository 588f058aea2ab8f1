"""The plugin class Hydra finds (`hydra/sweeper=aectl_optuna`); optuna is imported only when a
sweep uses it, so every other `aectl train` starts without it. Without the [optuna] extra there
is no class to find, and no import error for Hydra to warn about (config.py)."""

from . import config  # registers hydra/sweeper=aectl_optuna

if config.OptunaSweeperConf is not None:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

    class AectlOptunaSweeper(OptunaSweeper):
        def __init__(self, **kwargs) -> None:
            from ._impl import ResumableOptunaSweeperImpl

            self.sweeper = ResumableOptunaSweeperImpl(**kwargs)
