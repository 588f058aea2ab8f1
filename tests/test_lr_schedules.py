"""LR schedules and early stopping: lr(t) by hand, the lr each optimizer step really used
(train/lr at log_every=1), exact resumes with the plateau and patience counters, and one-line
errors for bad values."""

import contextlib
import math

import pytest
import torch

from aectl.cli import main
from aectl.config import MODEL_KINDS
from aectl.runs.checkpoint import load_checkpoint
from aectl.training.lr_schedules import Plateau, lr_at
from tests.conftest import read_metrics

TINY = ("model.hidden_dims=[16]", "trainer.images_every=100", "trainer.log_every=1")
STEPS_PER_EPOCH = 12  # 1437 training digits in batches of 128
NEVER_IMPROVES = "1e9"  # a min_delta no epoch after the first can beat: a plateau from epoch 2 on


def lr_events(run) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return {e.step: e.value for e in EventAccumulator(str(run)).Reload().Scalars("train/lr")}


def lrs(run) -> list[float]:
    """The lr of every optimizer step, in order (train/lr at step s is optimizer step s − 1's)."""
    events = lr_events(run)
    return [events[s] for s in sorted(events)]


def assert_same_weights(a, b) -> None:
    a, b = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


# ---------------------------------------------------------------- lr(t) as pure functions

def test_cosine_warms_up_linearly_then_falls_to_min_lr_at_the_last_step():
    cos = dict(base_lr=1.0, kind="cosine", warmup_steps=4, min_lr=0.1, total_steps=15)  # steps 0..14
    assert [lr_at(t, 0, **cos) for t in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_at(4, 0, **cos) == pytest.approx(1.0)  # the cosine's top
    assert lr_at(9, 0, **cos) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: the mean of base and min_lr
    assert lr_at(7, 0, **cos) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 10)))
    assert lr_at(13, 0, **cos) > 0.1 and lr_at(14, 0, **cos) == 0.1 and lr_at(100, 0, **cos) == 0.1
    # one step after the warm-up: it is the last, at min_lr
    assert lr_at(4, 0, **{**cos, "total_steps": 5}) == 0.1


def test_step_multiplies_by_gamma_every_step_size_epochs_whatever_the_step():
    step = dict(base_lr=1.0, kind="step", step_size=2, gamma=0.5)
    assert [lr_at(999, e, **step) for e in range(6)] == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])


def test_plateau_lr_is_base_times_factor_per_reduction_never_below_min_lr():
    plateau = dict(base_lr=1.0, kind="plateau", factor=0.1, min_lr=0.005)
    assert [lr_at(0, 0, n, **plateau) for n in range(4)] == pytest.approx([1, 0.1, 0.01, 0.005])
    assert lr_at(5, 3, base_lr=0.01) == 0.01  # constant


def test_patience_counts_epochs_without_an_improvement_by_more_than_min_delta():
    p = Plateau()
    ran_out = [p.observe(v, 0.1, 2) for v in (1.0, 0.95, 0.85, 0.84, 0.83)]
    # 1.0 improves on ∞; 0.95 is not 0.1 below 1.0; 0.85 is; 0.84 and 0.83 are not: out of patience
    assert ran_out == [False, False, False, False, True] and p.best == 0.85 and p.bad_epochs == 2
    assert not Plateau().observe(5.0, 0.0, 0) and not any(Plateau().observe(5.0, 0.0, 0) for _ in range(9))


# ---------------------------------------------------------------- the lr each step used

