"""aectl configures only its own loggers at INFO: a third-party library's INFO line (matplotlib
announcing its font cache on a fresh machine) stays out of the terminal and train.log, while
aectl's own INFO lines and anyone's warnings still show."""

import logging

from aectl import build, evaluation
from aectl.cli import main

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
