"""`aectl train | eval | report`: the dispatcher and the Hydra entry points.

The only module that imports hydra/omegaconf and the only one that sees the whole config.
Nothing here imports torch at module level, so `aectl --help` and tab completion start fast.
"""

import dataclasses
import itertools
import logging
import os
import sys
from pathlib import Path

from aectl.errors import AectlError
from aectl.signals import Interrupted

log = logging.getLogger("aectl")

USAGE = """usage: aectl <command> [options and overrides]

commands:
  train    train an autoencoder from composed configs
           e.g. aectl train model=vae beta=0.5 | aectl train -m model.latent_dim=2,8,32
  eval     evaluate a checkpoint, run folder or sweep folder: aectl eval ckpt=outputs/<date>/<time>
  report   compare the runs of a sweep: aectl report multirun/<date>/<time>

Run `aectl <command> --help` for the options of a command, `aectl --version` for the version.
Tab completion (bash): eval "$(aectl train -sc install=bash)"
"""
COMMANDS = ("train", "eval", "report")


def config_dir() -> str:
    """The YAML configs: shipped inside the package in a wheel, top-level configs/ in a checkout."""
    packaged = Path(__file__).parent / "configs"
    return str(packaged if packaged.is_dir() else Path(__file__).parent.parent / "configs")


def _register_schemas() -> None:
    from hydra.core.config_store import ConfigStore

    from aectl.config import EvalConfig, TrainConfig

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    ConfigStore.instance().store(name="eval_schema", node=EvalConfig)


class _InputError(BaseException):
    """Carries an AectlError of a single run past Hydra's job runner (which catches Exception
    and prints its own line) to `_run_hydra`, which prints it as one line."""


def _single_run_errors(task):
    """In a single run, bad input ends the run with one line; in a sweep it fails only its job."""
    import functools

    @functools.wraps(task)
    def wrapper(cfg):
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        try:
            return task(cfg)
        except (Interrupted, KeyboardInterrupt) as stopped:
            _record_interruption(stopped)
            raise
        except Exception as err:
            if HydraConfig.get().mode == RunMode.RUN:
                if isinstance(err, AectlError):
                    raise _InputError(err) from None
                raise
            _record_failure(err)
            raise

    return wrapper


def _record_failure(err: Exception) -> None:
    """A failed sweep job leaves one line in <job>/error.txt, so `aectl report` lists it as
    failed with its reason instead of dropping it."""
    from hydra.core.hydra_config import HydraConfig

    line = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    log.error("job failed: %s", line)
    try:
        (Path(HydraConfig.get().runtime.output_dir) / "error.txt").write_text(line + "\n")
    except OSError:
        pass  # an unwritable folder must not hide the original error


def _record_interruption(stopped: BaseException) -> None:
    """A run stopped by a signal or Ctrl-C leaves <run>/interrupted.txt, so `aectl report` says
    "interrupted" rather than "running" (and, in a sweep, tells it from the jobs never started)."""
    from hydra.core.hydra_config import HydraConfig

    from aectl.runfolder import mark_interrupted

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.job.name != "train":  # eval writes into the evaluated run, not a run folder of its own
        return
    line = "; ".join(stopped.message().splitlines()) if isinstance(stopped, Interrupted) else "interrupted by Ctrl-C"
    mark_interrupted(hydra_cfg.runtime.output_dir, line)


