"""An Optuna study of a sweep folder (written by hydra/sweeper=aectl_optuna) in the report: its
trials table (state, the epoch a PRUNED trial stopped at), best trial(s), and plots.

The study is found through <sweep>/optuna_study.json ({"storage", "study_name", "metrics",
"directions"}), else <sweep>/optuna_journal.log or <sweep>/optuna.db, and read with Optuna's own
API (no plotly/pandas: the plots are matplotlib). Without optuna installed the report of the runs
still works and says in one line how to get the study part."""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

STUDY_JSON = "optuna_study.json"
JOURNAL_NAME = "optuna_journal.log"
DB_NAME = "optuna.db"
NO_OPTUNA = "aectl report: {sweep}: an Optuna study is there; pip install 'aectl[optuna]' (optuna>=4) to report it"


@dataclass
class Trial:
    number: int
    state: str  # COMPLETE | FAIL | RUNNING | WAITING | PRUNED
    values: list[float] | None
    duration_s: float | None
    params: dict = field(default_factory=dict)
    intermediate: dict[int, float] = field(default_factory=dict)  # epoch (1-based) → monitored val value

    @property
    def value(self) -> float | None:
        """The first objective (the only one of a single-objective study)."""
        return self.values[0] if self.values else None

    @property
    def pruned_epoch(self) -> int | None:
        """The last epoch a PRUNED trial reported: the one the pruner stopped it after."""
        return max(self.intermediate) if self.state == "PRUNED" and self.intermediate else None


@dataclass
class Study:
    name: str
    directions: list[str]  # MINIMIZE | MAXIMIZE, one per objective
    trials: list[Trial]
    metrics: list[str] = field(default_factory=list)  # the monitored metric of each objective

    @property
    def direction(self) -> str:
        return self.directions[0]

    def metric(self, i: int) -> str:
        if i < len(self.metrics):
            return self.metrics[i]
        return "objective" if len(self.directions) == 1 else f"objective {i}"

    def complete(self) -> list[Trial]:
        return [t for t in self.trials if t.state == "COMPLETE" and t.values
                and all(math.isfinite(v) for v in t.values)]

    @property
    def best(self) -> Trial | None:
        done = self.complete()
        pick = max if self.direction == "MAXIMIZE" else min
        return pick(done, key=lambda t: t.value) if done else None

    def pareto_front(self) -> list[Trial]:
        """The complete trials no other complete trial dominates (at least as good in every
        objective, better in one), in trial order."""
        sign = [1 if d == "MINIMIZE" else -1 for d in self.directions]
        cost = {t.number: [s * v for s, v in zip(sign, t.values)] for t in self.complete()}

        def dominated(a):
            return any(all(y <= x for x, y in zip(a, b)) and any(y < x for x, y in zip(a, b))
                       for b in cost.values())
        return [t for t in self.complete() if not dominated(cost[t.number])]


def find_storage(sweep: Path) -> tuple[str | None, str | None, dict]:
    """(storage URL or journal path, study name or None for every study, optuna_study.json's fields)."""
    meta = {}
    if (sweep / STUDY_JSON).is_file():
        meta = json.loads((sweep / STUDY_JSON).read_text())
        storage = meta.get("storage")
        if storage and "://" not in storage:  # a journal file named relative to the sweep folder
            storage = str(sweep / storage)
        return storage, meta.get("study_name"), meta
    if (sweep / JOURNAL_NAME).is_file():
        return str(sweep / JOURNAL_NAME), None, meta
    if (sweep / DB_NAME).is_file():
        return f"sqlite:///{(sweep / DB_NAME).resolve()}", None, meta
    return None, None, meta


def open_storage(storage: str):
    import optuna

    if "://" in storage:
        return optuna.storages.get_storage(storage)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(storage))


def _trial(t) -> Trial:
    duration = t.duration.total_seconds() if t.duration is not None else None
    return Trial(t.number, t.state.name, list(t.values) if t.values else None, duration, dict(t.params),
                 {int(k): v for k, v in sorted(t.intermediate_values.items())})


