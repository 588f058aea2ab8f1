"""An Optuna study of a sweep folder (<sweep>/optuna.db, written by hydra/sweeper=aectl_optuna)
in the report: its trials table, best trial and two kinds of plot. Reads the SQLite file with
the standard library (optuna 2.x's schema), so `aectl report` works without optuna installed."""

import json
import math
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

DB_NAME = "optuna.db"


@dataclass
class Trial:
    number: int
    state: str  # COMPLETE | FAIL | RUNNING | WAITING | PRUNED
    value: float | None
    duration_s: float | None
    params: dict = field(default_factory=dict)


@dataclass
class Study:
    name: str
    direction: str  # MINIMIZE | MAXIMIZE
    trials: list[Trial]

    @property
    def best(self) -> Trial | None:
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        pick = max if self.direction == "MAXIMIZE" else min
        return pick(done, key=lambda t: t.value) if done else None


def _param(value: float, distribution_json: str):
    """Optuna stores a parameter as a float: a categorical one as the index of its choice."""
    dist = json.loads(distribution_json)
    if dist["name"] == "CategoricalDistribution":
        return dist["attributes"]["choices"][int(value)]
    return int(value) if dist["name"].startswith("Int") else value


def _duration(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def read_studies(db: Path) -> list[Study]:
    """Every study in the SQLite file `db`, trials in number order."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        studies = []
        for study_id, name in con.execute("SELECT study_id, study_name FROM studies ORDER BY study_id"):
            row = con.execute("SELECT direction FROM study_directions WHERE study_id=? AND objective=0",
                              (study_id,)).fetchone()
            trials = []
            for trial_id, number, state, start, end in con.execute(
                    "SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials "
                    "WHERE study_id=? ORDER BY number", (study_id,)):
                value = con.execute("SELECT value FROM trial_values WHERE trial_id=? AND objective=0",
                                    (trial_id,)).fetchone()
                params = {p: _param(v, d) for p, v, d in con.execute(
                    "SELECT param_name, param_value, distribution_json FROM trial_params WHERE trial_id=? "
                    "ORDER BY param_id", (trial_id,))}
                trials.append(Trial(number, state, value[0] if value else None, _duration(start, end), params))
            studies.append(Study(name, row[0] if row else "MINIMIZE", trials))
        return studies
    finally:
        con.close()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def format_study(study: Study) -> str:
    """report.md's section for one study: the trials table and the best trial."""
    keys = list(dict.fromkeys(k for t in study.trials for k in t.params))
    states = {}
    for t in study.trials:
        states[t.state] = states.get(t.state, 0) + 1
    lines = [f"## Optuna study `{study.name}`", "",
             f"{len(study.trials)} trials: " + ", ".join(f"{n} {s}" for s, n in states.items()) +
             f"; objective: {study.direction.lower()}.", "",
             "| trial | " + " | ".join(keys) + " | objective | state | duration (s) |",
             "|" + "---|" * (len(keys) + 4)]
    for t in study.trials:
        lines.append(f"| {t.number} | " + " | ".join(_cell(t.params.get(k)) for k in keys) +
                     f" | {_cell(t.value)} | {t.state} | {_cell(t.duration_s)} |")
    best = study.best
    if best:
        lines += ["", f"Best trial: {best.number} (objective {_cell(best.value)}): " +
                  ", ".join(f"{k}={_cell(v)}" for k, v in best.params.items())]
    return "\n".join(lines) + "\n"


def running_best(study: Study) -> list[tuple[int, float]]:
    """(trial number, best objective so far) after each completed trial."""
    best, out = None, []
    better = (lambda a, b: a > b) if study.direction == "MAXIMIZE" else (lambda a, b: a < b)
    for t in study.trials:
        if t.state == "COMPLETE" and t.value is not None and math.isfinite(t.value):
            best = t.value if best is None or better(t.value, best) else best
            out.append((t.number, best))
    return out


def plot_study(study: Study, out_dir: Path) -> list[Path]:
    """optimization_history.png (objective per trial and the running best) and
    objective_vs_<param>.png for each parameter; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in study.trials if t.state == "COMPLETE" and t.value is not None]
    if not done:
        return []
    paths = [out_dir / "optimization_history.png"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([t.number for t in done], [t.value for t in done], label="objective")
    steps = running_best(study)
    ax.step([n for n, _ in steps], [b for _, b in steps], where="post", color="C1", label="best so far")
    ax.set(xlabel="trial", ylabel="objective", title=f"{study.name} ({study.direction.lower()})")
    ax.legend()
    fig.savefig(paths[0], dpi=100, bbox_inches="tight")
    plt.close(fig)
    for key in dict.fromkeys(k for t in done for k in t.params):
        xs = [(t.params[key], t.value) for t in done if key in t.params]
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter([str(x) if isinstance(x, str) else x for x, _ in xs], [v for _, v in xs])
        ax.set(xlabel=key, ylabel="objective", title=f"{study.name}: objective vs {key}")
        paths.append(out_dir / f"objective_vs_{key}.png")
        fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
        plt.close(fig)
    return paths


def write_study_report(sweep: Path, out_dir: Path) -> list[Path]:
    """Append each study of <sweep>/optuna.db to out_dir/report.md and draw its plots; the plots."""
    db = sweep / DB_NAME
    if not db.is_file():
        return []
    images = []
    with open(out_dir / "report.md", "a") as md:
        for study in read_studies(db):
            plots = plot_study(study, out_dir)
            md.write("\n" + format_study(study) + "".join(f"\n![{p.stem}]({p.name})\n" for p in plots))
            images += plots
    return images
