"""A run's record at its end: the split metrics of its weights (the last, or best.pt's), best.pt's
too when it is of an earlier epoch, and what metrics.json says about the run. `run` is the
trainer's Training."""

import json

from aectl.config.monitoring import primary
from aectl.evaluation.validation import mean_image_psnr
from aectl.training.monitor import score_value, watched


def load_best(run) -> bool:
    """Load best.pt's weights into the model (an early-stopped run's result); False if none."""
    from aectl.runs.checkpoint import load_checkpoint

    best = run.run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        run.loop.model.load_state_dict(load_checkpoint(best)["state_dict"])
    return best.is_file()


def split_metrics(run) -> dict:
    """Every non-empty split's metrics, of the model's current weights."""
    return {split: run.evaluate(split) for split in ("train", "val", "test") if len(getattr(run.data, split))}


def best_metrics(run, best_epoch: int) -> dict | None:
    """best.pt's split metrics when its weights are not the last ones (it was written at an
    earlier epoch); the model gets the last weights back. None when they are the same."""
    if best_epoch == run.progress.epoch:
        return None
    last = {k: v.clone() for k, v in run.loop.model.state_dict().items()}
    if not load_best(run):
        return None
    metrics = {"epoch": best_epoch, **split_metrics(run)}
    run.loop.model.load_state_dict(last)
    return metrics


def final_metrics(run) -> dict:
    """Every split's metrics, the history and the run's record; written to metrics.json.
    `weights` says whose the split metrics are: the last weights, or best.pt's when early
    stopping ended the run; otherwise `best` holds best.pt's when it is of an earlier epoch."""
    data, progress = run.data, run.progress
    final = split_metrics(run)
    final["weights"] = "best" if progress.stopped_early else "last"
    if len(data.val):
        final["val_psnr_mean_image"] = mean_image_psnr(data.batches(data.train, run.eval_batch),
                                                       data.batches(data.val, run.eval_batch), data.known_range)
    final.update(best_val_loss=progress.best_val_loss, val_loss_history=progress.val_history,
                 epochs=progress.epoch, steps=progress.step, train_time_s=round(run.elapsed(), 3),
                 overrides=run.meta.get("overrides", []), resumed_with=run.meta.get("resumed_with", []))
    if progress.score_history:  # what best.pt was chosen by, its value and its epoch
        best, monitor = min(progress.score_history), primary(run.settings.monitor)
        final["best_checkpoint"] = {"metric": watched(monitor), "value": score_value(best, monitor),
                                    "epoch": progress.score_history.index(best) + 1}
        if not progress.stopped_early and (of_best := best_metrics(run, final["best_checkpoint"]["epoch"])):
            final["best"] = of_best
    if progress.stopped_early:
        final["stopped_early"] = progress.stopped_early
    if progress.pruned:
        final["pruned"] = progress.pruned
    # greedy pretraining's stage epochs, on top of `epochs` (aectl.training.pretraining)
    if "pretrain" in run.meta:
        final["pretrain"] = run.meta["pretrain"]
    if run.loop.dist.is_main:
        (run.run_dir / "metrics.json").write_text(json.dumps(final, indent=2))
    return final
