"""Which fields each option of a config group reads. A field the chosen option does not read
must keep its default (`noise=masking noise.sigma=0.5` is refused, not silently ignored), a field
given on the command line must be one it reads, and a preset's fields of an option the command
line switched away from go back to their defaults."""

from dataclasses import fields

from aectl.config import TrainConfig
from aectl.config.errors import ConfigError
from aectl.config.sae_checks import SAE_ACTIVATION_FIELDS, reset_switched_activation_fields

# The fields each option of a group reads; a field it does not read must keep its default, so
# that `noise=masking noise.sigma=0.5` is refused instead of silently ignored.
NOISE_FIELDS = {"none": (), "gaussian": ("sigma", "clip", "v_min", "v_max"), "salt_pepper": ("p", "v_min", "v_max"),
                "masking": ("p",)}
PENALTY_FIELDS = {"none": (), "kl_sparsity": ("rho", "beta"), "l1": ("weight",)}
PENALTY_FIELDS["contractive"] = ("weight",)
SCHEDULE_FIELDS = {"constant": (), "linear": ("warmup_steps",), "sigmoid": ("k", "x0"), "cyclical": ("cycles", "ratio")}
LR_SCHEDULE_FIELDS = {"constant": (), "cosine": ("warmup_steps", "min_lr"), "step": ("step_size", "gamma"),
                      "plateau": ("factor", "patience", "min_delta", "min_lr"), "burda": ()}
# A pool is split three ways (val_fraction, test_fraction, seeded by split_seed); a dataset with
# its own test set only carves val from train; binarized_mnist's three splits are fixed (its
# binarize is read to refuse anything but none: it is binary already).
_SPLIT_FIELDS = ("binarize", "val_fraction", "test_fraction", "split_seed", "limit")
_DOWNLOADED = ("binarize", "val_fraction", "split_seed", "limit", "root", "download")
DATASET_FIELDS = {
    "digits": _SPLIT_FIELDS, "synthetic": (*_SPLIT_FIELDS, "num_samples", "shape"),
    "mnist": _DOWNLOADED, "fashion_mnist": _DOWNLOADED, "kmnist": _DOWNLOADED, "cifar10": _DOWNLOADED,
    "binarized_mnist": ("binarize", "limit", "root", "download"),
    "tensor_file": (*_SPLIT_FIELDS, "path", "key", "label_key", "label_column", "scale"),
    "image_folder": (*_SPLIT_FIELDS, "path", "size", "channels", "in_memory", "workers"),
    "sparse_synthetic": (*_SPLIT_FIELDS, "num_samples", "n_directions", "dim", "active_prob"),
    "activations": ("val_fraction", "test_fraction", "split_seed", "limit", "path", "key", "normalize", "chunk_rows"),
}


def _unused_fields(section, group: str, option: str, used: tuple[str, ...], skip: tuple[str, ...] = ()) -> None:
    """Refuse a field set away from its default that the chosen option does not read."""
    defaults = type(section)()
    for f in fields(section):
        if f.name in (*used, *skip) or getattr(section, f.name) == getattr(defaults, f.name):
            continue
        reads = ", ".join(used) if used else "none"
        raise ConfigError(f"{group}.{f.name}", getattr(section, f.name),
                          f"{group}={option} does not use {f.name} (its fields: {reads}); "
                          f"remove it or choose a {group} that has it")


def _option_tables(cfg: TrainConfig) -> dict:
    """group → (its chosen option, the table of the fields each option reads)."""
    return {"noise": (cfg.noise.kind, NOISE_FIELDS), "penalty": (cfg.penalty.kind, PENALTY_FIELDS),
            "beta_schedule": (cfg.beta_schedule.kind, SCHEDULE_FIELDS),
            "lr_schedule": (cfg.lr_schedule.kind, LR_SCHEDULE_FIELDS), "dataset": (cfg.dataset.name, DATASET_FIELDS)}


