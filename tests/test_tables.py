"""The text tables eval and report print."""

from pathlib import Path

from aectl.evaluation.eval_tables import format_sweep_table, format_table
from aectl.runs.tables import align_rows, display_width, format_metric, format_value
from aectl.training import run_summary


def test_combining_marks_take_no_column():
    assert display_width("mean ρ̂") == 6
    assert align_rows([["mean ρ̂", "1"], ["PSNR", "22"]]) == ["mean ρ̂  1", "PSNR    22"]


def test_right_aligned_columns_and_no_trailing_spaces():
    rows = [["job", "model", "PSNR"], ["a", "vae", "7.5"], ["bb", "", "10"]]
    assert align_rows(rows, right=[2]) == ["job  model  PSNR", "a    vae     7.5", "bb            10"]


def test_numbers_as_the_tables_print_them():
    assert format_value(None) == "" and format_value(3) == "3" and format_value(0.123456) == "0.1235"
    assert format_value(123456.0) == "1.235e+05"  # report: 4 digits throughout
    assert format_metric("mse", 123456.0) == "1.2346e+05" and format_metric("mse", 12.3456) == "12.35"
    assert format_metric("psnr", float("nan")) == "nan" and format_metric("probe_acc", True) == "True"


def test_each_unit_prints_a_fixed_number_of_decimals():
    # dB and nats to 2 decimals, shares as percentages: 19.995 dB is not "20", a full codebook not "1"
    assert format_metric("psnr", 19.995) == "20.00" and format_metric("val/psnr", 7.5) == "7.50"
    assert format_metric("eval/psnr_denoised_gaussian", 21.0) == "21.00" and format_metric("kl", 16.0) == "16.00"
    assert format_metric("test/loss", -30.054) == "-30.05" and format_metric("eval/nll_iw", 123456.0) == "1.2346e+05"
    assert format_metric("codebook_usage", 1.0) == "100.0%" and format_metric("eval/probe_acc", 0.1234) == "12.3%"
    assert format_metric("mse", 0.025366) == "0.02537" and format_metric("active_units", 8) == "8"


def eval_result(model: str, metrics: dict) -> dict:
    """What `aectl eval` writes to metrics.json, as much of it as its table reads."""
    return {"run": "runs/a", "name": "last_test_k100", "model": model, "step": 24, "dataset": "digits",
            "split": "test", "n": 180, "k": 100, "latent_dim": 8, "beta": 1.0, "penalty": {}, "psnr_max": 1.0,
            "noise": {"kind": "none"}, "robustness_noise": {}, "likelihood": {"normalised": True},
            "metrics": metrics}


def test_the_eval_table_prints_db_and_shares_with_fixed_decimals():
    table = format_table(eval_result("vqvae", {"psnr": 19.995, "codebook_usage": 1.0, "mse": 0.0123}))
    cells = {line.rsplit("  ", 1)[0].strip(): line.rsplit("  ", 1)[1] for line in table.splitlines()[1:-1]}
    assert cells["PSNR, MAX=1 (dB)"] == "20.00" and cells["MSE per element (clean input)"] == "0.0123"
    assert cells["VQ codebook usage: share of the codes chosen on the split"] == "100.0%"
    sweep = format_sweep_table([eval_result("vqvae", {"psnr": 19.995, "codebook_usage": 1.0})], Path("runs"))
    assert sweep.splitlines()[-1].split()[-2:] == ["20.00", "100.0%"]


def test_a_cvaes_probe_near_chance_is_explained_and_a_vaes_is_not():
    cvae = format_table(eval_result("cvae", {"probe_acc": 0.12}))
    assert "12.0%" in cvae and "near chance is expected for a cvae" in cvae
    assert "near chance" not in format_table(eval_result("vae", {"probe_acc": 0.12}))


def test_the_final_log_lines_print_each_unit_as_the_tables_do_and_say_whose_weights():
    val = {"loss": -30.054, "psnr": 19.995, "active_units": 8, "kl": 16.0, "codebook_usage": 1.0, "perplexity": 7.96}
    metrics = {"val": val, "test": {"loss": -29.1}, "val_psnr_mean_image": 11.4, "epochs": 20, "weights": "last",
               "best_checkpoint": {"metric": "val/loss", "value": -30.2, "epoch": 19},
               "best": {"epoch": 19, "val": {"loss": -30.2}, "test": {"loss": -29.25}}}
    assert run_summary.summary(metrics, [8]) == ("val PSNR 20.00 dB (the mean training image scores 11.40 dB); 8 of 8 "
                                           "latent units active, KL 16.00 nats; 100.0% of the codebook in use, "
                                           "perplexity 7.96")
    two_layers = {"val": {"loss": 90.0, "active_units": 37, "active_units_z2": 9, "kl": 25.0}}
    assert run_summary.summary(two_layers, [100, 50]) == "z1: 37 of 100, z2: 9 of 50 latent units active, KL 25.00 nats"
    done, best = run_summary.done_lines(metrics, Path("run/metrics.json"))
    assert done == "done: last weights (epoch 20): val loss -30.05, test loss -29.10; metrics in run/metrics.json"
    assert best == "best.pt (epoch 19, by val/loss): val loss -30.20, test loss -29.25"
    stopped = {**metrics, "weights": "best"}
    del stopped["best"]
    assert run_summary.done_lines(stopped, Path("m.json")) == [
        "done: best.pt (epoch 19, by val/loss): val loss -30.05, test loss -29.10; metrics in m.json"]
