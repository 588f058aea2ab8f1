"""Optuna's study as a search's trial and its controller both open it: the storage (a journal
file by default, any Optuna storage URL otherwise) and the pruner. The controller hands a trial
job its study through one environment variable, so a plain `aectl train` never imports optuna.

Pruning (trainer.monitor's val value reported after every epoch, step = epoch) follows Optuna:
median (Optuna's MedianPruner), hyperband (Li et al. 2018), successive_halving (Jamieson &
Talwalkar 2016)."""

import json
import os

from aectl.config.errors import ConfigError

TRIAL_ENV = "AECTL_OPTUNA_TRIAL"  # {"storage", "study_name", "pruner"} for the trial jobs of a search
JOURNAL = "optuna_journal.log"
PRUNERS = ("none", "median", "hyperband", "successive_halving")


def open_storage(storage: str):
    """An Optuna storage URL (sqlite:///..., postgresql://..., mysql://...) or a journal file path."""
    import optuna

    if "://" in storage:
        return optuna.storages.get_storage(storage)  # RDB storage: its own pooling and retries
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))


# The fields of hydra.sweeper.pruner and their defaults; each pruner reads only its own.
PRUNER_DEFAULTS = {"n_startup_trials": 5, "n_warmup_steps": 0, "min_resource": 1, "max_resource": "auto",
                   "reduction_factor": 3}
PRUNER_FIELDS = {"none": (), "median": ("n_startup_trials", "n_warmup_steps"),
                 "hyperband": ("min_resource", "max_resource", "reduction_factor"),
                 "successive_halving": ("min_resource", "reduction_factor")}


def make_pruner(conf: dict):
    """Optuna's pruner named by conf["name"], from its own fields; a field another pruner reads,
    changed from its default, is refused (it would be silently ignored)."""
    import optuna

    name = conf.get("name", "none")
    if name not in PRUNER_FIELDS:
        raise ConfigError("hydra.sweeper.pruner.name", name, "one of " + ", ".join(PRUNERS))
    for key, default in PRUNER_DEFAULTS.items():
        if key not in PRUNER_FIELDS[name] and conf.get(key, default) != default:
            raise ConfigError(f"hydra.sweeper.pruner.{key}", conf[key], f"left at {default!r}: pruner {name} reads "
                              + (", ".join(PRUNER_FIELDS[name]) or "no field"))
    c = {**PRUNER_DEFAULTS, **conf}
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=c["n_startup_trials"], n_warmup_steps=c["n_warmup_steps"])
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=c["min_resource"], max_resource=c["max_resource"],
                                              reduction_factor=c["reduction_factor"])
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=c["min_resource"],
                                                      reduction_factor=c["reduction_factor"])
    return optuna.pruners.NopPruner()


class TrialReporter:
    """The trial of this job in its study: report(epoch, value) → True when the pruner says stop."""

    def __init__(self, spec: dict, number: int) -> None:
        import optuna

        self.study = optuna.load_study(study_name=spec["study_name"], storage=open_storage(spec["storage"]),
                                       pruner=make_pruner(spec["pruner"]))
        trial_id = self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        self.trial = optuna.trial.Trial(self.study, trial_id)

    def report(self, epoch: int, value: float) -> bool:
        if len(self.study.directions) > 1:
            return False  # Optuna's pruners work on one objective; a multi-objective trial runs on
        self.trial.report(value, epoch)
        return bool(self.trial.should_prune())


def trial_reporter(job_number: int | None) -> TrialReporter | None:
    """This job's trial when it runs under aectl's Optuna sweeper (its curve is reported with or
    without a pruner); None otherwise."""
    spec = os.environ.get(TRIAL_ENV)
    if not spec or job_number is None:
        return None
    return TrialReporter(json.loads(spec), job_number)


def epoch_report():
    """The per-epoch hook of a trial job under aectl's Optuna sweeper (None for any other run):
    report(epoch, value) → True when the trial is to stop."""
    if not os.environ.get(TRIAL_ENV):
        return None
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or HydraConfig.get().job.get("num") is None:
        return None
    reporter = trial_reporter(int(HydraConfig.get().job.num))
    return reporter.report if reporter is not None else None
