"""The Hydra task functions of `aectl train` and `aectl eval`: a composed config → the core."""

import contextlib
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from aectl.cli.resume import load_resume_checkpoint, resume_source, resumed_config
from aectl.training import build
from aectl.config.monitoring import names
from aectl.training.monitor import objective

log = logging.getLogger("aectl")

def train_task(cfg) -> float:
    """Hydra task function of `aectl train`: validated config → a trained run folder; returns
    the value of trainer.monitor, the objective of a hyperparameter search."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from aectl.config.checks import validate
    from aectl.config.option_fields import check_given_fields, drop_fields_of_switched_options
    from aectl.runs import preemption

    hydra_cfg = HydraConfig.get()
    run_dir, resume = Path(hydra_cfg.runtime.output_dir), None
    source = resume_source(cfg.trainer.resume, run_dir) if cfg.trainer.resume else None
    if source:
        resume = load_resume_checkpoint(source)
        cfg = resumed_config(resume["config"], hydra_cfg.overrides.task, cfg, mid_epoch=bool(resume.get("batch")))
        if hydra_cfg.output_subdir:  # Hydra recorded the command line's config; the run's is the resumed one
            OmegaConf.save(cfg, run_dir / hydra_cfg.output_subdir / "config.yaml")
    elif preemption.requeued(run_dir):  # the same job again, same overrides: continue its checkpoint
        log.info("requeued job: resuming from %s", run_dir / "checkpoints" / "last.pt")
        resume = load_resume_checkpoint(str(run_dir))
    config = OmegaConf.to_object(cfg)
    if not source:
        for setting in drop_fields_of_switched_options(config, list(hydra_cfg.overrides.task)):
            log.info("%s from the config is dropped: the option chosen on the command line does not use it", setting)
    validate(config)
    check_given_fields(config, [] if source else list(hydra_cfg.overrides.task))
    if resume is not None and resume["epoch"] >= config.trainer.epochs and not resume.get("batch"):
        print(f"{source or run_dir}: this run already finished all {config.trainer.epochs} epochs, nothing to train "
              f"(to train longer: trainer.epochs=<more than {config.trainer.epochs}>)")
        return _search_objective({}, run_dir, config.trainer.monitor)
    if resume is not None:
        resume.setdefault("overrides", [])  # checkpoints written before runs stored their overrides
        resume["resumed_with"] = [*resume.get("resumed_with", []), list(hydra_cfg.overrides.task)]
        if source:
            build.adopt_best_checkpoint(Path(source), run_dir)
    with preemption.requeue_on_preemption():
        metrics = build.train(config, run_dir, resume, list(hydra_cfg.overrides.task), swept_overrides())
    if metrics and not swept_overrides() and os.environ.get("RANK", "0") == "0":
        print(next_steps(run_dir))
    return _search_objective(metrics, run_dir, config.trainer.monitor)


def shown_path(path: Path) -> str:
    """A folder as the user would type it: relative to the working folder when inside it, quoted for the shell."""
    path = Path(path).absolute()
    with contextlib.suppress(ValueError):
        path = path.relative_to(Path.cwd())
    return shlex.quote(str(path))


def shown_command(name: str) -> str:
    """A command of aectl's environment as the user can type it: its name when the shell finds
    this environment's, else its path (`make train` runs .venv/bin/aectl without activating .venv)."""
    here = Path(sys.executable).absolute().parent / name
    found = shutil.which(name)
    if not here.is_file() or (found is not None and Path(found).absolute() == here):
        return name
    return shown_path(here)


def next_steps(run_dir: Path) -> str:
    """The last line of a trained run: what to look at next, for the folder it wrote."""
    run = shown_path(run_dir)
    return (f"next: {shown_command('tensorboard')} --logdir {run} (curves), "
            f"{shown_command('aectl')} eval ckpt={run} (pictures, IW NLL)")


class SweepNextSteps(Callback):
    """Hydra callback (configs/train.yaml, hydra.callbacks): the last line of a sweep says what
    to look at next, for the sweep folder (a single run says it in `train_task`)."""

    def on_multirun_end(self, config, **_) -> None:
        if os.environ.get("RANK", "0") == "0":
            sweep = shown_path(Path(str(config.hydra.sweep.dir)))
            print(f"next: {shown_command('aectl')} report {sweep} (table and plots), "
                  f"{shown_command('tensorboard')} --logdir {sweep} (curves, HPARAMS)")


def _search_objective(metrics: dict, run_dir: Path, monitor: str) -> float | None:
    """In a sweep, the value of trainer.monitor (a missing or non-finite one fails the job, so a
    search records the trial as FAIL); a run with nothing left to train (a trial re-asked after
    its controller died between training and recording it) reads it from its metrics.json.
    A single run returns None: its result is its folder, never an error after training."""
    import json

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    path = run_dir / "metrics.json"
    if not metrics and path.is_file():
        metrics = json.loads(path.read_text())
    if metrics and "pruned" in metrics:  # the search records the trial as PRUNED
        return {"pruned": metrics["pruned"]}
    if not metrics:
        return None
    values = [objective(metrics, name) for name in names(monitor)]  # a list: one value per metric, in order
    return values if len(values) > 1 else values[0]


def swept_overrides() -> list[str]:
    """The overrides a sweep varies for this job (its folder name), [] outside a Hydra sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        job = HydraConfig.get()
    except ValueError:  # called without Hydra (the Python API, tests)
        return []
    return job.job.override_dirname.split(",") if job.mode == RunMode.MULTIRUN else []


def eval_task(cfg) -> list[dict]:
    """Hydra task function of `aectl eval`: validated settings → metrics, pictures, embeddings."""
    from omegaconf import OmegaConf

    from aectl.config.checks import validate_eval
    from aectl.evaluation import evaluate as evaluation

    settings = OmegaConf.to_object(cfg)
    validate_eval(settings)
    return evaluation.run(settings)
