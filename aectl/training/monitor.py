"""`trainer.monitor`: the one number a run is judged by. A name <split>/<metric> of the run's
final metrics (metrics.json: of the last weights, or of best.pt when early stopping ended the
run), and whether smaller is better.
It is the objective of a hyperparameter search (hydra/sweeper=aectl_optuna), and its metric on
the validation split picks best.pt and drives early stopping and the plateau lr schedule."""

import math

from aectl.config.monitoring import direction


def objective(metrics: dict, name: str) -> float:
    """The value of monitor `name` in a run's final metrics; an error if missing or not finite,
    so a search records the trial as failed instead of ranking a NaN."""
    split, metric = name.split("/", 1)
    value = metrics.get(split, {}).get(metric)
    if value is None:
        raise ValueError(f"trainer.monitor={name}: the run has no such metric "
                         f"(it has {', '.join(split + '/' + k for k in metrics.get(split, {}))})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"trainer.monitor={name}: the run ended with a non-finite value ({value})")
    return value


def watched(name: str) -> str:
    """The metric each epoch's validation watches for `name`: its metric on the val split (a
    train/ monitor too: a checkpoint chosen on the data it trained on would reward overfitting)."""
    return "val/" + name.split("/", 1)[1]


def epoch_score(val: dict, name: str) -> float:
    """This epoch's value of watched(name) from its validation metrics `val`, negated when higher
    is better, so that best.pt, early stopping and the plateau schedule all look for a minimum."""
    value = float(val[name.split("/", 1)[1]])
    return value if direction(name) == "minimize" else -value


def score_value(score: float, name: str) -> float:
    """The metric's own value of an epoch_score (undoes the negation)."""
    return score if direction(name) == "minimize" else -score