def _train_task(cfg) -> dict:
    """Hydra task function of `aectl train`: validated config → a trained run folder."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from aectl import preemption
    from aectl.config import validate

    hydra_cfg = HydraConfig.get()
    run_dir, resume = Path(hydra_cfg.runtime.output_dir), None
    source = _resume_source(cfg.trainer.resume, run_dir) if cfg.trainer.resume else None
    if source:
        resume = _load_resume_checkpoint(source)
        cfg = _resumed_config(resume["config"], hydra_cfg.overrides.task, cfg, mid_epoch=bool(resume.get("batch")))
        if hydra_cfg.output_subdir:  # Hydra recorded the command line's config; the run's is the resumed one
            OmegaConf.save(cfg, run_dir / hydra_cfg.output_subdir / "config.yaml")
    elif preemption.requeued(run_dir):  # the same job again, same overrides: continue its checkpoint
        log.info("requeued job: resuming from %s", run_dir / "checkpoints" / "last.pt")
        resume = _load_resume_checkpoint(str(run_dir))
    _resolve_data_paths(cfg)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    config = OmegaConf.to_object(cfg)
    validate(config)
    if resume is not None and resume["epoch"] >= config.trainer.epochs and not resume.get("batch"):
        print(f"{source or run_dir}: this run already finished all {config.trainer.epochs} epochs, nothing to train "
              f"(to train longer: trainer.epochs=<more than {config.trainer.epochs}>)")
        return {}
    if resume is not None:
        resume.setdefault("overrides", [])  # checkpoints written before runs stored their overrides
        resume["resumed_with"] = [*resume.get("resumed_with", []), list(hydra_cfg.overrides.task)]
        if source:
            _adopt_best_checkpoint(Path(source), run_dir)
    with preemption.requeue_on_preemption():
        return train(config, config_dict, run_dir, resume, list(hydra_cfg.overrides.task))


def _resolve_data_paths(cfg) -> None:
    """dataset.path and dataset.root as absolute paths: the checkpoint's config must find the data
    from any folder (aectl eval, a resume started elsewhere)."""
    for key in ("path", "root"):
        value = cfg.dataset.get(key)
        if value and not Path(str(value)).expanduser().is_absolute():
            cfg.dataset[key] = str(Path(str(value)).expanduser().resolve())


def _adopt_best_checkpoint(source: Path, run_dir: Path) -> None:
    """Continuing a run into a new folder: its best.pt so far comes along, so the new folder is
    complete and its metrics.json's best is a checkpoint in it."""
    import shutil

    from aectl.checkpoint import resolve_checkpoint

    source_dir = resolve_checkpoint(source).parent
    best, target = source_dir / "best.pt", run_dir / "checkpoints" / "best.pt"
    if best.is_file() and source_dir.resolve() != target.parent.resolve() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(best, target)


