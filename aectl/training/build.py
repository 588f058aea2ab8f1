"""The composition root: a typed config (aectl.config.TrainConfig) → data, model, objective,
corruption and β schedule → a trained run folder. No Hydra here: the CLI parses and resumes
configs and calls `train`; the Python API (aectl.train) calls it the same way.
"""

import contextlib
import dataclasses
import functools
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from aectl.training import run_summary

log = logging.getLogger("aectl")


@dataclass
class Components:
    """What `fit` runs, built from one config."""

    data: object  # aectl.datasets.DataSplits on the device
    model: object  # the torch module
    objective: object  # aectl.objectives.objective.Objective
    corrupt: object  # aectl.datasets.noise.Corruption
    beta_at: object  # step → β
    meta: dict  # what every checkpoint stores besides weights and progress
    lr_at: object = None  # (step, epoch, plateau reductions) → lr


def train(config, run_dir: Path, resume: dict | None = None, overrides: list[str] = (),
          hparams_lead: list[str] = ()) -> dict:
    """Train `config` into `run_dir` (continuing the loaded checkpoint `resume`), holding the
    run folder's lock (aectl.runs.runfolder); a first SIGINT/SIGTERM stops after the current step
    (aectl.runs.signals). `overrides` are recorded in metrics.json; `hparams_lead` (a sweep's swept
    overrides) go first in TensorBoard's HPARAMS. Returns the final metrics ({} if nothing to do)."""
    from aectl.runs import preemption, runfolder, signals

    run_dir = Path(run_dir)
    with runfolder.claim(run_dir, resuming=resume is not None), \
            signals.StopSignals(preemption.stop_signals()) as stop:
        runfolder.clear_interrupted(run_dir)  # this process trains here now
        try:
            return _fit(config, run_dir, resume, stop, list(overrides), list(hparams_lead))
        except signals.Interrupted as stopped:
            stopped.run_dir = run_dir
            raise
        except Exception as err:
            runfolder.mark_failed(run_dir, err)  # aectl report lists the run as failed, with this line
            raise


def _fit(config, run_dir: Path, resume: dict | None, stop_requested, overrides: list[str],
         hparams_lead: list[str]) -> dict:
    from aectl.config.monitoring import primary
    from aectl.runs.optuna_study import epoch_report
    from aectl.runs.tracking import NullTracker, TensorBoardTracker, final_metrics
    from aectl.runtime.distributed import current as current_distributed
    from aectl.training.pretraining import pretrain
    from aectl.training.trainer import fit

    built = build(config, resume, overrides)
    log.info("run folder: %s", run_dir)
    log.info("model %s (%s), %d parameters, on %s; %d training examples", config.model.kind, config.model.arch,
             sum(q.numel() for q in built.model.parameters()), built.data.train.device, len(built.data.train))
    dist = current_distributed()  # under torchrun only rank 0 writes TensorBoard events
    in_pretraining = resume is not None and not resume.get("pretrain", {"done": True})["done"]
    tracker = TensorBoardTracker(run_dir, purge_step=resume["step"] if resume and not in_pretraining else None) \
        if dist.is_main else NullTracker()
    try:
        resume = pretrain(built, config, run_dir, tracker, resume, dist.agree(stop_requested), dist.is_main)
        metrics = fit(built.model, built.data, built.objective, built.corrupt, built.beta_at, config.beta,
                      config.trainer, run_dir, tracker, built.meta, resume, dist=dist,
                      stop_requested=dist.agree(stop_requested), lr_at=built.lr_at, lr_schedule=config.lr_schedule,
                      report=epoch_report() if dist.is_main else None)
        if metrics:
            # A sweep's HPARAMS columns: its swept keys, then a few metrics; a single run's: its overrides first
            lead = hparams_lead or built.meta["overrides"]
            values = run_summary.hparams(built.meta["config"], lead)
            tracker.hparams(values, final_metrics(metrics["val"], primary(config.trainer.monitor).split("/", 1)[1]),
                            run_summary.lead_keys(values, lead), constants=not hparams_lead)
            done, *of_best = run_summary.done_lines(metrics, run_dir / "metrics.json")
            log.info(done)
            sizes = config.model.latent_dims if config.model.kind == "hvae" else [config.model.latent_dim]
            log.info(run_summary.summary(metrics, sizes))  # of the weights the done line names
            for line in of_best:  # best.pt's when it is another epoch's than the numbers above
                log.info(line)
    finally:
        tracker.close()
    return metrics


