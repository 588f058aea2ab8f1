"""Hydra's and OmegaConf's errors as the one line `aectl` prints."""

import dataclasses

from aectl.config.errors import AectlError


def one_line(err: BaseException) -> str:
    """Hydra/OmegaConf errors → one line naming the key, the value and what is allowed."""
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and err.options:
        group, _, name = (err.missing_cfg_file or "").rpartition("/")  # nested groups: hydra/launcher
        line = f"{group}={name}: no such option; allowed {group}=" + ", ".join(sorted(err.options))
        if group == "hydra/launcher":
            line += " (pip install 'aectl[sweep]' adds joblib, 'aectl[slurm]' submitit_local and submitit_slurm)"
        if group == "hydra/sweeper":  # the hparams_search presets choose aectl_optuna
            line += " (pip install 'aectl[optuna]' adds aectl_optuna)"
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