def _resume_source(value: str, run_dir: Path) -> str | None:
    """trainer.resume=auto → this run folder's checkpoint, or the newest (aectl.runfolder)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from aectl.runfolder import resume_source

    hydra_cfg = HydraConfig.get()
    # A sweep job continues its own folder or starts fresh: never another run's checkpoint.
    explicit = hydra_cfg.mode != RunMode.RUN or \
        any(o.lstrip("+").split("=", 1)[0] == "hydra.run.dir" for o in hydra_cfg.overrides.hydra)
    return resume_source(value, run_dir, explicit)


def _load_resume_checkpoint(path: str) -> dict:
    from aectl.checkpoint import load_checkpoint
    from aectl.errors import CheckpointError

    try:
        return load_checkpoint(path)
    except CheckpointError as err:
        raise AectlError(f"trainer.resume={path}: {err}") from None


# Overrides that keep a resumed run the same run: how long and how fast it trains, how it logs
# and where it runs. Anything else would train another model on the saved weights and optimizer.
RESUME_SAFE = ("trainer.epochs", "trainer.lr", "trainer.weight_decay", "trainer.grad_clip", "trainer.log_every",
               "trainer.images_every", "trainer.save_every", "trainer.progress", "trainer.device", "trainer.threads",
               "trainer.resume", "trainer.compile", "trainer.precision", "trainer.on_nonfinite",
               "trainer.max_skipped_batches")
GROUPS = ("model", "dataset", "noise", "penalty", "beta_schedule", "trainer")


def _resumed_config(saved: dict, overrides: list[str], composed=None, mid_epoch: bool = False):
    """A resumed run keeps the checkpoint's config; the overrides of RESUME_SAFE given now apply
    on top (e.g. trainer.epochs=50 to train longer; trainer.batch_size too, at an epoch
    boundary). Any other override must repeat the saved value (the original command run again
    with trainer.resume=auto), else the resume is refused naming the key: the same holds for
    group choices (`model=vae`) and presets, which must compose to the saved sections."""
    from omegaconf import OmegaConf

    from aectl.config import TrainConfig

    group_of = lambda o: o.split("=", 1)[0].lstrip("+~")  # noqa: E731
    dotted = [o.lstrip("+") for o in overrides
              if "=" in o and not o.startswith("~") and group_of(o) not in (*GROUPS, "experiment")]
    original = OmegaConf.merge(OmegaConf.structured(TrainConfig), saved)
    merged = OmegaConf.merge(original, OmegaConf.from_dotlist(dotted))
    safe = (*RESUME_SAFE, *(() if mid_epoch else ("trainer.batch_size",)))
    for override in dotted:
        key = group_of(override)
        old, new = OmegaConf.select(original, key), OmegaConf.select(merged, key)
        if key not in safe and old != new:
            why = ("mid-epoch: the rest of the epoch must use the batches it started with; resume at an epoch "
                   "boundary to change it" if key == "trainer.batch_size" else
                   f"the run was trained with {key}={old!r}; a resume may only change {', '.join(safe)}")
            raise AectlError(f"trainer.resume: {key}={new!r} would make it another run ({why}); "
                             "start a new run (without trainer.resume) to train that")
    for override in overrides:
        group = group_of(override)
        sections = GROUPS[:-1] if group == "experiment" else (group,)
        if group in (*GROUPS, "experiment") and not all(_same_section(composed, merged, g) for g in sections):
            raise AectlError(f"trainer.resume: {override} would change the resumed run's config group; a resume "
                             "may only change " + ", ".join(safe))
    return merged


def _same_section(composed, merged, group: str) -> bool:
    """Whether the command line's `group` section equals the resumed run's (trainer.resume aside)."""
    from omegaconf import OmegaConf

    if composed is None or group not in composed:
        return False
    mine, theirs = (OmegaConf.to_container(c[group], resolve=True) for c in (composed, merged))
    return {k: v for k, v in mine.items() if k != "resume"} == {k: v for k, v in theirs.items() if k != "resume"}


def train(config, config_dict: dict, run_dir: Path, resume: dict | None = None,
          overrides: list[str] | None = None) -> dict:
    """Build every component from the config and train, holding the run folder's lock
    (aectl.runfolder); a first SIGINT/SIGTERM stops after the current step (aectl.signals)."""
    from aectl import preemption, runfolder, signals

    with runfolder.claim(run_dir, resuming=resume is not None), \
            signals.StopSignals(preemption.stop_signals()) as stop:
        runfolder.clear_interrupted(run_dir)  # this process trains here now
        try:
            return _build_and_fit(config, config_dict, run_dir, resume, stop, overrides or [])
        except signals.Interrupted as stopped:
            stopped.run_dir = run_dir
            raise


def _build_and_fit(config, config_dict: dict, run_dir: Path, resume: dict | None, stop_requested,
                   overrides: list[str]) -> dict:
    """Build every component from the config and run the trainer."""
    import functools

    import torch

    from aectl import data as data_mod
    from aectl import noise, schedules
    from aectl.config import check_schedule_fits
    from aectl.distributed import current as current_distributed
    from aectl.models import build_model
    from aectl.objective import make_objective
    from aectl.tracking import NullTracker, TensorBoardTracker
    from aectl.trainer import fit, resolve_device

    m, t, s, p = config.model, config.trainer, config.beta_schedule, config.penalty
    if t.threads:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    saved_scaler = resume.get("data", {}).get("scaler") if resume is not None else None
    data = data_mod.load_dataset(**vars(config.dataset), scaler=saved_scaler)
    data_mod.check_model_range(data, m.likelihood, m.output_activation)
    config_dict["noise"] = _noise_in_data_range(config_dict["noise"], data)  # what eval must use too
    corrupt = noise.Corruption(**{k: v for k, v in config_dict["noise"].items() if v is not None})
    data = data.to(device)
    kwargs = dict(input_shape=data.input_shape, latent_dim=m.latent_dim, arch=m.arch,
                  hidden_dims=list(m.hidden_dims), conv_channels=list(m.conv_channels),
                  activation=m.activation, likelihood=m.likelihood, output_activation=m.output_activation,
                  sigma=m.sigma)
    if m.kind != "vae":
        kwargs["code_activation"] = m.code_activation
    torch.manual_seed(t.seed)
    model = build_model(m.kind, **kwargs)
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
    model.to(device)
    objective = make_objective(m.kind, m.likelihood, m.sigma, vars(p))
    steps_per_epoch = -(-len(data.train) // t.batch_size)
    # The β curve is laid out once, when the run starts: a resume with more epochs continues it.
    total_steps = t.epochs * steps_per_epoch if resume is None else resume.get("schedule", {}).get(
        "total_steps", resume["config"]["trainer"]["epochs"] * steps_per_epoch)
    check_schedule_fits(s, total_steps)
    beta_at = functools.partial(schedules.beta_at, beta=config.beta if m.kind == "vae" else 0.0,
                                kind=s.kind, warmup_steps=s.warmup_steps, k=s.k, x0=s.x0, cycles=s.cycles,
                                ratio=s.ratio, total_steps=total_steps)
    meta = {"model": {"kind": m.kind, "kwargs": kwargs}, "config": config_dict, "schedule": {"total_steps": total_steps},
            "overrides": resume["overrides"] if resume else overrides,
            "resumed_with": resume["resumed_with"] if resume else [],
            "data": {"scale": data.scale, "input_shape": data.input_shape, "binarize": data.binarize,
                     "scaler": data.scaler, "classes": data.classes}}
    log.info("run folder: %s", run_dir)
    log.info("model %s (%s), %d parameters, on %s; %d training examples", m.kind, m.arch,
             sum(q.numel() for q in model.parameters()), device, len(data.train))
    dist = current_distributed()  # under torchrun only rank 0 writes TensorBoard events
    tracker = TensorBoardTracker(run_dir, purge_step=resume["step"] if resume else None) if dist.is_main \
        else NullTracker()
    try:
        metrics = fit(model, data, objective, corrupt, beta_at, config.beta, t, run_dir, tracker, meta, resume,
                      dist=dist, stop_requested=dist.agree(stop_requested))
        if metrics:
            tracker.hparams(_hparams(config_dict, _swept_overrides() or meta["overrides"]),
                            {f"hparam/{k}": v for k, v in metrics["val"].items()})
            log.info("done: val loss %.5g, test loss %.5g; metrics in %s", metrics["val"]["loss"],
                     metrics["test"]["loss"] if "test" in metrics else float("nan"), run_dir / "metrics.json")
            log.info(_summary(metrics, m.latent_dim))
    finally:
        tracker.close()
    return metrics


def _summary(metrics: dict, latent_dim: int) -> str:
    """What says at a glance whether the model works: its val PSNR against the mean image's
    (a model that ignores its input scores the latter), the VAE's active units and KL."""
    val, parts = metrics["val"], []
    if "psnr" in val:
        parts.append(f"val PSNR {val['psnr']:.2f} dB (the mean training image scores "
                     f"{metrics.get('val_psnr_mean_image', float('nan')):.2f} dB)")
    if "active_units" in val:
        parts.append(f"{val['active_units']} of {latent_dim} latent units active, KL {val['kl']:.3g} nats")
    return "; ".join(parts) or f"val loss {val['loss']:.5g}"


