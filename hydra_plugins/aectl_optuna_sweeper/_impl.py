"""The search loop of aectl's Optuna sweeper (see sweeper.py for what a rerun does)."""

import fcntl
import json
import logging
import math
import os
import warnings
from pathlib import Path

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from aectl.config.errors import ConfigError
from aectl.config.monitoring import direction
from aectl.config.search_objective import check_search_objective
from aectl.runs.optuna_study import JOURNAL, TRIAL_ENV, make_pruner, open_storage

from ._space import params_overrides, search_space

log = logging.getLogger(__name__)
EXIT_AFTER_TELL = "AECTL_OPTUNA_EXIT_AFTER_TELL"  # tests: the controller dies hard after the k-th tell
EXIT_AFTER_ASK = "AECTL_OPTUNA_EXIT_AFTER_ASK"  # tests: ... after the k-th ask, before sampling
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "nsgaii": "NSGAIISampler",
            "qmc": "QMCSampler"}


def make_sampler(conf, n_trials_so_far: int):
    """A seeded sampler continues the search: seed + the trials already in the study, so a rerun
    never proposes the first run's sequence again (its model also learns from the stored trials)."""
    seed = None if conf.seed is None else int(conf.seed) + n_trials_so_far
    return getattr(optuna.samplers, SAMPLERS[conf.name])(seed=seed)


def directions(sweeper, metrics: list[str]) -> list[str]:
    given = sweeper.conf.direction
    if given is None:
        return [direction(m) for m in metrics]
    return list(given) if OmegaConf.is_list(given) else [given]


def storage_url(sweeper) -> tuple[str, str]:
    """(what the study file records, what to open): the journal file's name relative to the sweep dir."""
    if sweeper.conf.storage:
        return sweeper.conf.storage, sweeper.conf.storage
    return JOURNAL, str(Path(sweeper.sweep_dir).resolve() / JOURNAL)


class Exits:
    """Deterministic kill points for the tests of a killed controller."""

    def __init__(self) -> None:
        self.asks = self.tells = 0

    def after(self, what: str, env: str) -> None:
        setattr(self, what, getattr(self, what) + 1)
        if os.environ.get(env) and getattr(self, what) == int(os.environ[env]):
            os._exit(9)


def one_controller(sweep_dir: str):
    """A lock in the sweep folder held while this command runs the study: a second controller is
    refused before it asks or tells anything (the OS drops the lock when the process dies)."""
    lock = open(Path(sweep_dir) / "optuna_controller.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError("hydra.sweep.dir", sweep_dir, "a sweep folder no other running command is searching "
                          "(one command per study at a time)") from None
    return lock


def run_study(sweeper, arguments: list[str]) -> None:
    conf = sweeper.conf
    distributions, fixed = search_space(arguments)
    metrics = sweeper.monitor()
    # one quantity in every trial: no training loss as the objective while sweeping what defines it
    check_search_objective(metrics, list(distributions))
    pruner = make_pruner(OmegaConf.to_container(conf.pruner))  # a bad pruner field is refused here, before any write
    dirs = directions(sweeper, metrics)
    Path(sweeper.sweep_dir).mkdir(parents=True, exist_ok=True)
    lock = one_controller(sweeper.sweep_dir)  # noqa: F841  held until this function returns
    study, url = open_study(sweeper, metrics, dirs, pruner)
    # the trial jobs find their study through the environment (inherited by joblib's and
    # submitit's processes); only while this search runs, so a later run in this process reports nowhere
    spec = json.dumps({"storage": url, "study_name": study.study_name, "pruner": OmegaConf.to_container(conf.pruner)})
    before = os.environ.get(TRIAL_ENV)
    os.environ[TRIAL_ENV] = spec
    try:
        run_missing_trials(sweeper, study, distributions, fixed)
    finally:
        if before is None:
            os.environ.pop(TRIAL_ENV, None)
        else:
            os.environ[TRIAL_ENV] = before
    save_results(sweeper, study)