def check_dataset_overrides(name: str, given: dict) -> None:
    """`aectl eval dataset.<field>=…` on top of a checkpoint's dataset: a field the dataset does
    not read is refused like at training (binarized_mnist's splits are fixed: no val_fraction)."""
    used = DATASET_FIELDS.get(name, ())
    for field_name, value in given.items():
        if field_name != "name" and field_name not in used:
            raise ConfigError(f"dataset.{field_name}", value, f"dataset={name} does not use {field_name} (its fields: "
                                                              f"{', '.join(used)}); remove it")


def drop_fields_of_switched_options(cfg: TrainConfig, overrides: list[str]) -> list[str]:
    """`experiment=mnist_vae lr_schedule=constant`: the preset's fields of the option it chose
    (its cosine's warm-up) mean nothing to the option the command line switched to; they go back
    to their defaults instead of being refused. Returns the `key=value` settings dropped."""
    tables, given = _option_tables(cfg), {o.lstrip("+").partition("=")[0] for o in overrides}
    dropped = []
    for group in given & set(tables):
        option, table = tables[group]
        section = getattr(cfg, group)
        defaults = type(section)()
        for f in fields(section):
            value = getattr(section, f.name)
            if f.name not in (*table[option], "kind", "name") and f"{group}.{f.name}" not in given \
                    and value != getattr(defaults, f.name):
                dropped.append(f"{group}.{f.name}={value}")
                setattr(section, f.name, getattr(defaults, f.name))
    return dropped + reset_switched_activation_fields(cfg, given)


def check_given_fields(cfg: TrainConfig, overrides: list[str]) -> None:
    """A field given on the command line that the chosen option does not read is refused even at
    its default value (`dataset=mnist dataset.size=32`): it says the user meant something else."""
    options = _option_tables(cfg)
    for override in overrides:
        key = override.lstrip("+").partition("=")[0]
        group, _, name = key.partition(".")
        sae_k = cfg.model.kind == "sae" and "k" in SAE_ACTIVATION_FIELDS.get(cfg.model.activation, ())
        if key == "model.k" and cfg.model.kind not in ("iwae", "hvae") and not sae_k:  # even at its default
            raise ConfigError(key, cfg.model.k, f"unset for model={cfg.model.kind} (k is the importance samples "
                                                "of model=iwae and model=hvae, the active latents of model=sae with "
                                                "topk or batchtopk)")
        if group in options and name not in ("kind", "name", ""):
            option, table = options[group]
            if name not in table[option]:
                value = getattr(getattr(cfg, group), name, override.partition("=")[2])
                raise ConfigError(key, value, f"{group}={option} does not use {name} (its fields: "
                                              f"{', '.join(table[option]) or 'none'}); remove it or choose a {group} "
                                              "that has it")


def check_fields_apply(cfg: TrainConfig) -> None:
    """Every field set must do something: refuse what the chosen options would silently ignore."""
    d, n, p, s = cfg.dataset, cfg.noise, cfg.penalty, cfg.beta_schedule
    _unused_fields(n, "noise", n.kind, NOISE_FIELDS[n.kind], ("kind",))
    _unused_fields(p, "penalty", p.kind, PENALTY_FIELDS[p.kind], ("kind",))
    _unused_fields(s, "beta_schedule", s.kind, SCHEDULE_FIELDS[s.kind], ("kind",))
    r = cfg.lr_schedule
    _unused_fields(r, "lr_schedule", r.kind, LR_SCHEDULE_FIELDS[r.kind], ("kind",))
    _unused_fields(d, "dataset", d.name, DATASET_FIELDS[d.name], ("name",))
    if d.name == "binarized_mnist" and d.binarize != "none":
        raise ConfigError("dataset.binarize", d.binarize, "none for dataset=binarized_mnist (it is binary already, "
                          "a fixed binarization); for dynamic binarization use dataset=mnist dataset.binarize=dynamic")