def read_studies(path: Path | str, study_name: str | None = None, metrics: list[str] | None = None) -> list[Study]:
    """Every study (or the one named) in a storage: a URL, a journal file or an SQLite file."""
    import optuna

    path = str(path)
    storage = path if "://" in path or path.endswith(".log") else f"sqlite:///{Path(path).resolve()}"
    store = open_storage(storage)
    names = [study_name] if study_name else [s.study_name for s in optuna.get_all_study_summaries(store)]
    studies = []
    for name in names:
        study = optuna.load_study(study_name=name, storage=store)
        trials = sorted((_trial(t) for t in study.get_trials(deepcopy=False)), key=lambda t: t.number)
        studies.append(Study(name, [d.name for d in study.directions], trials, list(metrics or [])))
    return studies


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def _objective_header(study: Study) -> list[str]:
    return [f"{study.metric(i)} ({d.lower()})" for i, d in enumerate(study.directions)]


def format_study(study: Study) -> str:
    """report.md's section for one study: the trials table, the best trial or the Pareto front."""
    keys = list(dict.fromkeys(k for t in study.trials for k in t.params))
    states = {}
    for t in study.trials:
        states[t.state] = states.get(t.state, 0) + 1
    heads = _objective_header(study)
    lines = [f"## Optuna study `{study.name}`", "",
             f"{len(study.trials)} trials: " + ", ".join(f"{n} {s}" for s, n in states.items()) +
             "; objective: " + ", ".join(heads) + ".", "",
             "| trial | " + " | ".join(keys + heads) + " | state | pruned at epoch | duration (s) |",
             "|" + "---|" * (len(keys) + len(heads) + 4)]
    for t in study.trials:
        values = [_cell(t.values[i] if t.values else None) for i in range(len(heads))]
        lines.append(f"| {t.number} | " + " | ".join([_cell(t.params.get(k)) for k in keys] + values) +
                     f" | {t.state} | {_cell(t.pruned_epoch)} | {_cell(t.duration_s)} |")
    if len(study.directions) > 1:
        front = study.pareto_front()
        lines += ["", f"Pareto front ({len(front)} trials): " + ", ".join(str(t.number) for t in front), "",
                  "| trial | " + " | ".join(heads + keys) + " |", "|" + "---|" * (len(keys) + len(heads) + 1)]
        lines += [f"| {t.number} | " + " | ".join([_cell(v) for v in t.values] + [_cell(t.params.get(k)) for k in keys])
                  + " |" for t in front]
    elif study.best:
        best = study.best
        lines += ["", f"Best trial: {best.number} ({heads[0]} {_cell(best.value)}): " +
                  ", ".join(f"{k}={_cell(v)}" for k, v in best.params.items())]
    return "\n".join(lines) + "\n"


def write_study_report(sweep: Path, out_dir: Path) -> list[Path]:
    """Append the study of `sweep` to out_dir/report.md and draw its plots; the plots."""
    storage, name, meta = find_storage(sweep)
    if storage is None:
        return []
    try:
        import optuna
    except ImportError:
        optuna = None
    if optuna is None or int(optuna.__version__.split(".")[0]) < 4:  # the journal API is optuna>=4's
        print(NO_OPTUNA.format(sweep=sweep))
        return []
    from aectl.report.study_plots import plot_study

    try:
        studies = read_studies(storage, name, meta.get("metrics"))
    except Exception as err:  # e.g. a schema of another optuna, a truncated file: the runs' report stands
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"aectl report: {sweep}: cannot read the Optuna study in {storage}: {reason}")
        return []
    images = []
    with open(out_dir / "report.md", "a") as md:
        for study in studies:
            plots = plot_study(study, out_dir)
            md.write("\n" + format_study(study) + "".join(f"\n![{p.stem}]({p.name})\n" for p in plots))
            images += plots
    return images
