"""Resuming through the CLI: which checkpoint `trainer.resume` names, and the resumed run's
config (the checkpoint's, with only the overrides that keep it the same run)."""

from pathlib import Path

from aectl.config.errors import AectlError


def resume_source(value: str, run_dir: Path) -> str | None:
    """trainer.resume=auto → this run folder's checkpoint, or the newest (aectl.runs.runfolder)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from aectl.runs.runfolder import resume_source as find_source

    hydra_cfg = HydraConfig.get()
    # A sweep job continues its own folder or starts fresh: never another run's checkpoint.
    explicit = hydra_cfg.mode != RunMode.RUN or \
        any(o.lstrip("+").split("=", 1)[0] == "hydra.run.dir" for o in hydra_cfg.overrides.hydra)
    return find_source(value, run_dir, explicit)


def load_resume_checkpoint(path: str) -> dict:
    from aectl.config.errors import CheckpointError
    from aectl.runs.checkpoint import load_checkpoint

    try:
        return load_checkpoint(path)
    except CheckpointError as err:
        raise AectlError(f"trainer.resume={path}: {err}") from None


# Overrides that keep a resumed run the same run: how long and how fast it trains, how it logs
# and where it runs. Anything else would train another model on the saved weights and optimizer.
RESUME_SAFE = ("trainer.epochs", "trainer.lr", "trainer.weight_decay", "trainer.grad_clip", "trainer.log_every",
               "trainer.images_every", "trainer.save_every", "trainer.progress", "trainer.device", "trainer.threads",
               "trainer.resume", "trainer.compile", "trainer.precision", "trainer.on_nonfinite",
               "trainer.max_skipped_batches", "trainer.early_stopping_patience", "trainer.early_stopping_min_delta")


GROUPS = ("model", "dataset", "noise", "penalty", "beta_schedule", "lr_schedule", "trainer")
# Presets: a resume composes them again and must get the saved sections (experiment presets
# leave trainer free; a search preset sets trainer.epochs and trainer.monitor, so it is checked too).
PRESETS = {"experiment": GROUPS[:-1], "hparams_search": GROUPS}


def resumed_config(saved: dict, overrides: list[str], composed=None, mid_epoch: bool = False):
    """A resumed run keeps the checkpoint's config; the overrides of RESUME_SAFE given now apply
    on top (e.g. trainer.epochs=50 to train longer; trainer.batch_size too, at an epoch
    boundary). Any other override must repeat the saved value (the original command run again
    with trainer.resume=auto), else the resume is refused naming the key: the same holds for
    group choices (`model=vae`) and presets, which must compose to the saved sections."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from aectl.config import TrainConfig

    group_of = lambda o: o.split("=", 1)[0].lstrip("+~")  # noqa: E731
    dotted = [o.lstrip("+") for o in overrides
              if "=" in o and not o.startswith("~") and group_of(o) not in (*GROUPS, *PRESETS)]
    original = OmegaConf.merge(OmegaConf.structured(TrainConfig), saved)
    merged = original.copy()
    # Hydra's own parser and key paths, so `model.hidden_dims.0=32` sets a list element as it did
    # when the run started, and a value reads as it read then.
    for parsed in OverridesParser.create().parse_overrides(dotted):
        OmegaConf.update(merged, parsed.key_or_group, parsed.value(), merge=True)
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
        sections = PRESETS.get(group, (group,))
        if group in (*GROUPS, *PRESETS) and not all(_same_section(composed, merged, g) for g in sections):
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
