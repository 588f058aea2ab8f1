"""`aectl eval` end to end: each variant trained briefly on digits, then evaluated from its run
folder; a sweep folder; and checkpoints that must be refused in one line."""

import contextlib
import io
import json
import math
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from aectl.cli import main
from aectl.config.errors import CheckpointError, ConfigError
from aectl.evaluation import evaluate as evaluate
from aectl.objectives import metrics
from aectl.runs import runfolder
from aectl.runs.tables import format_metric
from tests.conftest import eval_file

VARIANTS = ("ae", "stacked_ae", "sparse_ae", "dae", "vae")
EVAL_ARGS = ("k=20", "max_embed=100", "progress=false", "device=cpu")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NOISES = ("gaussian", "salt_pepper", "masking")
COMMON = {"loss", "recon", "mse", "psnr", "probe_acc",
          *(f"psnr_{which}_{kind}" for which in ("noisy", "denoised") for kind in NOISES)}
ONLY = {  # metrics that must appear for these variants and for no other
    "dae": {"psnr_noisy", "psnr_denoised"},
    "sparse_ae": {"rho_hat_mean", "rho_hat_q05", "rho_hat_q25", "rho_hat_q50", "rho_hat_q75", "rho_hat_q95",
                  "kl_sparsity", "frac_within_2x", "penalty"},
    "vae": {"neg_elbo", "kl", "kl_weighted", "beta", "nll_iw", "active_units"},
}
PICTURES = {"dae": {"denoising.png"}, "vae": {"samples.png", "traversal.png"}}


