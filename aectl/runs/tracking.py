"""TensorBoard logging behind a small interface, plus a null tracker when logging is off.

Tag names live here and nowhere else.
"""

from pathlib import Path

import torch

from aectl.config.errors import AectlError

# TensorBoard lists tag groups by name: the training curves (train/, val/) come first (after an
# `aectl eval`'s pictures), the single points of the final metrics (val_final/, the HPARAMS tab's),
# the images and histograms after them.
TRAIN, VAL, TEST, EVAL = "train", "val", "test", "eval"
CHARTS_LR, CHARTS_SPEED = "train/lr", "train/samples_per_s"
FINAL = "val_final"  # the final val metrics of a run, one point each: the HPARAMS tab's metric columns
# images and latent histograms of a val batch: after the curves too
IMG_INPUT, IMG_NOISY, IMG_RECON = "val_images/input", "val_images/noisy", "val_images/reconstruction"
IMG_SAMPLES, IMG_TRAVERSAL = "val_images/samples", "val_images/traversal"
HIST_MU, HIST_LOGVAR, HIST_Z = "val_latent/mu", "val_latent/logvar", "val_latent/z"
TRAIN_SKIPPED = "train/skipped_batches"  # trainer.on_nonfinite=skip_batch: batches skipped so far
# aectl eval: its metrics are one text table EVAL/<name> (a scalar chart of one point reads badly),
# its images EVAL/<name>/<picture>; the projector's embedding tag (also its folder,
# <run>/<step>/<tag>/, so no slash in it).
EVAL_EMBEDDING = "eval_latent"


# The final val metrics the HPARAMS tab shows (those a run has), with the one trainer.monitor watches.
FINAL_METRICS = ("loss", "recon", "kl", "psnr", "active_units")


def final_metrics(val: dict[str, float], monitored: str) -> dict[str, float]:
    """{"val_final/loss": …}: a few of a run's final val metrics, and `monitored` (a metric name)."""
    names = dict.fromkeys([*(m for m in FINAL_METRICS if m in val), monitored])
    return {f"{FINAL}/{name}": val[name] for name in names if name in val}


class NullTracker:
    """Accepts every call and records nothing."""

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None: ...
    def scalar(self, tag: str, value: float, step: int) -> None: ...
    def image(self, tag: str, image: torch.Tensor, step: int) -> None: ...
    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None: ...
    def table(self, tag: str, values: dict[str, float], step: int) -> None: ...
    def hparams(self, hparams: dict, metrics: dict[str, float], varied: list[str] = (),
                constants: bool = True) -> None: ...
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

    def table(self, tag: str, values: dict[str, float], step: int) -> None:
        """Single numbers (an evaluation's metrics) as one "metric | value" table in the TEXT tab."""
        from aectl.runs.tables import format_metric

        rows = "".join(f"| {name} | {format_metric(name, value)} |\n" for name, value in values.items())
        self.writer.add_text(tag, "| metric | value |\n|---|---|\n" + rows, step)

    def hparams(self, hparams: dict, metrics: dict[str, float], varied: list[str] = (),
                constants: bool = True) -> None:
        """Write hparams into this run (not a sub-run, as `add_hparams` would), so the HPARAMS
        tab lists every run of a sweep with its final metrics. Its columns: the `varied` keys
        first (TensorBoard puts keys marked as differing first), then, with `constants`, the
        other keys; then the metrics. Every value is in the run's session either way."""
        from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        experiment, session_start, session_end = hparams_summary(flat, metrics)
        plugin = experiment.value[0].metadata.plugin_data
        data = HParamsPluginData.FromString(plugin.content)
        infos = {info.name: info for info in data.experiment.hparam_infos}
        data.experiment.ClearField("hparam_infos")
        for name in (k for k in flat if k in varied or constants):
            infos[name].differs = name in varied
            data.experiment.hparam_infos.append(infos[name])
        plugin.content = data.SerializeToString()
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
