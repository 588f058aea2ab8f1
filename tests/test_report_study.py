"""The Optuna study in `aectl report`: read from a journal file or SQLite through optuna_study.json
(or the default file names), PRUNED trials and their epoch, intermediate curves, the Pareto front."""

import json

import pytest

optuna = pytest.importorskip("optuna", minversion="4")

from aectl.report.study import format_study, read_studies, write_study_report  # noqa: E402
from aectl.report.study_plots import plot_intermediate  # noqa: E402


def journal(path):
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def single_study(storage):
    """Trials 0, 2 complete; trial 1 pruned after its 2nd epoch; trial 3 failed."""
    study = optuna.create_study(study_name="s1", storage=storage, direction="minimize")
    for number, curve, state in [(0, [3.0, 2.0, 1.5], "complete"), (1, [4.0, 3.8], "pruned"),
                                 (2, [2.5, 1.2, 0.9], "complete"), (3, [], "fail")]:
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
        for epoch, value in enumerate(curve, 1):
            trial.report(value, epoch)
        study.tell(trial, curve[-1] if state == "complete" else None,
                   state={"complete": None, "pruned": optuna.trial.TrialState.PRUNED,
                          "fail": optuna.trial.TrialState.FAIL}[state])
    return study


def test_journal_study_via_study_json_reports_pruned_epoch_and_best(tmp_path):
    single_study(journal(tmp_path / "optuna_journal.log"))
    (tmp_path / "optuna_study.json").write_text(json.dumps(
        {"storage": "optuna_journal.log", "study_name": "s1", "metrics": ["val/neg_elbo"], "directions": ["minimize"]}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("")
    images = write_study_report(tmp_path, out)
    md = (out / "report.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in md.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    assert rows["1"][3:5] == ["PRUNED", "2"]  # state, pruned at epoch
    assert rows["0"][3:5] == ["COMPLETE", ""]
    assert rows["3"][3] == "FAIL"
    assert "val/neg_elbo (minimize)" in md
    assert "Best trial: 2 (val/neg_elbo (minimize) 0.9)" in md
    assert {p.name for p in images} >= {"intermediate_values.png", "optimization_history.png"}


def test_sqlite_study_found_by_its_default_name(tmp_path):
    single_study(f"sqlite:///{tmp_path / 'optuna.db'}")
    (study,) = read_studies(tmp_path / "optuna.db")
    assert [t.state for t in study.trials] == ["COMPLETE", "PRUNED", "COMPLETE", "FAIL"]
    assert study.trials[1].intermediate == {1: 4.0, 2: 3.8} and study.trials[1].pruned_epoch == 2
    assert study.best.number == 2


def test_intermediate_values_plot_draws_every_epoch_of_every_trial(tmp_path, monkeypatch):
    (study,) = read_studies(single_study(journal(tmp_path / "j.log")) and tmp_path / "j.log")
    import matplotlib.pyplot as plt

    drawn = {}
    real = plt.Axes.plot

    def spy(ax, *args, **kw):
        if "label" in kw:
            drawn[kw["label"]] = (list(args[0]), list(args[1]))
        return real(ax, *args, **kw)
    monkeypatch.setattr(plt.Axes, "plot", spy)
    assert plot_intermediate(study, tmp_path).name == "intermediate_values.png"
    assert drawn == {"trial 0": ([1, 2, 3], [3.0, 2.0, 1.5]),
                     "trial 1 (pruned at epoch 2)": ([1, 2], [4.0, 3.8]),
                     "trial 2": ([1, 2, 3], [2.5, 1.2, 0.9])}


def two_metric_study(storage):
    """minimize kl, maximize psnr: trials 0, 1, 3 on the front; 2 dominated by 1; 4 by 3."""
    study = optuna.create_study(study_name="rd", storage=storage, directions=["minimize", "maximize"])
    for kl, psnr in [(1.0, 10.0), (2.0, 15.0), (2.5, 14.0), (4.0, 20.0), (4.0, 19.0)]:
        trial = study.ask()
        study.tell(trial, [kl, psnr])
    return study


def test_two_metric_study_draws_the_pareto_front_and_lists_it(tmp_path):
    two_metric_study(journal(tmp_path / "optuna_journal.log"))
    (tmp_path / "optuna_study.json").write_text(json.dumps(
        {"storage": "optuna_journal.log", "study_name": "rd", "metrics": ["val/kl", "val/psnr"],
         "directions": ["minimize", "maximize"]}))
    (tmp_path / "report.md").write_text("")
    images = write_study_report(tmp_path, tmp_path)
    assert "pareto_front.png" in {p.name for p in images}
    md = (tmp_path / "report.md").read_text()
    assert "Pareto front (3 trials): 0, 1, 3" in md
    assert "val/kl (minimize)" in md and "val/psnr (maximize)" in md


def test_direction_per_metric_decides_the_front(tmp_path):
    """The front follows each objective's direction: the same values minimised both ways or
    maximised both ways give other fronts."""
    (study,) = read_studies(two_metric_study(journal(tmp_path / "j.log")) and tmp_path / "j.log")
    assert [t.number for t in study.pareto_front()] == [0, 1, 3]
    study.directions = ["MINIMIZE", "MINIMIZE"]
    assert [t.number for t in study.pareto_front()] == [0]
    study.directions = ["MAXIMIZE", "MAXIMIZE"]
    assert [t.number for t in study.pareto_front()] == [3]
    assert "objective 0 (maximize), objective 1 (maximize)" in format_study(study)


def test_without_optuna_the_report_says_how_to_get_the_study(tmp_path, monkeypatch, capsys):
    import builtins

    (tmp_path / "optuna_journal.log").write_text("")
    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__",
                        lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name)) if name == "optuna"
                        else real(name, *a, **k))
    assert write_study_report(tmp_path, tmp_path) == []
    assert "pip install 'aectl[optuna]'" in capsys.readouterr().out


def test_an_unreadable_study_is_one_line_and_the_runs_report_stands(tmp_path, capsys):
    (tmp_path / "optuna.db").write_bytes(b"not a database" * 100)
    assert write_study_report(tmp_path, tmp_path) == []
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"aectl report: {tmp_path}: cannot read the Optuna study in sqlite:")
