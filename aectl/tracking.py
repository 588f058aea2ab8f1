"""TensorBoard logging behind a small interface, plus a null tracker when logging is off.

Tag names live here and nowhere else.
"""

from pathlib import Path

import torch

from aectl.errors import AectlError

TRAIN, VAL, TEST, EVAL = "train", "val", "test", "eval"
CHARTS_LR, CHARTS_SPEED = "charts/lr", "charts/samples_per_s"
IMG_INPUT, IMG_NOISY, IMG_RECON = "images/input", "images/noisy", "images/reconstruction"
IMG_SAMPLES, IMG_TRAVERSAL = "images/samples", "images/traversal"
HIST_MU, HIST_LOGVAR, HIST_Z = "latent/mu", "latent/logvar", "latent/z"
TRAIN_SKIPPED = "train/skipped_batches"  # trainer.on_nonfinite=skip_batch: batches skipped so far
# aectl eval: scalars are EVAL/<metric>, images EVAL/<picture>; the projector's embedding tag
# (also its folder, <run>/<step>/<tag>/, so no slash in it).
EVAL_EMBEDDING = "eval_latent"


class NullTracker:
    """Accepts every call and records nothing."""

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None: ...
    def scalar(self, tag: str, value: float, step: int) -> None: ...
    def image(self, tag: str, image: torch.Tensor, step: int) -> None: ...
    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None: ...
    def hparams(self, hparams: dict, metrics: dict[str, float]) -> None: ...
    def embedding(self, features, labels, images, step: int, tag: str) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class TensorBoardTracker(NullTracker):
    """Writes one TensorBoard run into `log_dir` (the run folder itself)."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        self.writer.add_image(tag, image, step)

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        values = values.detach().float().cpu()
        values = values[values.isfinite()]
        try:
            self.writer.add_histogram(tag, values, step)
        except ValueError:  # empty, or a range too wide to bin: a diverged model must not crash its logging
            pass

    def hparams(self, hparams: dict, metrics: dict[str, float]) -> None:
        """Write hparams into this run (not a sub-run, as `add_hparams` would), so the HPARAMS
        tab lists every run of a sweep with its final metrics."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        experiment, session_start, session_end = hparams_summary(flat, metrics)
        for summary in (experiment, session_start, session_end):
            self.writer.file_writer.add_summary(summary)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value)

    def embedding(self, features, labels, images, step: int, tag: str) -> None:
        self.writer.add_embedding(features, metadata=labels, label_img=images, global_step=step, tag=tag)

    def flush(self) -> None:
        try:
            self.writer.flush()
        except OSError as err:  # e.g. a full disk: one line naming the folder, not the writer's traceback
            raise AectlError(f"{self.writer.log_dir}: cannot write TensorBoard events ({err.strerror or err}); "
                             "the checkpoints written so far are intact") from None

    def close(self) -> None:
        try:
            self.writer.close()
        except OSError:
            pass  # runs in a finally: it must not hide the error that ended the run (flush reports its own)