@contextlib.contextmanager
def _in_folder(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Each variant trained 2 epochs on digits (24 steps), then `aectl eval ckpt=<run>` run once
    from an unrelated empty folder: variant → (rc, stdout, run folder, cwd contents after)."""
    root = tmp_path_factory.mktemp("eval_runs")
    cwd = tmp_path_factory.mktemp("elsewhere")
    results = {}
    with _in_folder(cwd):
        for variant in VARIANTS:
            run_dir = root / variant
            rc = main(["train", f"model={variant}", "trainer.epochs=2", "trainer.progress=false",
                       "trainer.device=cpu", f"hydra.run.dir={run_dir}"])
            assert rc == 0
            before = set(os.listdir(run_dir))
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                rc = main(["eval", f"ckpt={run_dir}", *EVAL_ARGS])
            results[variant] = (rc, out.getvalue(), run_dir, before, sorted(os.listdir(cwd)))
    return results


@pytest.mark.parametrize("variant", VARIANTS)
def test_eval_writes_the_metrics_that_apply(evaluated, variant):
    rc, _, run_dir, _, _ = evaluated[variant]
    assert rc == 0
    result = json.loads(eval_file(run_dir).read_text())
    values = result["metrics"]
    expected = COMMON | ONLY.get(variant, set())
    others = set().union(*ONLY.values()) - expected
    assert expected <= set(values) and not others & set(values), sorted(values)
    assert result["model"] == variant and result["split"] == "test" and result["n"] == 180  # 10 % of 1797
    assert result["checkpoint"] == str(run_dir / "checkpoints" / "last.pt")
    assert all(math.isfinite(v) for v in values.values())
    # PSNR is a mean of per-image PSNRs: by Jensen it is at least the PSNR of the mean MSE.
    assert values["psnr"] >= 10 * math.log10(1 / values["mse"]) - 1e-9
    # Chance is ≈ 0.1 (10 balanced classes); after 24 steps the five variants measured 0.62 (VAE,
    # posterior still near the prior) to 0.98 (sparse AE, 128 units), so 0.3 leaves slack.
    assert 0.3 < values["probe_acc"] <= 1.0
    if variant == "vae":
        assert values["nll_iw"] <= values["neg_elbo"] + 0.5  # k=20 bound: not looser than the ELBO
        # The table's terms add up: −ELBO = recon + KL (one z per example, as in training at β = 1).
        assert values["neg_elbo"] == pytest.approx(values["recon"] + values["kl"], rel=1e-5)
        assert values["loss"] == pytest.approx(values["recon"] + values["beta"] * values["kl"], rel=1e-5)
        assert values["kl"] >= 0 and 0 <= values["active_units"] <= result["latent_dim"] == 8
        assert result["k"] == 20
    if variant == "sparse_ae":
        quantiles = [values[f"rho_hat_q{q}"] for q in ("05", "25", "50", "75", "95")]
        assert quantiles == sorted(quantiles) and 0 < values["rho_hat_mean"] < 1
        # The test split (180) is one batch of 256: the batch's ρ̂ is the split's. β = 3 in the preset.
        assert values["penalty"] == pytest.approx(3.0 * values["kl_sparsity"], rel=1e-4)


def test_the_same_seed_gives_the_same_noisy_inputs_to_every_variant(evaluated):
    noisy = {v: json.loads(eval_file(evaluated[v][2]).read_text())["metrics"]["psnr_noisy_gaussian"]
             for v in VARIANTS}
    assert len(set(noisy.values())) == 1
    # σ = 0.3 noise clipped to [0, 1]: clipping removes much of the noise on the many pixels at 0,
    # so the noisy PSNR sits above the unclipped 10·log10(1/0.09) = 10.46 dB (measured 13.04 dB).
    assert 11.0 < noisy["ae"] < 15.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_eval_writes_pictures_projector_and_tensorboard(evaluated, variant):
    _, _, run_dir, before, _ = evaluated[variant]
    result = json.loads(eval_file(run_dir).read_text())
    pngs = {"reconstruction.png", "latent_scatter.png"} | PICTURES.get(variant, set())
    assert set(result["pictures"]) == pngs
    for name in pngs:
        assert eval_file(run_dir, name).read_bytes()[:8] == PNG_SIGNATURE
    step = result["step"]
    assert step == 24
    embedding = run_dir / f"{step:05d}" / "eval_latent"
    assert "eval_latent" in (run_dir / "projector_config.pbtxt").read_text()
    rows = (embedding / "tensors.tsv").read_text().splitlines()
    assert len(rows) == 100 and len(rows[0].split("\t")) == result["latent_dim"]
    labels = (embedding / "metadata.tsv").read_text().splitlines()
    assert len(labels) == 100 and set(labels) <= {str(d) for d in range(10)}
    assert (embedding / "sprite.png").read_bytes()[:8] == PNG_SIGNATURE
    # Eval adds to the run folder only its eval/ folder, an event file and the projector files.
    added = set(os.listdir(run_dir)) - before
    assert {a for a in added if not a.startswith("events.out.tfevents.")} == \
        {"eval", f"{step:05d}", "projector_config.pbtxt"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0}).Reload()
    scalars, images = set(events.Tags()["scalars"]), set(events.Tags()["images"])
    tag = f"eval/{result['name']}"  # one tag folder per checkpoint, split and k
    assert result["name"] == ("last_test_k20" if variant == "vae" else "last_test")
    assert not {s for s in scalars if s.startswith("eval/")}  # no chart of a single point per metric...
    (table,) = events.Tensors(f"{tag}/text_summary")  # ...but one table of them in the TEXT tab
    rows = table.tensor_proto.string_val[0].decode().splitlines()
    assert rows[:2] == ["| metric | value |", "|---|---|"] and len(rows) == 2 + len(result["metrics"])
    assert f"| psnr | {format_metric('psnr', result['metrics']['psnr'])} |" in rows
    assert {f"{tag}/{p.removesuffix('.png')}" for p in pngs} <= images


@pytest.mark.parametrize("variant", VARIANTS)
def test_eval_prints_a_table_and_leaves_the_working_folder_alone(evaluated, variant):
    _, out, run_dir, _, cwd_after = evaluated[variant]
    assert cwd_after == []  # no outputs/, .hydra/ or log file where the command was run
    values = json.loads(eval_file(run_dir).read_text())["metrics"]
    assert out.startswith(f"{run_dir}: {variant}, step 24, digits test split (180 examples)")
    assert "PSNR, MAX=1 (dB)  " in out and format_metric('psnr', values['psnr']) in out
    assert "linear probe accuracy" in out and format_metric('probe_acc', values['probe_acc']) in out
    noisy, denoised = values["psnr_noisy_masking"], values["psnr_denoised_masking"]
    assert f"{format_metric('psnr_noisy', noisy)} noisy → {format_metric('psnr_denoised', denoised)} denoised" in out
    if variant == "vae":
        # The default VAE's gaussian decoder is a normalised likelihood: its numbers are nats.
        assert "−log p(x), IW bound k=20 (nats)" in out and format_metric('nll_iw', values['nll_iw']) in out
        assert "−ELBO = reconstruction + KL (nats)" in out and "†" not in out
        assert "active units (of K=8)" in out
    if variant == "sparse_ae":
        assert "sparsity: mean ρ̂ (ρ=0.05)" in out and format_metric('frac_within_2x', values['frac_within_2x']) in out
    if variant == "dae":
        assert "PSNR under trained: gaussian σ=0.3 (dB)" in out


def test_the_probe_shows_its_progress_and_says_so_before_its_long_fit(evaluated, capsys, monkeypatch):
    """A sparse AE's probe (a logistic regression on 1000-unit codes of MNIST) takes minutes: the
    train codes get a progress bar, and a line saying what runs is out before the fit starts."""
    run_dir, seen, fit = evaluated["sparse_ae"][2], {}, metrics.linear_probe

    def recording(*args, **kwargs):
        seen["before"] = capsys.readouterr()
        return fit(*args, **kwargs)

    monkeypatch.setattr(metrics, "linear_probe", recording)
    capsys.readouterr()
    assert main(["eval", f"ckpt={run_dir}", "split=val", "progress=true", "device=cpu", "projector=false"]) == 0
    out, err = seen["before"]
    assert "probe: fitting a logistic regression on 1437 train codes" in (err.splitlines() or [""])[-1], err
    assert any(line.startswith("probe: encoding the train split: 6/6 batch (100%)") for line in err.splitlines()), err
    assert "probe:" not in out  # the table's stdout stays the table's
    assert "probe: fitted in" in capsys.readouterr().err


def test_a_sweep_folder_evaluates_every_job_reproducibly(evaluated, tmp_path, capsys):
    sweep = tmp_path / "multirun" / "2026-01-01" / "00-00-00"
    for variant in ("ae", "vae"):
        job = sweep / f"model={variant}" / "checkpoints"
        job.mkdir(parents=True)
        shutil.copy(evaluated[variant][2] / "checkpoints" / "last.pt", job)
    assert main(["eval", f"ckpt={sweep}", *EVAL_ARGS, "projector=false"]) == 0
    out = capsys.readouterr().out
    for variant in ("ae", "vae"):
        fresh = json.loads(eval_file(sweep / f"model={variant}").read_text())["metrics"]
        first = json.loads(eval_file(evaluated[variant][2]).read_text())["metrics"]
        assert fresh == first  # same checkpoint, same seed: the same numbers
    table = out[out.index(f"{sweep}: 2 runs"):].splitlines()
    assert table[1].split()[:3] == ["job", "model", "PSNR"]
    rows = {line.split()[0]: line.split() for line in table[2:]}
    assert rows["model=ae"][1] == "ae" and rows["model=vae"][1] == "vae"
    assert rows["model=ae"][5] == "—"  # the ELBO column: a VAE metric only
    assert not (sweep / "model=ae" / "00024").exists()  # projector=false


def test_a_sweep_with_a_broken_job_evaluates_the_rest_and_fails(evaluated, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    (sweep / "good" / "checkpoints").mkdir(parents=True)
    shutil.copy(evaluated["ae"][2] / "checkpoints" / "last.pt", sweep / "good" / "checkpoints")
    (sweep / "bad" / "checkpoints").mkdir(parents=True)
    (sweep / "bad" / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    assert main(["eval", f"ckpt={sweep}", *EVAL_ARGS, "projector=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 of 2 jobs could not be evaluated" in err[0] and "bad" in err[0]
    assert eval_file(sweep / "good").is_file()


# ---------------------------------------------------------------- checkpoints refused in one line


def _eval_error(capsys, target: Path) -> str:
    rc = main(["eval", f"ckpt={target}", *EVAL_ARGS])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(target) in lines[0]
    return lines[0]


def test_other_format_version_is_refused(evaluated, tmp_path, capsys):
    ckpt = torch.load(evaluated["ae"][2] / "checkpoints" / "last.pt", weights_only=True)
    ckpt["format_version"] = 99
    torch.save(ckpt, tmp_path / "future.pt")
    assert "format version 99" in _eval_error(capsys, tmp_path / "future.pt")


def test_truncated_file_is_refused(evaluated, tmp_path, capsys):
    data = (evaluated["ae"][2] / "checkpoints" / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    assert "not a readable checkpoint" in _eval_error(capsys, tmp_path / "cut.pt")


@pytest.mark.parametrize("content", [b"hello, I am text\n", None])
def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path, capsys, content):
    path = tmp_path / "other.pt"
    if content is None:
        torch.save([1, 2, 3], path)  # a valid torch file, but not an aectl checkpoint
    else:
        path.write_bytes(content)
    assert "checkpoint" in _eval_error(capsys, path)


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "state_dict": {}, "payload": _RunsCodeWhenUnpickled(marker)}, path)
    assert "refused" in _eval_error(capsys, path)
    assert not marker.exists()
    # Control: the file really is harmful: plain unpickling of the archive's data runs the payload.
    with zipfile.ZipFile(path) as archive:
        pickle.loads(archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl"))))
    assert marker.exists()


# ---------------------------------------------------------------- targets and settings


def test_targets_resolve_to_checkpoints_and_run_folders(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("last.pt", "best.pt"):
        (run / "checkpoints" / name).write_bytes(b"")
    assert runfolder.find_checkpoints(str(run)) == [run / "checkpoints" / "last.pt"]
    assert runfolder.find_checkpoints(str(run / "checkpoints" / "best.pt")) == [run / "checkpoints" / "best.pt"]
    assert runfolder.run_dir_of(run / "checkpoints" / "best.pt") == run
    assert runfolder.run_dir_of(tmp_path / "loose.pt") == tmp_path
    with pytest.raises(CheckpointError, match="no checkpoints/last.pt"):
        runfolder.find_checkpoints(str(tmp_path / "run" / "checkpoints"))


@pytest.mark.parametrize("args, fragment", [
    ([], "ckpt=None is not allowed"),
    (["ckpt=x", "split=dev"], "split='dev' is not allowed: one of train, val, test"),
    (["ckpt=x", "k=0"], "k=0 is not allowed: an integer ≥ 1"),
    (["ckpt=x", "dataset.bogus=1"], "allowed keys: name, root"),
    (["ckpt=x", "dataset=nope"], "allowed dataset="),
    (["ckpt=no/such/run"], "no/such/run: no such checkpoint file, run folder or multirun folder"),
    (["-m", "ckpt=a,b"], "-m/--multirun is not supported; to evaluate every job of a sweep, pass its folder"),
])
def test_bad_eval_settings_end_in_one_line(capsys, args, fragment):
    assert main(["eval", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines


def test_dataset_overrides_apply_on_top_of_the_checkpoint(evaluated, capsys):
    run_dir = evaluated["ae"][2]
    shape = evaluate.dataset_config({"name": "digits", "split_seed": 0}, {"split_seed": 3, "limit": 50})
    assert (shape.name, shape.split_seed, shape.limit) == ("digits", 3, 50)
    assert main(["eval", f"ckpt={run_dir}", "dataset.name=synthetic", "dataset.shape=[1,4,4]",
                 *EVAL_ARGS]) == 2
    err = capsys.readouterr().err
    assert "dataset.name=synthetic: examples of shape [1, 4, 4]" in err and "takes [1, 8, 8]" in err


def test_a_dataset_override_the_checkpoints_dataset_does_not_read_is_refused():
    with pytest.raises(ConfigError, match=r"^dataset.val_fraction=0.2 is not allowed: dataset=binarized_mnist does "
                                          r"not use val_fraction \(its fields: binarize, limit, root, download\)"):
        evaluate.dataset_config({"name": "binarized_mnist"}, {"val_fraction": 0.2})
    with pytest.raises(ConfigError, match=r"^dataset.test_fraction=0.3 .*dataset=mnist does not use test_fraction"):
        evaluate.dataset_config({"name": "digits"}, {"name": "mnist", "test_fraction": 0.3})
    assert evaluate.dataset_config({"name": "mnist"}, {"val_fraction": 0.2}).val_fraction == 0.2


def test_evaluations_of_other_checkpoints_splits_and_k_are_kept_apart(train_run):
    run = train_run("model.hidden_dims=[16]", "trainer.epochs=2")
    common = ["progress=false", "device=cpu", "projector=false"]
    for args in (["k=5"], [f"ckpt={run / 'checkpoints' / 'best.pt'}", "k=5"], ["split=val", "k=5"], ["k=7"],
                 ["k=5", "limit=50"]):
        ckpt = [] if any(a.startswith("ckpt=") for a in args) else [f"ckpt={run}"]
        assert main(["eval", *ckpt, *args, *common]) == 0
    results = {p.parent.name: json.loads(p.read_text()) for p in (run / "eval").glob("*/metrics.json")}
    assert set(results) == {"last_test_k5", "best_test_k5", "last_val_k5", "last_test_k7", "last_test_k5_first50"}
    assert results["last_val_k5"]["split"] == "val" and results["best_test_k5"]["checkpoint"].endswith("best.pt")
    assert results["last_test_k5_first50"]["n"] == 50 and results["last_test_k5"]["n"] == 180
    assert results["last_test_k7"]["k"] == 7


def test_a_relative_data_path_is_stored_resolved_so_eval_works_from_anywhere(tmp_path, train_run, monkeypatch):
    import numpy as np

    (tmp_path / "data").mkdir()
    np.savetxt(tmp_path / "data" / "table.csv", np.random.default_rng(0).random((120, 5)), delimiter=",")
    monkeypatch.chdir(tmp_path)
    run = train_run("dataset=tensor_file", "dataset.path=data/table.csv", "model.hidden_dims=[8]", "trainer.epochs=1")
    from aectl.runs.checkpoint import load_checkpoint

    assert load_checkpoint(run)["config"]["dataset"]["path"] == str(tmp_path / "data" / "table.csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["eval", f"ckpt={run}", "k=2", "progress=false", "device=cpu", "projector=false"]) == 0


def test_a_bernoulli_on_grey_levels_is_labelled_a_cross_entropy_and_on_binary_data_nats(train_run, capsys):
    grey = train_run("model.likelihood=bernoulli", "model.hidden_dims=[16]", "trainer.epochs=1")
    binary = train_run("model.likelihood=bernoulli", "dataset.binarize=dynamic", "model.hidden_dims=[16]",
                       "trainer.epochs=1")
    outputs = {}
    for name, run in (("grey", grey), ("binary", binary)):
        capsys.readouterr()
        assert main(["eval", f"ckpt={run}", "k=3", "progress=false", "device=cpu", "projector=false"]) == 0
        outputs[name] = (capsys.readouterr().out, json.loads(eval_file(run).read_text())["likelihood"])
    out, likelihood = outputs["grey"]
    assert likelihood["normalised"] is False and likelihood["binary_data"] is False
    assert "−log p(x), IW bound k=3 (grey-level Bernoulli CE†)" in out
    assert "† Bernoulli likelihood on grey levels: recon, −ELBO and the IW estimate are" in out
    plain_nats = [line.split()[0] for line in out.splitlines() if "(nats)" in line]
    assert plain_nats == ["KL(q(z|x)"]  # the KL is in nats whatever the likelihood; nothing else
    out, likelihood = outputs["binary"]
    assert likelihood["normalised"] is True and likelihood["binary_data"] is True
    assert "−log p(x), IW bound k=3 (nats)" in out and "†" not in out