def open_study(sweeper, metrics: list[str], dirs: list[str], pruner):
    """The study (created or continued) and the storage URL its trial jobs open; optuna_study.json
    in the sweep folder names it for `aectl report`."""
    conf = sweeper.conf
    recorded, url = storage_url(sweeper)
    try:
        storage = open_storage(url)
    except Exception as err:  # a bad URL, a missing driver, an unreachable server: nothing of the study is touched
        raise ConfigError("hydra.sweeper.storage", url, "an Optuna storage URL (sqlite:///..., postgresql://..., "
                          f"mysql://...) it can open, or none for the journal file in the sweep folder ({err})") \
            from None
    name = conf.study_name or "aectl"
    existing = optuna.create_study(study_name=name, storage=storage, directions=dirs, load_if_exists=True)
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(conf.sampler,
                              len(existing.trials)), pruner=pruner)
    with warnings.catch_warnings():  # experimental in Optuna 4 and 5; optuna-dashboard labels its axes with them
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(metrics)
    Path(sweeper.sweep_dir, "optuna_study.json").write_text(json.dumps(
        {"storage": recorded, "study_name": name, "metrics": metrics, "directions": dirs}, indent=2) + "\n")
    return study, url


def run_missing_trials(sweeper, study, distributions: dict, fixed: dict) -> None:
    """Re-run the trials cut off with an earlier controller, then ask trials until the study holds n_trials."""
    n_trials, n_jobs = sweeper.conf.n_trials, sweeper.conf.n_jobs
    exits = Exits()
    cut_off = [t for t in study.trials if t.state == TrialState.RUNNING]
    log.info("study %s: %d of %d trials there, %d cut off, %d to ask", study.study_name, len(study.trials),
             n_trials, len(cut_off), max(0, n_trials - len(study.trials)))
    for trial in cut_off:
        if not trial.params and distributions:  # cut off between ask and sampling: never launch it empty
            log.warning("trial %d was cut off before its parameters were sampled: FAIL, asked again", trial.number)
            study.tell(trial.number, state=TrialState.FAIL)
            continue
        overrides = params_overrides({**trial.params, **fixed, "trainer.resume": "auto"})
        run_trials(sweeper, study, [trial.number], [overrides], exits)
    while len(study.trials) < n_trials:
        batch = []
        for _ in range(min(n_jobs, n_trials - len(study.trials))):
            trial = study.ask()
            exits.after("asks", EXIT_AFTER_ASK)
            batch.append((trial.number, params_overrides({**{k: trial._suggest(k, d)
                                                               for k, d in distributions.items()}, **fixed})))
        run_trials(sweeper, study, [n for n, _ in batch], [o for _, o in batch], exits)


def run_trials(sweeper, study, numbers: list[int], overrides: list[list[str]], exits: Exits) -> None:
    """Launch the trials `numbers` as jobs numbered alike, and tell the study each result."""
    consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    groups = [(numbers, overrides)] if consecutive else [([n], [o]) for n, o in zip(numbers, overrides)]
    for group, group_overrides in groups:
        returns = sweeper.launch(group_overrides, group[0])
        for number, ret in zip(group, returns):
            tell(study, number, ret)
            exits.after("tells", EXIT_AFTER_TELL)


def tell(study, number: int, ret) -> None:
    try:
        value = ret.return_value  # re-raises the job's exception
        if isinstance(value, dict) and "pruned" in value:
            log.info("trial %d pruned at epoch %d", number, value["pruned"]["epoch"])
            study.tell(number, state=TrialState.PRUNED)
            return
        values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"objective {values} is not finite")
        if len(values) != len(study.directions):
            raise ValueError(f"{len(values)} objective values for {len(study.directions)} directions")
    except Exception as err:  # any failure of one trial: record it, go on with the study
        log.warning("trial %d failed: %s", number, err)
        study.tell(number, state=TrialState.FAIL)
        return
    study.tell(number, values if len(values) > 1 else values[0])


def save_results(sweeper, study) -> None:
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not done:
        log.warning("no trial of study %s completed", study.study_name)
        return
    best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    result = {"name": "optuna", "best_trials": [{"number": t.number, "values": t.values, "params": t.params}
                                                 for t in best]}
    if len(best) == 1 and len(study.directions) == 1:
        result.update(best_trial=best[0].number, best_params=best[0].params, best_value=best[0].value)
        log.info("best trial %d: value %s, params %s", best[0].number, best[0].value, best[0].params)
    OmegaConf.save(OmegaConf.create(result), f"{sweeper.sweep_dir}/optimization_results.yaml")
