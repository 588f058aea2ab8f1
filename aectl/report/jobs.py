"""Run folders and sweeps as `Job`s, read from what runs leave on disk.

A job is read from .hydra/, metrics.json, eval/<name>/metrics.json, error.txt and
interrupted.txt; a sweep's multirun.yaml adds the jobs it listed but never started.
"""

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from aectl.runs.runfolder import CHECKPOINTS, ERROR, INTERRUPTED, LOCK_NAME, eval_results, has_checkpoint, is_locked

SKIP_DIRS = (CHECKPOINTS, "eval")


@dataclass
class Job:
    """One run folder of a sweep, as read from disk."""

    path: Path
    status: str  # running | ok | failed | interrupted | incomplete | stub | not started (job_status)
    note: str = ""  # why a job is not ok
    overrides: dict = field(default_factory=dict)  # key → value, from .hydra/overrides.yaml
    config: dict = field(default_factory=dict)  # the resolved config, from .hydra/config.yaml
    metrics: dict = field(default_factory=dict)  # flat "val/loss" → value
    num: int = 0  # Hydra's job number: the sweep's own order
    name: str = ""  # folder relative to the report folder
    choices: dict = field(default_factory=dict)  # config group → option (model: vae), from .hydra/hydra.yaml
    eval: str = ""  # the eval whose metrics are the eval/* columns (its folder under <run>/eval/)
    weights: str = ""  # whose the train/val/test metrics are: last | best (best.pt), from metrics.json


def _is_job(path: Path) -> bool:
    return (path / ".hydra").is_dir() or (path / "metrics.json").is_file()


def _subfolders(path: Path) -> list[Path]:
    return [c for c in sorted(path.iterdir())
            if c.is_dir() and not c.name.startswith(".") and c.name not in SKIP_DIRS]


def find_jobs(root: Path) -> list[Path]:
    """Run folders at or below `root` (multirun/<date>/<time>/<job>/, outputs/<date>/<time>/),
    not looking inside runs."""
    if _is_job(root):
        return [root]
    return [job for child in _subfolders(root) for job in find_jobs(child)]


def find_sweeps(root: Path) -> list[Path]:
    """Sweep folders (holding Hydra's multirun.yaml) at or below `root`."""
    if _is_job(root):
        return []
    here = [root] if (root / "multirun.yaml").is_file() else []
    return here + [sweep for child in _subfolders(root) for sweep in find_sweeps(child)]


def _yaml(path: Path):
    import yaml

    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (yaml.YAMLError, OSError):
        return None


def _json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def parse_overrides(lines: list[str]) -> dict:
    """['model.latent_dim=8', '+x=a'] → {'model.latent_dim': 8, 'x': 'a'} with YAML-typed values."""
    import yaml

    parsed = {}
    for line in lines or []:
        if "=" not in line or line.startswith("~"):
            continue
        key, value = line.split("=", 1)
        try:
            parsed[key.lstrip("+")] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            parsed[key.lstrip("+")] = value
    return parsed


def flatten(values: dict, prefix: str = "") -> dict:
    """Nested numeric leaves → {'val/loss': 1.0, ...}; lists and strings are left out."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = value
    return flat


def _first_line(path: Path, default: str) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[0] if lines else default


def job_status(path: Path) -> tuple[str, str]:
    """What the run folder holds says how the run stands: running (a live run holds its lock,
    aectl.runs.runfolder) | ok (metrics.json written) | failed (error.txt: the error that ended it) |
    interrupted (interrupted.txt: stopped by a signal or Ctrl-C) | incomplete (ended without a
    word, e.g. killed, after a checkpoint: resumable) | stub (ended without a word before its
    first checkpoint: nothing to resume or show)."""
    if is_locked(path):  # first: a resumed run that trains longer still holds its old metrics.json
        return "running", "training now (no final metrics yet)"
    if (path / "metrics.json").is_file():
        return "ok", ""
    if (path / ERROR).is_file():
        return "failed", _first_line(path / ERROR, "failed")
    resumable = has_checkpoint(path)
    if (path / INTERRUPTED).is_file():
        return "interrupted", _first_line(path / INTERRUPTED, "interrupted") if resumable else \
            "interrupted before its first checkpoint"
    # A run killed outright (SIGKILL, out of memory) leaves its lock file behind, unlocked.
    how = "killed while training" if (path / LOCK_NAME).is_file() else "ended without metrics.json or an error"
    if resumable:
        return "incomplete", f"{how}; checkpoints/last.pt can resume it"
    return "stub", f"{how}, before its first checkpoint"


def _job_num(hydra_cfg: dict) -> int:
    """Hydra's job number (its order in the sweep); a single run has none ('???')."""
    num = ((hydra_cfg.get("hydra") or {}).get("job") or {}).get("num")
    return num if isinstance(num, int) else int(num) if isinstance(num, str) and num.isdigit() else 0


