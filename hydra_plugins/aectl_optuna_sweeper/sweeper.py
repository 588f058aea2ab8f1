"""The plugin class Hydra finds (`hydra/sweeper=aectl_optuna`); optuna is imported only when a
sweep uses it, so every other `aectl train` starts without it."""

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

from . import config  # noqa: F401  (registers hydra/sweeper=aectl_optuna)


class AectlOptunaSweeper(OptunaSweeper):
    def __init__(self, **kwargs) -> None:
        from ._impl import ResumableOptunaSweeperImpl

        self.sweeper = ResumableOptunaSweeperImpl(**kwargs)
