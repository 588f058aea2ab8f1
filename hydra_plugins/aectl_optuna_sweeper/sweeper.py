"""The plugin class Hydra finds (`hydra/sweeper=aectl_optuna`): a resumable Optuna search on the
ask/tell API. The study (in storage: by default a journal file in the sweep folder) is the record
of the search, so rerunning the same command continues it:

- n_trials is the size of the study, not of this run: a rerun asks only the missing trials;
- job number = trial number, so each trial has its own folder <sweep.dir>/<num> (with
  hydra.sweep.subdir=${hydra.job.num}) and a rerun never writes into a finished trial's folder;
- a trial still RUNNING when the sweep starts was cut off with its controller (one controller per
  study): with parameters it is launched again with them, continuing its folder's last.pt
  (trainer.resume=auto); without parameters (cut off between ask and sampling) it is told FAIL and
  a new trial is asked, never launched empty;
- a seeded sampler is seeded with seed + trials already in the study, so a rerun never replays;
- a job that raises, or returns a non-finite or non-numeric objective, is told as FAIL.
"""

import logging
import os

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from . import config  # noqa: F401  registers hydra/sweeper=aectl_optuna

log = logging.getLogger(__name__)


class AectlOptunaSweeper(Sweeper):
    def __init__(self, **conf) -> None:
        self.conf = OmegaConf.merge(OmegaConf.structured(config.AectlOptunaSweeperConf), conf)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                               task_function=task_function, config=config)
        self.sweep_dir = config.hydra.sweep.dir

    def sweep(self, arguments: list[str]) -> None:
        from ._impl import run_study

        params = [f"{k}={v}" for k, v in (self.conf.params or {}).items()]
        run_study(self, [*params, *arguments])

    def launch(self, overrides: list[list[str]], first_number: int):
        # job number = trial number, and trial n's folder is <sweep.dir>/<n>: never reused by a rerun
        folder = "hydra.sweep.subdir=${hydra.job.num}"
        return self.launcher.launch([(*o, folder) for o in overrides], initial_job_idx=first_number)

    def monitor(self) -> list[str]:
        monitor = OmegaConf.select(self.config, "trainer.monitor")
        return list(monitor) if OmegaConf.is_list(monitor) else [monitor]

    def environ(self) -> dict:
        return os.environ
