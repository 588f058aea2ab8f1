"""`aectl report` of sparse-autoencoder sweeps: the L0–FVU frontier (sparsity_fidelity.png), one
labelled point per job, and L0 and FVU in the jobs' table."""

import json
from pathlib import Path

import pytest

from aectl.cli import main
from aectl.report import plots
from aectl.report.ranking import build_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_sae_job(folder: Path, k: int, l0: float, fvu: float, kind: str = "sae") -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(f"- model={kind}\n- model.k={k}\n")
    (folder / ".hydra" / "config.yaml").write_text(f"model:\n  kind: {kind}\n  k: {k}\n")
    metrics = {"val": {"loss": fvu, "l0": l0, "fvu": fvu, "explained_variance": 1 - fvu}, "test": {"loss": fvu}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def frontier(report):
    """The drawn points, their labels and the axes' texts of the report's frontier figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plots.sparsity_fidelity_figure(report)
    assert fig is not None
    ax = fig.axes[0]
    points = [tuple(p) for p in ax.collections[0].get_offsets().tolist()]
    drawn = points, [t.get_text() for t in ax.texts], (ax.get_xlabel(), ax.get_ylabel(), ax.get_title())
    plt.close(fig)
    return drawn


def test_each_sae_job_is_one_labelled_point_at_its_val_l0_and_fvu(tmp_path):
    for k, l0, fvu in ((16, 15.5, 0.30), (32, 31.0, 0.21), (64, 60.2, 0.12)):
        fake_sae_job(tmp_path / "sweep" / str(k), k, l0, fvu)
    fake_sae_job(tmp_path / "sweep" / "ae", 0, 3.0, 0.9, kind="ae")  # not an SAE: no point
    points, labels, (xlabel, ylabel, title) = frontier(build_report([tmp_path / "sweep"]))
    assert sorted(zip(points, labels)) == [((15.5, 0.30), "k=16"), ((31.0, 0.21), "k=32"), ((60.2, 0.12), "k=64")]
    assert "L0" in xlabel and "FVU" in ylabel and "val" in xlabel and "val" in ylabel
    assert "sparsity" in title and "fidelity" in title


def test_no_sae_job_no_frontier(tmp_path):
    fake_sae_job(tmp_path / "sweep" / "ae", 0, 3.0, 0.9, kind="ae")
    assert plots.sparsity_fidelity_figure(build_report([tmp_path / "sweep"])) is None


@pytest.fixture(scope="module")
def sae_sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sae_sweep") / "multirun"
    rc = main(["train", "-m", "model=sae", "dataset=digits", "model.k=2,8", "model.expansion_factor=2",
               "trainer.epochs=1", "trainer.progress=false", "trainer.device=cpu", f"hydra.sweep.dir={folder}"])
    assert rc == 0
    return folder


def test_report_of_a_k_sweep_draws_the_frontier_and_tabulates_l0_and_fvu(sae_sweep, capsys):
    assert main(["report", str(sae_sweep)]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("job"))
    assert header.split()[3:6] == ["val/loss", "val/l0", "val/fvu"]  # after job, status, model.k
    assert (sae_sweep / "sparsity_fidelity.png").read_bytes()[:8] == PNG_MAGIC
    header = next(line for line in (sae_sweep / "report.md").read_text().splitlines() if "val/l0" in line)
    assert "val/fvu" in header
    report = build_report([sae_sweep])
    jobs = sorted(report.jobs, key=lambda j: j.metrics["val/l0"])
    assert [j.metrics["val/l0"] for j in jobs] == [2.0, 8.0]  # TopK: exactly k active per example
    points, labels, _ = frontier(report)
    assert sorted(zip(points, labels)) == [((j.metrics["val/l0"], j.metrics["val/fvu"]), f"k={k}")
                                           for j, k in zip(jobs, (2, 8))]
    assert "sparsity_fidelity.png" in (sae_sweep / "report.md").read_text()
