"""A search's pruner ending a trial: after each epoch the main rank reports trainer.monitor's val
value to the trial (aectl.runs.optuna_study), and every rank stops when the pruner says so."""

import logging
from typing import Callable

from aectl.config.monitoring import primary
from aectl.training.monitor import score_value, watched

log = logging.getLogger("aectl.training.trainer")


def prune_when_told(run, report: Callable[[int, float], bool] | None) -> bool:
    """Report the epoch just ended of `run` (a trainer.Training) through `report(epoch, value)`
    (main rank only) and, when any rank is told to stop, end the run cleanly: its result is
    best.pt, its record `pruned: {epoch, value}`. False (and nothing reported) outside a search."""
    progress, monitor = run.progress, primary(run.settings.monitor)
    value = score_value(progress.score_history[-1], monitor)
    says = report(progress.epoch, value) if report is not None and run.loop.dist.is_main else False
    if not run.loop.dist.any_rank(says):
        return False
    history = progress.score_history
    progress.pruned = {"epoch": progress.epoch, "value": value}
    progress.stopped_early = {"epoch": progress.epoch, "best_epoch": history.index(min(history)) + 1,
                              "reason": "pruned by the search's pruner"}
    log.info("trial pruned after epoch %d (%s %.5g); the run's result is checkpoints/best.pt", progress.epoch,
             watched(monitor), value)
    run.checkpoint("last.pt")
    return True