def build(config, resume: dict | None = None, overrides: list[str] = ()) -> Components:
    """Every component of a run, from the config (and a checkpoint being resumed)."""
    import torch

    from aectl import datasets as data_mod
    from aectl.config.monitoring import check_monitor_data, names
    from aectl.datasets import noise
    from aectl.objectives.objective import make_objective
    from aectl.runtime.device import resolve_device

    m, t = config.model, config.trainer
    if t.threads:
        torch.set_num_threads(t.threads)
    resolve_data_paths(config)
    config_dict = dataclasses.asdict(config)
    saved_scaler = resume.get("data", {}).get("scaler") if resume is not None else None
    data = data_mod.load_dataset(**vars(config.dataset), scaler=saved_scaler)
    if m.kind != "sae":  # an sae's decoder is linear: any range
        data_mod.check_model_range(data, m.likelihood, m.output_activation)
    for name in names(t.monitor):
        check_monitor_data(name, data.known_range)
    config_dict["noise"] = noise_in_data_range(config_dict["noise"], data)  # what eval must use too
    corrupt = noise.Corruption(**{k: v for k, v in config_dict["noise"].items() if v is not None})
    data = data.to(resolve_device(t.device))
    with _origin_named(overrides):
        model, kwargs = _model(config, data, resume)  # these checks need the data's size, so they come after composition
        total_steps = _schedule_steps(config, len(data.train), resume)
        lr_at = _lr_schedule(config, total_steps)
    meta = {"model": {"kind": m.kind, "kwargs": kwargs}, "config": config_dict,
            "schedule": {"total_steps": total_steps},
            "overrides": resume["overrides"] if resume else list(overrides),
            "resumed_with": resume["resumed_with"] if resume else [],
            "data": {"scale": data.scale, "input_shape": data.input_shape, "binarize": data.binarize,
                     "scaler": data.scaler, "classes": data.classes}}
    objective = make_objective(m.kind, m.likelihood, m.sigma, vars(config.penalty), m.k, m.commitment, m.ema,
                               config_dict["model"])
    return Components(data, model, objective, corrupt,
                      _beta_schedule(config, total_steps), meta, lr_at)


@contextlib.contextmanager
def _origin_named(overrides: list[str]):
    """A refused value the command line did not set came from a preset or an option's config
    (`experiment=mnist_vae trainer.epochs=1`: its 1000 warm-up steps): the error says so, and how
    to override it."""
    from aectl.config.errors import ConfigError

    try:
        yield
    except ConfigError as err:
        given = [o.lstrip("+") for o in overrides]
        if not given or any(o.split("=", 1)[0] == err.key for o in given):
            raise
        preset = next((o.split("=", 1)[1] for o in given if o.startswith("experiment=")), None)
        source = f"the preset experiment={preset}" if preset else f"the {err.key.split('.')[0]} option's config"
        raise ConfigError(err.key, err.value, f"{err.allowed}; {err.key}={err.value} comes from {source}, not the "
                                              f"command line: override it with {err.key}=<value>") from None


def _model(config, data, resume: dict | None):
    """The model of the config for the data's input shape (the checkpoint's weights when resuming)
    and the constructor arguments a checkpoint rebuilds it from."""
    import torch

    from aectl.config import VARIATIONAL_KINDS
    from aectl.models import build_model

    m = config.model
    if m.kind == "sae":
        return _sae_model(config, data, resume)
    kwargs = dict(input_shape=data.input_shape, latent_dim=m.latent_dim, arch=m.arch,
                  hidden_dims=list(m.hidden_dims), conv_channels=list(m.conv_channels),
                  activation=m.activation, likelihood=m.likelihood, output_activation=m.output_activation,
                  sigma=m.sigma)
    if m.kind == "hvae":
        kwargs = dict(input_shape=data.input_shape, latent_dims=list(m.latent_dims), hidden_dims=list(m.hidden_dims),
                      top_hidden_dims=list(m.top_hidden_dims), activation=m.activation, likelihood=m.likelihood,
                      output_activation=m.output_activation, sigma=m.sigma, k=m.k)
    if m.prior == "vamp":  # pseudo-inputs stay in the data's range (none for standardised data)
        kwargs.update(prior="vamp", pseudo_inputs=m.pseudo_inputs, pseudo_input_range=data.known_range)
    if m.kind == "vqvae":
        from aectl.config.checks import VQ_FIELDS

        kwargs.update({name: getattr(m, name) for name in VQ_FIELDS})
    elif m.kind not in VARIATIONAL_KINDS:
        kwargs["code_activation"] = m.code_activation
    if m.kind == "iwae":
        kwargs["k"] = m.k
    if m.kind == "cvae":
        kwargs["num_classes"] = num_classes(data, config.dataset.name)
    torch.manual_seed(config.trainer.seed)
    model = build_model(m.kind, **kwargs)
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
    return model.to(data.train.device), kwargs


def _sae_model(config, data, resume: dict | None):
    """A sparse autoencoder for the data's size, its b_dec from the train split before the first
    step (aectl.models.sae.SparseAutoencoder.init_from_data); a resumed one keeps its own."""
    import math

    import torch

    from aectl.config.sae_checks import SAE_COMMON, SAE_ACTIVATION_FIELDS, check_sae_size, num_latents
    from aectl.models import build_model

    m = config.model
    latents = num_latents(m, math.prod(data.input_shape))
    check_sae_size(m, latents)
    names = [n for n in SAE_COMMON + SAE_ACTIVATION_FIELDS[m.activation]
             if n not in ("num_latents", "expansion_factor", "aux_coefficient", "l0_coefficient", "l1_coefficient")]
    kwargs = dict(input_shape=data.input_shape, num_latents=latents, activation=m.activation,
                  **{n: getattr(m, n) for n in names})
    torch.manual_seed(config.trainer.seed)
    model = build_model("sae", **kwargs).to(data.train.device)
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
    else:
        rows = data.train if isinstance(data.train, torch.Tensor) else next(data.batches(data.train, 16_384))
        model.init_from_data(data.as_float(rows))
    return model, kwargs


