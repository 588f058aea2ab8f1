"""The config node of `hydra/sweeper=aectl_optuna`: aectl's own sweeper on Optuna's ask/tell API.
Optuna is imported only when a sweep runs. Hydra imports every plugin module before each command
and warns about one that fails to import: without optuna (aectl depends on it, but an install
may leave it out, e.g. pip --no-deps) this module imports quietly and registers nothing, so
`hydra/sweeper=aectl_optuna` is simply not an option (aectl.cli.messages says how to add it)."""

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class SamplerConf:
    name: str = "tpe"  # tpe | random | cmaes | nsgaii | qmc
    seed: Optional[int] = None  # a rerun seeds with seed + trials already in the study: no replay


@dataclass
class PrunerConf:
    name: str = "none"  # none | median | hyperband | successive_halving
    n_startup_trials: int = 5  # median: trials that complete before any is pruned
    n_warmup_steps: int = 0  # median: epochs of every trial never pruned
    min_resource: Any = 1  # hyperband / successive_halving: epochs before the first rung ("auto" for hyperband)
    max_resource: Any = "auto"  # hyperband: the full number of epochs ("auto": from the trials)
    reduction_factor: int = 3  # hyperband / successive_halving: 1/reduction_factor of trials go on at each rung


@dataclass
class AectlOptunaSweeperConf:
    _target_: str = "hydra_plugins.aectl_optuna_sweeper.sweeper.AectlOptunaSweeper"
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    direction: Any = None  # minimize | maximize | a list; None: from trainer.monitor
    storage: Optional[str] = None  # any Optuna storage URL; None: a journal file in the sweep folder
    study_name: Optional[str] = None  # None: "aectl"
    n_trials: int = 20  # the size of the study: a rerun asks only the missing trials
    n_jobs: int = 1  # trials launched together (the basic launcher runs them one after the other)
    params: Optional[dict] = None  # the search space, as on the command line


OPTUNA_INSTALLED = importlib.util.find_spec("optuna") is not None  # found, not imported: a fast start
if OPTUNA_INSTALLED:
    ConfigStore.instance().store(group="hydra/sweeper", name="aectl_optuna", node=AectlOptunaSweeperConf,
                                 provider="aectl")