def _noise_in_data_range(params: dict, data) -> dict:
    """noise.v_min/v_max unset (None) → the train split's value range, for the noises that use
    them (the clip range and the pepper/salt values are the data's, whatever its scale)."""
    from aectl.config import NOISE_FIELDS

    if "v_min" not in NOISE_FIELDS[params["kind"]]:
        return params
    low, high = data.value_range(("train",))
    return {**params, "v_min": low if params.get("v_min") is None else params["v_min"],
            "v_max": high if params.get("v_max") is None else params["v_max"]}


def _eval_task(cfg) -> list[dict]:
    """Hydra task function of `aectl eval`: validated settings → metrics, pictures, embeddings."""
    from omegaconf import OmegaConf

    from aectl import evaluate
    from aectl.config import validate_eval

    settings = OmegaConf.to_object(cfg)
    validate_eval(settings)
    return evaluate.run(settings)


def _swept_overrides() -> list[str]:
    """The overrides a sweep varies for this job (its folder name), [] outside a Hydra sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        job = HydraConfig.get()
    except ValueError:  # called without Hydra (the Python API, tests)
        return []
    return job.job.override_dirname.split(",") if job.mode == RunMode.MULTIRUN else []


def _hparams(config_dict: dict, overrides: list[str] = ()) -> dict:
    """Flat {'model.latent_dim': 8, ...} of the config's scalar and list values, the keys set on
    the command line first (a sweep's HPARAMS tab then leads with what it swept)."""
    flat = {}
    for group, values in config_dict.items():
        if isinstance(values, dict):
            flat.update({f"{group}.{k}": v for k, v in values.items() if v is not None})
        elif values is not None:
            flat[group] = values
    given = [o.split("=", 1)[0].lstrip("+") for o in overrides if "=" in o]
    first = [k for k in given if k in flat] + [k for k in flat if k.split(".")[0] in given and k not in given]
    return {k: flat[k] for k in dict.fromkeys([*first, *flat])}


def _hydra_app(task, config_name: str):
    import hydra

    _register_schemas()
    return hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(task)


def _one_line(err: BaseException) -> str:
    """Hydra/OmegaConf errors → one line naming the key, the value and what is allowed."""
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and err.options:
        group, _, name = (err.missing_cfg_file or "").rpartition("/")  # nested groups: hydra/launcher
        line = f"{group}={name}: no such option; allowed {group}=" + ", ".join(sorted(err.options))
        if group == "hydra/launcher":
            line += " (pip install 'aectl[sweep]' adds joblib, 'aectl[slurm]' submitit_local and submitit_slurm)"
        return line
    parts = [str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__]
    cause = err.__cause__
    # An AectlError's message is complete: the exception it was raised from (a reader's
    # OSError, PIL's error) is already quoted in it, and appending it would say it twice.
    if cause is not None and str(cause).strip() and not isinstance(err, AectlError):
        parts.append(str(cause).strip().splitlines()[0])
        schema = getattr(cause, "object_type", None)
        if dataclasses.is_dataclass(schema) and "not in" in parts[-1]:
            parts.append("; allowed keys: " + ", ".join(f.name for f in dataclasses.fields(schema)))
    return " ".join(parts)


def _join_process_group(args: list[str]) -> list[str]:
    """This process is one rank of a torchrun job: join the process group; every rank gets rank
    0's run folder (the config's hydra.run.dir pattern unless the command line sets one)."""
    import yaml

    from aectl import distributed

    default = yaml.safe_load((Path(config_dir()) / "train.yaml").read_text())["hydra"]["run"]["dir"]
    return distributed.setup(args, default)


def _run_hydra(command: str, args: list[str]) -> int:
    """Run a Hydra app with `args` as its command line; bad input ends in one line, exit 2."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from aectl.runfolder import forget_new_run_dir, remove_refused_run_dir

    task, config_name = {"train": (_train_task, "train"), "eval": (_eval_task, "eval")}[command]
    stray = _stray_word(command, args)
    if stray:
        print(f"aectl {command}: error: {stray}", file=sys.stderr)
        return 2
    forget_new_run_dir()  # a folder noted by an earlier command of this process is not this one's
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us; we print them in one line
    if "-m" in args or "--multirun" in args:
        args = [*args, *_name_jobs_by_swept_keys(args)]
    sys.argv = [sys.argv[0], *args]
    # torchrun (or any launcher setting the env:// rendezvous variables) started this process.
    under_torchrun = command == "train" and all(v in os.environ for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))
    try:
        if under_torchrun:
            sys.argv = [sys.argv[0], *_join_process_group(args)]
        with _claim_explicit_run_dir(command, sys.argv):
            _hydra_app(_single_run_errors(task), config_name)()
    except (_InputError, AectlError, HydraException, OmegaConfBaseException) as err:
        err = err.args[0] if isinstance(err, _InputError) else err
        if full_error == "1":
            raise err
        remove_refused_run_dir()
        print(f"aectl {command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Interrupted as stopped:
        print(f"aectl {command}: {stopped.message()}", file=sys.stderr)
        return stopped.exit_code
    except KeyboardInterrupt:  # outside training's own handlers (start-up, eval): no traceback
        print(f"aectl {command}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # e.g. a run folder Hydra cannot create, a full disk
        if full_error == "1":
            raise
        remove_refused_run_dir()
        print(f"aectl {command}: error: {err.strerror or err}{f': {err.filename}' if err.filename else ''} "
              "(check hydra.run.dir and the paths in the config)", file=sys.stderr)
        return 2
    finally:
        if under_torchrun:
            from aectl.distributed import teardown

            teardown()
        if full_error is None:
            del os.environ["HYDRA_FULL_ERROR"]
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error
    return 0


# Hydra flags whose value is the next word (--cfg job, --info defaults), not an override.
_VALUE_FLAGS = ("-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name", "-cd",
                "--config-dir", "--experimental-rerun", "-i", "--info")


def _stray_word(command: str, args: list[str]) -> str | None:
    """The error line for a word that is neither an override nor a flag, or None. Most often it
    is the rest of a value the shell split at a space (dataset.path=my data.csv): say how to quote it."""
    for i, arg in enumerate(args):
        if "=" in arg or arg.startswith(("-", "~")) or (i and args[i - 1] in _VALUE_FLAGS):
            continue
        before = args[i - 1] if i else ""
        if "=" not in before or before.startswith("-"):
            return f"{arg}: not an override; overrides are key=value (e.g. model=vae), see aectl {command} --help"
        words = [arg, *itertools.takewhile(lambda a: "=" not in a and not a.startswith(("-", "~")), args[i + 1:])]
        return (f"{arg}: not an override (key=value); a value with spaces must be quoted, "
                f"e.g. \"{' '.join([before, *words])}\"")
    return None


# Hydra flags after which no run starts (so no run folder to claim).
_NO_RUN_FLAGS = ("-m", "--multirun", "-c", "--cfg", "-h", "--help", "--hydra-help", "-i", "--info", "-sc",
                 "--shell-completion")


def _claim_explicit_run_dir(command: str, argv: list[str]):
    """`aectl train hydra.run.dir=<folder>`: lock and check the folder before Hydra writes its
    .hydra/ and train.log there (aectl.runfolder), so a second run pointed at it leaves it
    untouched. Resuming in place keeps the folder's original .hydra/ record."""
    import contextlib

    from aectl.runfolder import claim, note_new_run_dir

    args = argv[1:]
    given = [a.split("=", 1)[1] for a in args if a.lstrip("+").startswith("hydra.run.dir=")]
    if command != "train" or not given or "${" in given[-1] or \
            any(a.split("=", 1)[0] in _NO_RUN_FLAGS for a in args):
        return contextlib.nullcontext()
    run_dir = Path(given[-1].strip("'\""))
    resuming = any(a.startswith("trainer.resume=") and a.split("=", 1)[1] not in ("", "null") for a in args)
    if resuming and (run_dir / "checkpoints" / "last.pt").is_file() and \
            not any(a.startswith("hydra.output_subdir=") for a in args):
        argv.append("hydra.output_subdir=null")
    note_new_run_dir(run_dir)  # before the lock creates it
    return claim(run_dir, resuming)


def _name_jobs_by_swept_keys(args: list[str]) -> list[str]:
    """Sweep job folders are named by the overrides that vary (model.latent_dim=8), not by
    every override of the command line: exclude the fixed ones from Hydra's override_dirname."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in args if "=" in a and not a.startswith("-") and not a.startswith("hydra.")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.key_or_group for o in parsed if not o.is_sweep_override()]
    return [f"hydra.job.config.override_dirname.exclude_keys=[{','.join(fixed)}]"] if fixed else []


def _completion(args: list[str]) -> int:
    """Hydra's shell completion calls `aectl -sc query=bash` with COMP_LINE='aectl train ...':
    drop the subcommand word so Hydra completes the overrides of that command."""
    words = os.environ.get("COMP_LINE", "").split(maxsplit=2)
    if len(words) >= 2 and words[1] in ("train", "eval"):
        line = os.environ["COMP_LINE"]
        cut = line.index(words[1]) + len(words[1])
        os.environ["COMP_LINE"] = line[:line.index(words[1])] + line[cut:].lstrip()
        removed = len(line) - len(os.environ["COMP_LINE"])
        os.environ["COMP_POINT"] = str(max(0, int(os.environ.get("COMP_POINT", len(line))) - removed))
        return _run_hydra(words[1], args)
    if len(words) >= 2 and words[1] == "report":
        print("\n".join(_report_completions(os.environ["COMP_LINE"], os.environ.get("COMP_POINT"))))
        return 0
    if len(words) <= 1 or (len(words) == 2 and not os.environ["COMP_LINE"].endswith(" ")):
        print("\n".join(f"{c} " for c in COMMANDS))  # the command word itself
    return 0


def _report_completions(line: str, point: str | None) -> list[str]:
    """`aectl report <Tab>`: the folders (and globs' folders) starting with the word being
    completed, each ending in / so the next Tab goes inside; --out after a dash."""
    import glob

    typed = line[:int(point)] if point and point.isdigit() else line
    word = "" if typed.endswith(" ") else typed.split()[-1]
    if word.startswith("-"):
        return [o for o in ("--out ", "--help ") if o.startswith(word)]
    home = os.path.expanduser("~")
    pattern = os.path.expanduser(word)
    folders = sorted(p for p in glob.glob(glob.escape(pattern) + "*") if os.path.isdir(p))
    return [(("~" + p[len(home):]) if word.startswith("~") else p) + "/" for p in folders]


def version() -> str:
    """The installed distribution's version; the package's own where it is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("aectl")
    except PackageNotFoundError:
        from aectl import __version__

        return __version__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if "--version" in argv[:1] or (argv[0] in COMMANDS and "--version" in argv[1:]):  # before Hydra's own --version
        print(f"aectl {version()}")
        return 0
    if argv[0] == "-sc":
        return _completion(argv)
    command, rest = argv[0], argv[1:]
    if command == "eval" and {"-m", "--multirun"} & set(rest):  # each job would overwrite <run>/eval
        print("aectl eval: error: -m/--multirun is not supported; to evaluate every job of a sweep, "
              "pass its folder: ckpt=multirun/<date>/<time>", file=sys.stderr)
        return 2
    if command in ("train", "eval"):
        return _run_hydra(command, rest)
    if command == "report":  # reads run folders only: no Hydra app, no config
        from aectl.report import main as report_main

        return report_main(rest)
    print(f"aectl: unknown command {command!r}; allowed: {', '.join(COMMANDS)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
