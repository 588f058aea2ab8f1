"""aectl configures only its own loggers at INFO: a third-party library's INFO line (matplotlib
announcing its font cache on a fresh machine) stays out of the terminal and train.log, while
aectl's own INFO lines and anyone's warnings still show. A run's log stays short at any length
and ends with what to look at next."""

import json
import logging
import os
import re
import sys
from pathlib import Path

from aectl.cli import main
from aectl.evaluation import evaluate as evaluation
from aectl.training import build, trainer, training_log

TINY = ["model.hidden_dims=[16]", "trainer.epochs=1", "trainer.batch_size=256", "trainer.progress=false",
        "trainer.device=cpu"]
CHATTER = "generated new fontManager"  # what matplotlib logs at INFO on its first use


def _chatty(function):
    """`function`, emitting a third-party INFO line and WARNING line first (as matplotlib or PIL would)."""
    def wrapper(*args, **kwargs):
        logging.getLogger("matplotlib.font_manager").info(CHATTER)
        logging.getLogger("PIL.Image").warning("a third-party warning")
        return function(*args, **kwargs)

    return wrapper


def test_third_party_info_lines_stay_out_of_train_and_eval_output(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setattr(build, "train", _chatty(build.train))
    assert main(["train", *TINY, f"hydra.run.dir={run}"]) == 0
    out = capsys.readouterr()
    assert "[aectl][INFO] - run folder:" in out.out  # aectl's own INFO lines are shown...
    assert "a third-party warning" in out.out  # ...and so are warnings of any library
    assert CHATTER not in out.out + out.err
    log = (run / "train.log").read_text()
    assert "run folder:" in log and CHATTER not in log

    monkeypatch.setattr(evaluation, "run", _chatty(evaluation.run))
    assert main(["eval", f"ckpt={run}", "k=2", "progress=false", "device=cpu", "projector=false"]) == 0
    out = capsys.readouterr()
    assert "a third-party warning" in out.out
    assert CHATTER not in out.out + out.err


def test_validation_lines_keep_to_a_budget_at_any_length():
    for epochs in (1, 7, 20, 21, 99, 100, 1000, 12345):
        due = [e for e in range(1, epochs + 1) if training_log.val_log_due(e, epochs)]
        assert len(due) <= training_log.VAL_LINES + 1 and due[-1] == epochs, (epochs, due)
    assert training_log.val_log_every(20) == 1 and training_log.val_log_every(100) == 5


def on_path(monkeypatch, found: bool) -> None:
    """The shell finds the commands of this environment (an activated venv), or does not (make train)."""
    here = str(Path(sys.executable).absolute().parent)
    others = [p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p).absolute() != Path(here)]
    monkeypatch.setenv("PATH", os.pathsep.join([here, *others] if found else others))


def test_a_100_epoch_run_with_a_new_best_every_epoch_has_a_short_log(tmp_path, capsys, monkeypatch):
    """Every validation a new best (the worst case for a log that names bests): still about
    VAL_LINES lines, ending with the last epoch and what to look at next; TensorBoard's
    history and metrics.json keep every epoch."""
    on_path(monkeypatch, True)
    real, calls = trainer.evaluate, [0]

    def improving(*args, **kwargs):
        metrics = real(*args, **kwargs)
        calls[0] += 1
        return {**metrics, "loss": 1000.0 - calls[0]}

    monkeypatch.setattr(trainer, "evaluate", improving)
    run = tmp_path / "run"
    assert main(["train", "dataset.limit=64", "model.hidden_dims=[8]", "trainer.epochs=100", "trainer.batch_size=64",
                 "trainer.progress=false", "trainer.device=cpu", "trainer.images_every=1000",
                 f"hydra.run.dir={run}"]) == 0
    out = capsys.readouterr().out.splitlines()
    log = (run / "train.log").read_text().splitlines()
    val_lines = [line for line in log if re.search(r" - epoch \d+/100 step \d+: val loss ", line)]
    assert len(log) <= 25 and len(out) <= 25, "\n".join(out)
    assert len(val_lines) == 20 and all(line.endswith("(new best)") for line in val_lines)
    assert "epoch 100/100 step 100: val loss " in val_lines[-1]
    assert len(json.loads((run / "metrics.json").read_text())["val_loss_history"]) == 100
    assert out[-1] == "next: tensorboard --logdir run (curves), aectl eval ckpt=run (pictures, IW NLL)"


def test_a_validation_line_after_the_best_epoch_names_it(tmp_path, capsys, monkeypatch):
    real, losses = trainer.evaluate, iter([9.0, 8.0, 7.0, 8.0, 9.0])

    def worsening_after_epoch_3(*args, **kwargs):
        return {**real(*args, **kwargs), "loss": next(losses, 0.0)}  # 0.0: the final metrics

    monkeypatch.setattr(trainer, "evaluate", worsening_after_epoch_3)
    assert main(["train", "dataset.limit=64", *TINY, "trainer.epochs=5", f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    lines = [line.split(" - ", 1)[1] for line in capsys.readouterr().out.splitlines()
             if "][aectl.training.trainer][" in line]
    assert lines[2] == "epoch 3/5 step 3: val loss 7 (new best)"
    assert lines[4] == "epoch 5/5 step 5: val loss 9 (best 7 at epoch 3)"


def test_a_validation_line_names_the_best_epoch_of_the_monitored_metric():
    val = {"loss": 12.5, "psnr": 20.25}
    assert training_log.val_line(45, 100, 540, val, "val/loss", 11.75, 43) == \
        "epoch 45/100 step 540: val loss 12.5 (best 11.75 at epoch 43)"
    assert training_log.val_line(45, 100, 540, val, "val/psnr", 20.25, 45) == \
        "epoch 45/100 step 540: val loss 12.5, val/psnr 20.25 (new best val/psnr)"


def test_outside_its_environment_the_next_step_names_the_commands_path(tmp_path, capsys, monkeypatch):
    on_path(monkeypatch, False)
    assert main(["train", "dataset.limit=64", *TINY, f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    bin_dir = Path(sys.executable).absolute().parent
    assert capsys.readouterr().out.splitlines()[-1] == \
        f"next: {bin_dir / 'tensorboard'} --logdir run (curves), {bin_dir / 'aectl'} eval ckpt=run (pictures, IW NLL)"


def test_a_sweep_ends_with_what_to_look_at_next(tmp_path, capsys, monkeypatch):
    on_path(monkeypatch, True)
    sweep = tmp_path / "multirun"
    assert main(["train", "-m", "model.latent_dim=2", *TINY, f"hydra.sweep.dir={sweep}"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "next: aectl report multirun (table and plots), tensorboard --logdir multirun (curves, HPARAMS)"