def read_job(path: Path) -> Job:
    status, note = job_status(path)
    hydra_cfg = _yaml(path / ".hydra" / "hydra.yaml") or {}
    job = Job(path=path, status=status, note=note,
              overrides=parse_overrides(_yaml(path / ".hydra" / "overrides.yaml") or []),
              config=_yaml(path / ".hydra" / "config.yaml") or {}, num=_job_num(hydra_cfg),
              choices=_choices(hydra_cfg))
    metrics = _json(path / "metrics.json")
    if metrics is None and status == "ok":
        job.status, job.note = "failed", "metrics.json is unreadable"
    job.metrics = flatten(metrics or {})
    job.weights = str((metrics or {}).get("weights", ""))
    job.eval, evaluation = _eval_result(path)
    if evaluation:  # its metrics only: the rest of the file records the settings of the eval
        job.metrics.update(flatten(evaluation.get("metrics") or {}, "eval/"))
    return job


def _eval_result(path: Path) -> tuple[str, dict | None]:
    """The eval a job's eval/* columns show: its newest eval/<name>/metrics.json (aectl eval keeps
    one per checkpoint, split and k), else the eval/metrics.json of older versions."""
    for file in reversed(eval_results(path)):
        if (result := _json(file)) is not None:
            return file.parent.name, result
    result = _json(path / "eval" / "metrics.json")
    return ("eval" if result is not None else ""), result


def _choices(hydra_cfg: dict) -> dict:
    """The option chosen for each config group (model: vae), from Hydra's record of the run."""
    choices = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    return {k: v for k, v in choices.items() if not k.startswith("hydra/")}


# ---------------------------------------------------------------- jobs a sweep listed


def listed_jobs(sweep: Path) -> list[list[str]]:
    """The overrides of every job the sweep in multirun.yaml lists, in Hydra's job order (its
    basic sweeper: the product of the swept values). Empty when the listing cannot be expanded
    (another sweeper, a glob() sweep): then only the jobs on disk are known."""
    hydra_cfg = (_yaml(sweep / "multirun.yaml") or {}).get("hydra") or {}
    sweeper = hydra_cfg.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return []
    lines = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    lines += list((hydra_cfg.get("overrides") or {}).get("task") or [])
    try:  # Hydra's own parser: the sweep syntax (a,b / range() / choice() / quoting) exactly
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(lines)
        values = {}
        for o in parsed:
            key = o.get_key_element()
            values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() \
                else [f"{key}={o.get_value_element_as_str()}"]
    except Exception:  # noqa: BLE001  any sweep Hydra itself could not expand without its config loader
        return []
    return [list(combo) for combo in itertools.product(*values.values())]


def _matches(job: Job, listed: dict) -> bool:
    return all(k in job.overrides and job.overrides[k] == v for k, v in listed.items())


def _job_folder_name(sweep: Path, overrides: list[str], num: int) -> str:
    """The folder Hydra would have given the job (hydra.sweep.subdir), to name a job it never started."""
    hydra_cfg = (_yaml(sweep / "multirun.yaml") or {}).get("hydra") or {}
    if "hydra.job.num" in str((hydra_cfg.get("sweep") or {}).get("subdir", "")):
        return str(num)
    dirname = ((hydra_cfg.get("job") or {}).get("config") or {}).get("override_dirname") or {}
    exclude = set(dirname.get("exclude_keys") or [])
    kept = sorted(o for o in overrides if o.split("=", 1)[0].lstrip("+") not in exclude)
    return dirname.get("item_sep", ",").join(kept)


def never_started(sweep: Path, found: list[Job]) -> list[Job]:
    """The jobs multirun.yaml lists that have no folder: the sweep stopped (Ctrl-C, a failed
    launcher) before it reached them."""
    mine = [j for j in found if sweep in j.path.parents]
    config = {k: v for k, v in (_yaml(sweep / "multirun.yaml") or {}).items() if k != "hydra"}
    missing = []
    for num, overrides in enumerate(listed_jobs(sweep)):
        parsed = parse_overrides(overrides)
        if not any(_matches(j, parsed) for j in mine):
            missing.append(Job(path=sweep / _job_folder_name(sweep, overrides, num), status="not started",
                               note="the sweep stopped before this job started", overrides=parsed,
                               config=config, num=num))
    return missing


def read_jobs(root: Path) -> list[Job]:
    """Every job at or below `root`, those a sweep listed but never started included, in each
    sweep's own order."""
    jobs = [read_job(p) for p in find_jobs(root)]
    for sweep in find_sweeps(root):
        jobs += never_started(sweep, jobs)
    group = lambda j: str(next((s for s in j.path.parents if (s / "multirun.yaml").is_file()),  # noqa: E731
                               j.path.parent))
    return sorted(jobs, key=lambda j: (group(j), j.num, str(j.path)))
