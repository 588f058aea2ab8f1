"""Progress bars: tqdm on a terminal; plain, whole lines in a log file, from every bar aectl
draws (training, eval, decoding an image folder)."""

import io
import re

from tqdm import tqdm

from aectl.cli import main
from aectl.datasets import image_folder
from aectl.runtime import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_tqdm_and_a_file_gets_plain_lines():
    assert isinstance(progress.progress_bar(total=10, file=Terminal()), tqdm)
    log = io.StringIO()
    bar = progress.progress_bar(total=1000, file=log, desc="epoch 1/2", unit="step")
    assert isinstance(bar, progress.LineProgress)
    for step in range(1000):
        bar.update()
        if step == 500:
            bar.set_postfix(loss="0.25", samples_s="900")
            bar.set_description("epoch 2/2")
    bar.close()
    bar.close()  # a second close writes nothing
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and text.endswith("\n")
    assert len(lines) == 10, lines  # one line per tenth
    assert lines[0].startswith("epoch 1/2: 100/1000 step (10%), ")
    assert lines[-1].startswith("epoch 2/2: 1000/1000 step (100%), ") and lines[-1].endswith("loss=0.25, samples_s=900")


def test_plain_lines_come_at_least_every_interval_without_a_total(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    log = io.StringIO()
    bar = progress.progress_bar(iter(range(100)), file=log, unit="batch")
    for i, _ in enumerate(bar):
        clock[0] += 1.0  # one batch a second: a line every LINE_EVERY_S seconds, then one at the end
    lines = log.getvalue().splitlines()
    assert len(lines) == 100 // int(progress.LINE_EVERY_S) + 1, lines
    assert lines[0].startswith("30 batch, 1 batch/s, 0:30 elapsed") and lines[-1].startswith("100 batch, ")


def test_a_long_run_writes_few_plain_lines(monkeypatch):
    """Ten hours at a step a second: a line per tenth, and signs of life at 30 s, then at a
    quarter of the time elapsed: under 30 lines, not the 1200 of a line every 30 s."""
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    log = io.StringIO()
    bar = progress.progress_bar(total=36000, file=log, unit="step")
    for _ in range(36000):
        clock[0] += 1.0
        bar.update()
    bar.close()
    seconds = [int(line.split(", ")[0].split("/")[0]) for line in log.getvalue().splitlines()]
    assert seconds[:4] == [30, 60, 90, 120] and seconds[-1] == 36000
    assert len(seconds) <= 30, seconds
    gaps = [b - a for a, b in zip(seconds, seconds[1:])]
    assert all(gap <= max(30, 0.25 * t) + 1 for gap, t in zip(gaps, seconds[1:])), gaps  # never silent for long


def test_a_disabled_bar_writes_nothing_and_iterates_everything():
    log = io.StringIO()
    assert list(progress.progress_bar(range(5), file=log, disable=True)) == [0, 1, 2, 3, 4]
    assert log.getvalue() == ""


def test_training_and_eval_into_a_log_write_plain_progress_lines(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "model.hidden_dims=[16]", "trainer.epochs=2", "trainer.batch_size=256",
                 "trainer.device=cpu", f"hydra.run.dir={run}"]) == 0  # trainer.progress stays on
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "epoch 2/2: 12/12 step (100%)" in err
    assert re.search(r"^epoch 2/2: .*, val_loss=[-\d.]+", err, re.M), err  # the last validation's loss
    assert main(["eval", f"ckpt={run}", "k=2", "batch_size=64", "device=cpu", "projector=false"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and re.search(r"^eval vae \(IW k=2\): (\d+)/\1 batch \(100%\), ", err, re.M), err


def test_decoding_a_large_image_folder_reports_in_plain_lines(capsys):
    bar = image_folder._progress(list(range(image_folder._PROGRESS_MIN_FILES)), "decoding images")
    assert isinstance(bar, progress.LineProgress)
    assert len(list(bar)) == image_folder._PROGRESS_MIN_FILES
    err = capsys.readouterr().err
    assert "\r" not in err and err.splitlines()[-1].startswith("decoding images: 300/300 img (100%)")
