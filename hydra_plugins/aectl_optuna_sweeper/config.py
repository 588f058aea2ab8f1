"""The config node of `hydra/sweeper=aectl_optuna`: the stock Optuna sweeper's fields
(sampler, direction, storage, study_name, n_trials, n_jobs, params), with n_trials counting
every trial of the study and a failed trial never ending the study by default.

Hydra imports every plugin module before each command and prints six lines of warning for one
that fails to import; without the [optuna] extra (hydra-optuna-sweeper) this module and
sweeper.py import quietly and register nothing, so `hydra/sweeper=aectl_optuna` is simply
not an option (aectl.cli.messages says which extra adds it)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

try:
    from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
except ImportError:
    OptunaSweeperConf = None

if OptunaSweeperConf is not None:
    @dataclass
    class AectlOptunaSweeperConf(OptunaSweeperConf):
        _target_: str = "hydra_plugins.aectl_optuna_sweeper.sweeper.AectlOptunaSweeper"
        n_jobs: int = 1  # trials launched together (the basic launcher runs them one after the other)
        max_failure_rate: float = 1.0  # a failed trial is recorded as FAIL and the study goes on

    ConfigStore.instance().store(group="hydra/sweeper", name="aectl_optuna", node=AectlOptunaSweeperConf,
                                 provider="aectl")