def num_classes(data, dataset: str) -> int:
    """The label count a conditional model is built for: the dataset's class names where it has
    them, else the largest label + 1. Data without labels, or with labels outside that range,
    is refused in one line (a label outside it would fail in the one-hot scatter mid-run)."""
    from aectl.config.errors import DataError

    labels = [y for y in (data.train_labels, data.val_labels, data.test_labels) if y is not None and len(y)]
    if data.train_labels is None or not labels:
        raise DataError(f"model=cvae needs a labelled dataset: dataset.name={dataset} has no labels (tensor_file: "
                        "dataset.label_key or dataset.label_column; image_folder: one sub-folder per class)")
    low, high = min(int(y.min()) for y in labels), max(int(y.max()) for y in labels)
    n = len(data.classes) if data.classes else high + 1
    if low < 0 or high >= n:
        raise DataError(f"model=cvae: dataset.name={dataset} has labels in [{low}, {high}], expected integers in "
                        f"[0, {n}) (one per class)")
    return n


def _schedule_steps(config, n_train: int, resume: dict | None) -> int:
    """The optimizer steps the β curve is laid out for: fixed when the run starts, so a resume
    with more epochs continues the same curve (a cyclical schedule keeps its period)."""
    from aectl.config.checks import check_schedule_fits

    steps_per_epoch = -(-n_train // config.trainer.batch_size)
    if resume is None:
        total = config.trainer.epochs * steps_per_epoch
    else:
        total = resume.get("schedule", {}).get("total_steps", resume["config"]["trainer"]["epochs"] * steps_per_epoch)
    check_schedule_fits(config.beta_schedule, total)
    return total


def _beta_schedule(config, total_steps: int):
    from aectl.config import VARIATIONAL_KINDS
    from aectl.objectives import schedules

    s = config.beta_schedule
    return functools.partial(schedules.beta_at, beta=config.beta if config.model.kind in VARIATIONAL_KINDS else 0.0,
                             kind=s.kind, warmup_steps=s.warmup_steps, k=s.k, x0=s.x0, cycles=s.cycles,
                             ratio=s.ratio, total_steps=total_steps)


def _lr_schedule(config, total_steps: int):
    """lr(step, epoch, reductions) on the base trainer.lr of this process (a resume may change it),
    over the same fixed step count as the β curve: a resume with more epochs keeps the cosine's
    period and trains the added steps at min_lr."""
    from aectl.config.errors import ConfigError
    from aectl.training import lr_schedules

    r = config.lr_schedule
    if r.kind == "cosine" and r.warmup_steps >= total_steps:
        raise ConfigError("lr_schedule.warmup_steps", r.warmup_steps,
                          f"fewer than the run's {total_steps} optimizer steps (the warm-up would never end)")
    return functools.partial(lr_schedules.lr_at, base_lr=config.trainer.lr, kind=r.kind,
                             warmup_steps=r.warmup_steps, min_lr=r.min_lr, step_size=r.step_size, gamma=r.gamma,
                             factor=r.factor, total_steps=total_steps)


def resolve_data_paths(config) -> None:
    """dataset.path and dataset.root as absolute paths: the checkpoint's config must find the data
    from any folder (aectl eval, a resume started elsewhere)."""
    for key in ("path", "root"):
        value = getattr(config.dataset, key)
        if value and not Path(str(value)).expanduser().is_absolute():
            setattr(config.dataset, key, str(Path(str(value)).expanduser().resolve()))


def noise_in_data_range(params: dict, data) -> dict:
    """noise.v_min/v_max unset (None) → the train split's value range, for the noises that use
    them (the clip range and the pepper/salt values are the data's, whatever its scale)."""
    from aectl.config.option_fields import NOISE_FIELDS

    if "v_min" not in NOISE_FIELDS[params["kind"]]:
        return params
    low, high = data.value_range(("train",))
    return {**params, "v_min": low if params.get("v_min") is None else params["v_min"],
            "v_max": high if params.get("v_max") is None else params["v_max"]}


def adopt_best_checkpoint(source: Path, run_dir: Path) -> None:
    """Continuing a run into a new folder: its best.pt so far comes along, so the new folder is
    complete and its metrics.json's best is a checkpoint in it."""
    from aectl.runs.runfolder import resolve_checkpoint

    source_dir = resolve_checkpoint(source).parent
    best, target = source_dir / "best.pt", Path(run_dir) / "checkpoints" / "best.pt"
    if best.is_file() and source_dir.resolve() != target.parent.resolve() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(best, target)
