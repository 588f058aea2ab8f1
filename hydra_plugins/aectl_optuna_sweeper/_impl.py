"""A resumable Optuna sweep: the study (in storage, e.g. SQLite in the sweep folder) is the
record of the search, so rerunning the same command continues it.

- n_trials is the size of the study, not of this run: a rerun asks only the missing trials;
- job number = trial number, so each trial has its own folder <sweep.dir>/<num> (with
  hydra.sweep.subdir=${hydra.job.num}) and a rerun never writes into a finished trial's folder;
- a trial still RUNNING when the sweep starts was cut off with its controller (one controller
  per study): it is launched again with its own parameters and number, continuing its folder's
  checkpoints/last.pt (trainer.resume=auto) or starting afresh;
- a job that raises, or returns a non-finite or non-numeric objective, is told as FAIL.
"""

import logging
import math
from pathlib import Path

import optuna
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf
from optuna.trial import TrialState

from aectl.search_objective import check_search_objective

log = logging.getLogger(__name__)


class ResumableOptunaSweeperImpl(OptunaSweeperImpl):
    def sweep(self, arguments: list[str]) -> None:
        self._process_searchspace_config()
        distributions, fixed = create_params_from_overrides([*self._parse_sweeper_params_config(), *arguments])
        if self.search_space_distributions:
            distributions = {**self.search_space_distributions, **distributions}
        for name in fixed:
            distributions.pop(name, None)
        # One quantity for every trial: no training loss as the objective while sweeping what defines it.
        check_search_objective(OmegaConf.select(self.config, "trainer.monitor"), list(distributions))
        Path(self.sweep_dir).mkdir(parents=True, exist_ok=True)  # the SQLite file lives there
        study = optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=self.sampler,
                                    directions=self._get_directions(), load_if_exists=True)
        cut_off = [t for t in study.trials if t.state == TrialState.RUNNING]
        log.info("study %s in %s: %d of %d trials there, %d cut off (re-run), %d to ask", study.study_name,
                 self.storage, len(study.trials), self.n_trials, len(cut_off),
                 max(0, self.n_trials - len(study.trials)))
        for trial in cut_off:
            params = {**trial.params, **fixed, "trainer.resume": "auto"}
            self._run(study, [trial.number], [tuple(f"{k}={v}" for k, v in params.items())])
        while len(study.trials) < self.n_trials:
            batch = [study.ask() for _ in range(min(self.n_jobs, self.n_trials - len(study.trials)))]
            self._run(study, [t.number for t in batch], self._configure_trials(batch, distributions, fixed))
        self._save_results(study)

    def _run(self, study: optuna.Study, numbers: list[int], overrides) -> None:
        """Launch the trials `numbers` as jobs numbered alike, and tell the study each result."""
        consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        groups = [(numbers, overrides)] if consecutive else [([n], [o]) for n, o in zip(numbers, overrides)]
        for group, group_overrides in groups:
            returns = self.launcher.launch(list(group_overrides), initial_job_idx=group[0])
            for number, ret in zip(group, returns):
                try:
                    value = float(ret.return_value)  # re-raises the job's exception
                    if not math.isfinite(value):
                        raise ValueError(f"objective {value} is not finite")
                except Exception as err:  # any failure of one trial: record it, go on with the study
                    log.warning("trial %d failed: %s", number, err)
                    study.tell(number, state=TrialState.FAIL)
                    continue
                study.tell(number, value)

    def _save_results(self, study: optuna.Study) -> None:
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if not done:
            log.warning("no trial of study %s completed", study.study_name)
            return
        best = study.best_trial
        log.info("best trial %d: value %s, params %s", best.number, best.value, best.params)
        OmegaConf.save(OmegaConf.create({"name": "optuna", "best_trial": best.number, "best_params": best.params,
                                         "best_value": best.value}),
                       f"{self.sweep_dir}/optimization_results.yaml")