def test_cosine_and_step_are_the_lr_of_every_optimizer_step(train_run):
    run = train_run(*TINY, "trainer.epochs=3", "trainer.lr=0.002", "lr_schedule=cosine",
                    "lr_schedule.warmup_steps=6", "lr_schedule.min_lr=0.0002")
    expected = [lr_at(t, t // STEPS_PER_EPOCH, base_lr=0.002, kind="cosine", warmup_steps=6, min_lr=0.0002,
                      total_steps=36) for t in range(36)]
    assert lrs(run) == pytest.approx(expected, rel=1e-6)
    assert lrs(run)[0] == pytest.approx(0.002 / 6) and lrs(run)[-1] == pytest.approx(0.0002, rel=1e-6)
    run = train_run(*TINY, "trainer.epochs=3", "lr_schedule=step", "lr_schedule.step_size=1", "lr_schedule.gamma=0.5")
    assert lrs(run) == pytest.approx([1e-3 * 0.5 ** (t // STEPS_PER_EPOCH) for t in range(36)], rel=1e-6)


def test_the_last_optimizer_step_trains_at_min_lr_exactly(train_run, monkeypatch):
    from aectl.training import trainer

    used, step = [], trainer.train_step

    def recording(model, optimizer, *args, **kwargs):
        used.append(optimizer.param_groups[0]["lr"])
        return step(model, optimizer, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", recording)
    train_run(*TINY, "trainer.epochs=2", "trainer.lr=0.002", "lr_schedule=cosine", "lr_schedule.warmup_steps=4",
              "lr_schedule.min_lr=0.0002")
    assert len(used) == 2 * STEPS_PER_EPOCH and used[4] == 0.002 and used[-1] == 0.0002


def test_plateau_reduces_after_patience_epochs_without_improvement(train_run):
    run = train_run(*TINY, "trainer.epochs=4", "lr_schedule=plateau", "lr_schedule.factor=0.5",
                    "lr_schedule.patience=1", f"lr_schedule.min_delta={NEVER_IMPROVES}")
    # epoch 1 improves on ∞; epochs 2 and 3 do not: the lr halves after each of them
    per_epoch = [1e-3, 1e-3, 5e-4, 2.5e-4]
    assert lrs(run) == pytest.approx([per_epoch[t // STEPS_PER_EPOCH] for t in range(48)], rel=1e-6)
    assert load_checkpoint(run)["lr_plateau"]["reductions"] == 3  # epoch 4's reduction is for a 5th epoch


def test_default_constant_lr_is_trainer_lr_throughout(train_run):
    assert lrs(train_run(*TINY, "trainer.epochs=2", "trainer.lr=0.003")) == pytest.approx([0.003] * 24)


# ---------------------------------------------------------------- exact across resume

def interrupted_at(stop_after, monkeypatch, train_run, k: int, *overrides: str):
    """A run stopped by SIGINT after its k-th optimizer step (mid-epoch), then resumed to the end."""
    stop_after(k)
    run = train_run(*overrides, expect_rc=130)
    monkeypatch.undo()
    assert load_checkpoint(run)["step"] == k
    assert main(["train", f"trainer.resume={run}", f"hydra.run.dir={run}", "trainer.progress=false",
                 "trainer.device=cpu"]) == 0
    return run


@pytest.mark.parametrize("schedule", [
    ("lr_schedule=cosine", "lr_schedule.warmup_steps=5", "lr_schedule.min_lr=0.0001"),
    ("lr_schedule=plateau", "lr_schedule.factor=0.5", "lr_schedule.patience=1",
     f"lr_schedule.min_delta={NEVER_IMPROVES}"),
], ids=["cosine", "plateau"])
def test_a_resumed_schedule_gives_the_uninterrupted_weights(stop_after, monkeypatch, train_run, schedule):
    args = (*TINY, "trainer.epochs=4", *schedule)
    reference = train_run(*args)
    run = interrupted_at(stop_after, monkeypatch, train_run, 2 * STEPS_PER_EPOCH + 6,
                         *args)  # after the 1st reduction
    resumed, uninterrupted = lr_events(run), lr_events(reference)
    assert set(range(2 * STEPS_PER_EPOCH + 7, 4 * STEPS_PER_EPOCH + 1)) <= set(resumed)  # every resumed step
    assert resumed == pytest.approx({s: uninterrupted[s] for s in resumed}, rel=1e-6)
    assert_same_weights(run, reference)


def test_trainer_lr_at_resume_rescales_the_rest_of_the_schedule(train_run):
    cosine = (*TINY, "lr_schedule=cosine", "lr_schedule.warmup_steps=5", "lr_schedule.min_lr=0.0001")
    reference = train_run(*cosine, "trainer.epochs=2")
    half = train_run(*cosine, "trainer.epochs=1")
    resumed = train_run(f"trainer.resume={half}", "trainer.epochs=2", "trainer.lr=0.002")
    # the cosine is laid out over the first run's 12 steps: past them the lr stays at min_lr
    assert lrs(resumed)[-12:] == pytest.approx([1e-4] * 12, rel=1e-6)
    assert lrs(reference)[-1] == pytest.approx(lr_at(23, 1, base_lr=1e-3, kind="cosine", warmup_steps=5,
                                                     min_lr=1e-4, total_steps=24))
    step = train_run(*TINY, "lr_schedule=step", "lr_schedule.step_size=1", "lr_schedule.gamma=0.5", "trainer.epochs=1")
    resumed = train_run(f"trainer.resume={step}", "trainer.epochs=2", "trainer.lr=0.004")
    assert lrs(resumed)[-12:] == pytest.approx([0.004 * 0.5] * 12, rel=1e-6)  # the new base, the same position


# ---------------------------------------------------------------- early stopping

EARLY = (*TINY, "trainer.early_stopping_patience=2", f"trainer.early_stopping_min_delta={NEVER_IMPROVES}")


def test_early_stopping_ends_the_run_after_patience_epochs_with_best_pt_as_its_result(train_run, caplog):
    run = train_run(*EARLY, "trainer.epochs=10")
    metrics = read_metrics(run)
    stopped = metrics["stopped_early"]
    best_epoch = metrics["val_loss_history"].index(min(metrics["val_loss_history"])) + 1
    assert stopped["epoch"] == 3 and stopped["best_epoch"] == best_epoch and "for 2 epochs" in stopped["reason"]
    assert metrics["epochs"] == 3 and metrics["steps"] == 3 * STEPS_PER_EPOCH
    assert load_checkpoint(run)["epoch"] == 3  # last.pt written at the stop, whatever save_every says
    assert metrics["val"]["loss"] == pytest.approx(metrics["best_val_loss"])  # best.pt's weights
    assert "early stopping after epoch 3" in (run / "train.log").read_text()
    assert "stopped_early" not in read_metrics(train_run(*TINY, "trainer.epochs=3"))


@pytest.mark.parametrize("monitor", ["val/loss", "val/psnr"])
def test_the_patience_counter_survives_a_resume(train_run, monitor):
    reference = train_run(*EARLY, "trainer.epochs=10", f"trainer.monitor={monitor}")
    first = train_run(*EARLY, "trainer.epochs=2", f"trainer.monitor={monitor}")  # one epoch without improvement
    resumed = train_run(f"trainer.resume={first}", "trainer.epochs=10")
    assert read_metrics(resumed)["stopped_early"]["epoch"] == 3
    assert read_metrics(resumed)["stopped_early"] == read_metrics(reference)["stopped_early"]
    assert read_metrics(resumed)["best_checkpoint"] == read_metrics(reference)["best_checkpoint"]
    assert read_metrics(resumed)["best_checkpoint"]["metric"] == monitor
    assert_same_weights(resumed / "checkpoints" / "last.pt", reference / "checkpoints" / "last.pt")


def test_the_final_metrics_of_a_stopped_run_are_best_pts_not_the_last_weights(train_run):
    first = train_run(*EARLY, "trainer.epochs=2")
    worse = train_run(f"trainer.resume={first}", "trainer.epochs=10", "trainer.lr=0.5")  # epoch 3 blows up
    metrics = read_metrics(worse)
    assert metrics["stopped_early"]["best_epoch"] == 2 and metrics["val_loss_history"][2] > metrics["best_val_loss"]
    assert metrics["val"]["loss"] == pytest.approx(metrics["best_val_loss"])


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_monitor_a_model_accepts_is_a_metric_of_its_validation(train_run, kind):
    from aectl.config.errors import ConfigError
    from aectl.config.monitoring import MONITORS, check_monitor

    noise = "gaussian" if kind == "dae" else "none"
    accepted = set()
    for name in MONITORS:
        with contextlib.suppress(ConfigError):
            check_monitor(name, kind, noise)
            accepted.add(name.split("/", 1)[1])
    run = train_run(f"model={kind}", "trainer.epochs=1", "dataset.limit=200", "trainer.batch_size=100")
    assert accepted <= set(read_metrics(run)["val"]), accepted - set(read_metrics(run)["val"])


def test_a_resumed_run_keeps_the_best_of_the_monitor_it_had(train_run):
    first = train_run(*EARLY, "model=ae", "trainer.epochs=2", "trainer.lr=0.01", "trainer.monitor=val/psnr")
    worse = train_run(f"trainer.resume={first}", "trainer.epochs=10", "trainer.lr=5")  # epoch 3 blows up
    metrics = read_metrics(worse)
    assert metrics["best_checkpoint"]["epoch"] <= 2 and metrics["stopped_early"]["epoch"] == 3
    assert metrics["stopped_early"]["best_epoch"] == metrics["best_checkpoint"]["epoch"]
    assert metrics["val"]["psnr"] == pytest.approx(metrics["best_checkpoint"]["value"])  # best.pt's weights


def test_a_stopped_run_resumes_only_with_more_patience(train_run):
    stopped = train_run(*EARLY, "trainer.epochs=10")
    again = train_run(f"trainer.resume={stopped}")
    assert not (again / "metrics.json").exists()  # nothing to train
    more = train_run(f"trainer.resume={stopped}", "trainer.early_stopping_patience=3")
    assert read_metrics(more)["stopped_early"]["epoch"] == 4


# Validation metrics of five epochs where the val loss keeps falling but the PSNR peaks at epoch 2.
LOSS_FALLS_PSNR_PEAKS = [{"loss": 5.0 - e, "psnr": p} for e, p in enumerate([10.0, 12.0, 11.0, 11.5, 11.9])]


def epoch_decisions(monitor: str, vals: list[dict], patience: int = 2, plateau: bool = False):
    """Training.end_epoch over `vals` (one validation per epoch, stubbed): the epochs best.pt was
    written at, and the Progress after the last epoch or the early stop."""
    from types import SimpleNamespace

    from aectl.config import LRScheduleConfig, TrainerConfig
    from aectl.training.trainer import Progress, Training

    run = object.__new__(Training)  # only what end_epoch reads
    run.settings = TrainerConfig(monitor=monitor, early_stopping_patience=patience, epochs=100, images_every=100)
    run.lr_schedule = LRScheduleConfig(kind="plateau", patience=1) if plateau else LRScheduleConfig()
    run.progress, run.loop = Progress(), SimpleNamespace(model=None)
    run.tracker = SimpleNamespace(scalars=lambda *a: None, flush=lambda: None)
    run.interval, run.bar = SimpleNamespace(show_val=lambda *a: None), None
    best_at = []
    run.checkpoint = lambda name: best_at.append(run.progress.epoch) if name == "best.pt" else None
    for epoch, val in enumerate(vals, 1):
        run.progress.epoch, run.evaluate = epoch, lambda split, val=val: val
        run.end_epoch()
        if run.progress.stopped_early:
            break
    return best_at, run.progress


def test_best_pt_and_early_stopping_follow_the_monitored_val_metric_in_its_direction():
    best_at, progress = epoch_decisions("val/psnr", LOSS_FALLS_PSNR_PEAKS)
    assert best_at == [1, 2]  # the highest PSNR, not the lowest loss
    assert progress.stopped_early["epoch"] == 4 and progress.stopped_early["best_epoch"] == 2
    assert "val/psnr did not improve" in progress.stopped_early["reason"]
    assert "best 12 at epoch 2" in progress.stopped_early["reason"]
    assert progress.best_val_loss == 2.0  # still the lowest val loss seen
    best_at, progress = epoch_decisions("val/loss", LOSS_FALLS_PSNR_PEAKS)
    assert best_at == [1, 2, 3, 4, 5] and progress.stopped_early is None


def test_a_train_monitor_is_watched_on_the_val_split_and_drives_the_plateau_schedule():
    best_at, progress = epoch_decisions("train/psnr", LOSS_FALLS_PSNR_PEAKS, patience=0, plateau=True)
    assert best_at == [1, 2] and progress.stopped_early is None
    assert progress.lr_plateau.reductions == 3  # epochs 3, 4, 5 stay below 12 (on the val loss: none)


# ---------------------------------------------------------------- one-line errors

@pytest.mark.parametrize("overrides, expected", [
    (["lr_schedule=warm"], ["lr_schedule", "warm"]),
    (["lr_schedule=cosine", "lr_schedule.warmup_steps=-1"], ["lr_schedule.warmup_steps=-1", "≥ 0"]),
    (["lr_schedule=cosine", "lr_schedule.min_lr=0.01"], ["lr_schedule.min_lr=0.01", "below trainer.lr=0.001"]),
    (["lr_schedule=cosine", "lr_schedule.warmup_steps=12"], ["lr_schedule.warmup_steps=12", "12 optimizer steps"]),
    (["lr_schedule=step", "lr_schedule.step_size=0"], ["lr_schedule.step_size=0", "> 0"]),
    (["lr_schedule=step", "lr_schedule.gamma=2"], ["lr_schedule.gamma=2", "(0, 1]"]),
    (["lr_schedule=plateau", "lr_schedule.factor=1"], ["lr_schedule.factor=1", "(0, 1)"]),
    (["lr_schedule=plateau", "lr_schedule.patience=0"], ["lr_schedule.patience=0", "> 0"]),
    (["lr_schedule=plateau", "lr_schedule.min_delta=-1"], ["lr_schedule.min_delta=-1",
                                                            "≥ 0, in the units of trainer.monitor's metric"]),
    (["lr_schedule=step", "lr_schedule.min_lr=0.0001"], ["lr_schedule.min_lr", "lr_schedule=step does not use"]),
    (["lr_schedule=constant", "lr_schedule.gamma=0.1"], ["lr_schedule.gamma", "lr_schedule=constant does not use"]),
    (["trainer.early_stopping_patience=-1"], ["trainer.early_stopping_patience=-1", "0 = off"]),
    (["trainer.early_stopping_min_delta=-0.1"], ["trainer.early_stopping_min_delta=-0.1",
                                             "≥ 0, in the units of trainer.monitor's metric"]),
])
def test_bad_schedule_and_early_stopping_values_end_in_one_line(capsys, overrides, expected):
    rc = main(["train", *overrides, "trainer.epochs=1", "trainer.progress=false", "trainer.device=cpu"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert all(fragment in lines[0] for fragment in expected), lines[0]


def test_switching_a_presets_schedule_drops_the_fields_only_its_own_schedule_reads():
    """mnist_vae's cosine has a warm-up; `lr_schedule=constant` on top of it trains at a
    constant lr instead of refusing the preset's warm-up."""
    from aectl.cli.compose import compose_train_config

    preset = compose_train_config(["experiment=mnist_vae"])
    assert (preset.lr_schedule.kind, preset.lr_schedule.warmup_steps) == ("cosine", 1000)
    switched = compose_train_config(["experiment=mnist_vae", "lr_schedule=constant"])
    assert (switched.lr_schedule.kind, switched.lr_schedule.warmup_steps) == ("constant", 0)
    assert switched.trainer.lr == preset.trainer.lr  # fields of other groups stay the preset's


def test_a_field_the_switched_to_schedule_does_not_read_is_still_refused_on_the_command_line(capsys):
    assert main(["train", "experiment=mnist_vae", "lr_schedule=constant", "lr_schedule.warmup_steps=10"]) == 2
    assert "lr_schedule=constant does not use warmup_steps" in capsys.readouterr().err


@pytest.mark.parametrize("monitor", ["val/psnr", "train/psnr"])
def test_a_psnr_monitor_on_data_without_a_known_range_is_refused_before_training(tmp_path, capsys, monitor):
    """A standardised table has no PSNR (no MAX): the monitor is refused in one line, not a
    KeyError after the first epoch."""
    rows = torch.randn(40, 5, generator=torch.Generator().manual_seed(0)).numpy()
    (tmp_path / "rows.csv").write_text("\n".join(",".join(f"{v:.4f}" for v in row) for row in rows) + "\n")
    rc = main(["train", "dataset=tensor_file", f"dataset.path={tmp_path / 'rows.csv'}", "dataset.scale=standard",
               "model.output_activation=identity", f"trainer.monitor={monitor}", "trainer.epochs=2",
               f"hydra.run.dir={tmp_path / 'run'}", "trainer.progress=false", "trainer.device=cpu"])
    err = capsys.readouterr().err
    assert rc == 2, err
    (line,) = err.strip().splitlines()
    assert f"trainer.monitor='{monitor}' is not allowed" in line and "dataset.scale=minmax" in line, line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_presets_value_refused_for_a_short_run_is_named_as_the_presets(tmp_path, capsys):
    """`experiment=mnist_vae trainer.epochs=1`: the preset's 1000 warm-up steps do not fit; the
    error says the value came from the preset and how to override it."""
    from tests.test_readers import write_mnist_layout

    write_mnist_layout(tmp_path, "MNIST", n_train=40, n_test=6)
    base = ["train", "experiment=mnist_vae", "trainer.epochs=1", f"dataset.root={tmp_path}", "dataset.download=false",
            f"hydra.run.dir={tmp_path / 'run'}", "trainer.progress=false", "trainer.device=cpu"]
    assert main(base) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "lr_schedule.warmup_steps=1000 is not allowed: fewer than the run's 1 optimizer steps" in line, line
    assert "comes from the preset experiment=mnist_vae" in line and "override it with lr_schedule.warmup_steps=" in line
    assert main([*base, "lr_schedule.warmup_steps=5"]) == 2  # set on the command line: no word of a preset
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "lr_schedule.warmup_steps=5 is not allowed" in line and "preset" not in line, line


def test_a_run_that_ends_past_its_best_epoch_gives_both_weights_numbers(train_run):
    first = train_run(*TINY, "trainer.epochs=2")
    worse = train_run(f"trainer.resume={first}", "trainer.epochs=3", "trainer.lr=0.5")  # epoch 3 blows up
    metrics = read_metrics(worse)
    assert "stopped_early" not in metrics and metrics["weights"] == "last"
    assert metrics["best_checkpoint"]["epoch"] == 2 and metrics["best"]["epoch"] == 2
    assert metrics["val"]["loss"] == pytest.approx(metrics["val_loss_history"][2])  # the last weights'
    assert metrics["best"]["val"]["loss"] == pytest.approx(metrics["best_val_loss"])  # best.pt's
    assert set(metrics["best"]) == {"epoch", "train", "val", "test"}
    log = (worse / "train.log").read_text()
    assert "done: last weights (epoch 3): val loss " in log
    assert f"best.pt (epoch 2, by val/loss): val loss {metrics['best']['val']['loss']:.2f}, test loss " in log


def test_a_run_whose_last_epoch_is_best_has_no_best_section(train_run):
    metrics = read_metrics(train_run(*TINY, "trainer.epochs=2"))
    assert metrics["weights"] == "last" and metrics["best_checkpoint"]["epoch"] == 2 and "best" not in metrics


def test_a_stopped_runs_numbers_are_labelled_best_pts(train_run):
    metrics = read_metrics(train_run(*EARLY, "trainer.epochs=10"))
    assert metrics["weights"] == "best" and "best" not in metrics
