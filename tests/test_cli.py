"""The command line: bad input ends in one clear line, help and completion work, sweeps name
their job folders, and the start-up path stays free of torch."""

import dataclasses
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from aectl.cli import main

REPO = Path(__file__).resolve().parent.parent

BAD_INPUT = [
    (["model=foo"], ["model=foo", "allowed model=ae, cvae, dae, hvae, iwae, sae, sparse_ae, stacked_ae, vae, vqvae"]),
    (["noise=foo"], ["noise=foo", "gaussian", "masking", "salt_pepper"]),
    (["model.foo=1"], ["model.foo", "allowed keys", "latent_dim"]),
    (["foo=1"], ["foo", "allowed keys", "beta"]),
    (["model.latent_dim=abc"], ["model.latent_dim=abc", "Integer"]),
    (["trainer.epochs=1.5"], ["trainer.epochs=1.5", "Integer"]),
    (["model.latent_dim=0"], ["model.latent_dim=0", "> 0"]),
    (["noise.p=1.5"], ["noise.p=1.5", "[0, 1]"]),
    (["noise.p=-0.1"], ["noise.p=-0.1", "[0, 1]"]),
    (["noise.sigma=-1"], ["noise.sigma=-1", "≥ 0"]),
    (["penalty.rho=1.5"], ["penalty.rho=1.5", "(0, 1)"]),
    (["penalty.rho=0"], ["penalty.rho=0", "(0, 1)"]),
    (["beta=-0.5"], ["beta=-0.5", "≥ 0"]),
    (["trainer.batch_size=0"], ["trainer.batch_size=0", "> 0"]),
    (["trainer.device=cuda"], ["trainer.device='cuda'", "CUDA is not available"]),
    (["trainer.optimizer=rmsprop"], ["trainer.optimizer='rmsprop'", "adam"]),
    (["model.kind=gan"], ["model.kind='gan'", "vae"]),
    (["trainer.resume=no/such/run"], ["trainer.resume=no/such/run", "no such checkpoint"]),
    (["model=vae", "penalty=kl_sparsity"], ["penalty.kind='kl_sparsity' is not allowed: none for model=vae"]),
    # KL(ρ ‖ ρ̂) is defined for a mean activation ρ̂ in (0, 1) only
    (["model=sparse_ae", "model.code_activation=tanh"],
     ["model.code_activation='tanh'", "sigmoid when penalty=kl_sparsity"]),
]


@pytest.mark.parametrize("overrides, expected", BAD_INPUT, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_input_ends_in_one_clear_line(capsys, overrides, expected):
    if "cuda" in overrides[0]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    rc = main(["train", *overrides, "trainer.epochs=1", "trainer.progress=false"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for fragment in expected:
        assert fragment in lines[0], (fragment, lines[0])


def test_bad_input_exit_code_from_the_console_script(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "aectl", "train", "trainer.batch_size=-3"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["aectl train: error: trainer.batch_size=-3 is not allowed: "
                                                "an integer > 0"]


def test_unknown_command(capsys):
    assert main(["fit"]) == 2
    assert "unknown command 'fit'; allowed: train, eval, report, export" in capsys.readouterr().err


def test_train_help_lists_groups_and_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    for group, options in {"model": "ae, cvae, dae, hvae, iwae, sae, sparse_ae, stacked_ae, vae, vqvae",
                           "noise": "gaussian, masking, none, salt_pepper",
                           "beta_schedule": "constant, cyclical, linear, sigmoid"}.items():
        assert f"{group}: {options}" in out


def test_cfg_job_prints_the_composed_config(capsys):
    main(["train", "model=dae", "noise=masking", "--cfg", "job"])
    out = capsys.readouterr().out
    assert "kind: dae" in out and "kind: masking" in out and "beta: 1.0" in out


def test_tab_completion_through_the_dispatcher(capsys, monkeypatch):
    line = "aectl train model="
    monkeypatch.setenv("COMP_LINE", line)
    monkeypatch.setenv("COMP_POINT", str(len(line)))
    main(["-sc", "query=bash"])
    options = capsys.readouterr().out.split()
    assert {"model=vae", "model=dae", "model=sparse_ae"} <= set(options)

    line = "aectl train noise.s"
    monkeypatch.setenv("COMP_LINE", line)
    monkeypatch.setenv("COMP_POINT", str(len(line)))
    main(["-sc", "query=bash"])
    assert "noise.sigma=" in capsys.readouterr().out.split()


def test_sweep_names_job_folders_by_overrides(tmp_path):
    sweep = tmp_path / "sweep"
    rc = main(["train", "-m", "model.latent_dim=2,8,32", f"hydra.sweep.dir={sweep}", "trainer.epochs=1",
               "trainer.progress=false", "trainer.device=cpu"])
    assert rc == 0
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["model.latent_dim=2", "model.latent_dim=32", "model.latent_dim=8"]
    for job in jobs:
        assert list((sweep / job).glob("events.out.tfevents.*"))
        assert (sweep / job / "checkpoints" / "last.pt").is_file()
        assert (sweep / job / "metrics.json").is_file()


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, aectl.cli, aectl.config; print('torch' in sys.modules, 'hydra' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_top_level_help_is_plain_and_fast(tmp_path):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "aectl", "--help"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "aectl <command>" in proc.stdout
    assert "torch" not in {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()}


def test_wheel_ships_the_configs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True,
                          env={**os.environ, "PIP_NO_INPUT": "1"})
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("aectl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for config in ("train.yaml", "model/vae.yaml", "noise/masking.yaml", "hydra/help/train.yaml"):
        assert f"aectl/configs/{config}" in names


def installed_places() -> list[Path]:
    """Where this interpreter's packages are: its site-packages and the folders their .pth files
    add (the checkout, which an editable install adds, left out)."""
    import site

    sites = [Path(p) for p in {*site.getsitepackages(), site.getusersitepackages()} if Path(p).is_dir()]
    added = [site_dir / line.strip() for site_dir in sites for pth in sorted(site_dir.glob("*.pth"))
             for line in pth.read_text().splitlines() if line.strip() and not line.startswith(("#", "import"))]
    return [p for p in dict.fromkeys([*sites, *added]) if p.is_dir() and p.resolve() != REPO]


def without_the_optuna_extra(folder: Path) -> dict:
    """An environment without optuna (an install that left the dependency out), for `python -S`: the
    installed packages seen through a folder of links that leaves out optuna,
    hydra-optuna-sweeper and the installed aectl (the checkout's comes first on the path)."""
    left_out = ("optuna", "hydra_optuna_sweeper", "aectl", "__editable__")
    (folder / "hydra_plugins").mkdir(parents=True)
    for place in installed_places():
        for entry in sorted(place.iterdir()):
            for item in sorted(entry.iterdir()) if entry.name == "hydra_plugins" else [entry]:
                link = folder / item.relative_to(place)
                if not item.name.lower().startswith(left_out) and item.suffix != ".pth" and not link.exists():
                    link.symlink_to(item)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(folder)])}


def test_no_plugin_warnings_without_the_optuna_extra(tmp_path):
    """Hydra imports every plugin module before each command and warns (six lines each) about one
    that fails to import: the aectl_optuna sweeper must import quietly without its extra."""
    env = without_the_optuna_extra(tmp_path / "site")
    aectl = [sys.executable, "-S", "-m", "aectl", "train"]
    help_run = subprocess.run([*aectl, "--help"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert help_run.returncode == 0 and "aectl train" in help_run.stdout, help_run.stderr
    assert "Plugin is incompatible" not in help_run.stderr and "Error importing" not in help_run.stderr, \
        help_run.stderr
    search = subprocess.run([*aectl, "-m", "hparams_search=digits_vae"], capture_output=True, text=True, env=env,
                            cwd=tmp_path)
    assert search.returncode == 2
    assert search.stderr.strip() == ("aectl train: error: hydra/sweeper=aectl_optuna: no such option; allowed "
                                     "hydra/sweeper=basic (pip install 'aectl[optuna]' adds aectl_optuna)")


@pytest.mark.parametrize("command, args, line", [
    ("train", ["dataset=tensor_file", "dataset.path=my", "data.csv"],
     'data.csv: not an override (key=value); a value with spaces must be quoted, e.g. "dataset.path=my data.csv"'),
    ("train", ["dataset.path=my", "big", "data.csv", "trainer.epochs=1"],
     'big: not an override (key=value); a value with spaces must be quoted, e.g. "dataset.path=my big data.csv"'),
    ("eval", ["ckpt=runs/my", "run"],
     'run: not an override (key=value); a value with spaces must be quoted, e.g. "ckpt=runs/my run"'),
    ("train", ["vae"], "vae: not an override; overrides are key=value (e.g. model=vae), see aectl train --help"),
])
def test_an_unquoted_value_with_spaces_gets_a_hint_to_quote_it(tmp_path, capsys, command, args, line):
    assert main([command, *args]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"aectl {command}: error: {line}"]
    assert not list(tmp_path.iterdir())  # refused before anything was created


def test_flag_values_are_not_mistaken_for_stray_words(capsys):
    assert main(["train", "--cfg", "job", "model=ae"]) == 0
    assert "kind: ae" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--version"], ["train", "--version"], ["eval", "--version"],
                                  ["report", "--version"], ["export", "--version"], ["train", "model=ae", "--version"]])
def test_version_is_aectls(capsys, argv):
    from importlib.metadata import version

    assert main(argv) == 0
    assert capsys.readouterr().out == f"aectl {version('aectl')}\n"


def test_version_without_installed_metadata_is_the_packages(capsys, monkeypatch):
    import importlib.metadata

    import aectl

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    monkeypatch.setattr(aectl, "__version__", "9.9.9")
    assert main(["train", "--version"]) == 0
    assert capsys.readouterr().out == "aectl 9.9.9\n"


REFUSED_IN_THE_TASK = [["model.latent_dim=0"], ["model=vae", "penalty=kl_sparsity"], ["trainer.resume=no/such/run"],
                       ["dataset=tensor_file", "dataset.path=tiny.csv"], ["trainer.optimizer=rmsprop"]]


def test_refused_commands_leave_no_run_folder_behind(tmp_path, capsys):
    Path("tiny.csv").write_text("1,2\n3,4\n")
    for overrides in REFUSED_IN_THE_TASK:
        assert main(["train", *overrides, "trainer.epochs=1", "trainer.progress=false"]) == 2
        assert not Path("outputs").exists(), (overrides, list(Path("outputs").rglob("*")))
        assert main(["train", *overrides, "hydra.run.dir=new/run", "trainer.epochs=1"]) == 2
        assert not Path("new").exists(), overrides
    assert len(capsys.readouterr().err.strip().splitlines()) == 2 * len(REFUSED_IN_THE_TASK)


def test_a_refused_command_keeps_folders_that_existed_before(tmp_path, capsys):
    old = tmp_path / "old"
    (old / ".hydra").mkdir(parents=True)
    (old / "train.log").write_text("an earlier run's log\n")
    assert main(["train", "model.latent_dim=0", f"hydra.run.dir={old}"]) == 2
    assert (old / "train.log").read_text().startswith("an earlier run's log\n") and (old / ".hydra").is_dir()
    assert main(["train", "model.hidden_dims=[16]", "trainer.epochs=1", "trainer.progress=false",
                 "trainer.device=cpu", "hydra.run.dir=outputs/day/first"]) == 0
    assert main(["train", "model.latent_dim=0", "hydra.run.dir=outputs/day/second"]) == 2
    assert sorted(p.name for p in Path("outputs/day").iterdir()) == ["first"]  # its parent stays, and the run
    assert (Path("outputs/day/first") / "metrics.json").is_file()


def _complete(capsys, monkeypatch, line: str) -> list[str]:
    monkeypatch.setenv("COMP_LINE", line)
    monkeypatch.setenv("COMP_POINT", str(len(line)))
    assert main(["-sc", "query=bash"]) == 0
    return capsys.readouterr().out.split()


def test_tab_completion_of_report_completes_folders(tmp_path, capsys, monkeypatch):
    for folder in ("multirun/2026-01-01/10-00-00", "multirun/2026-01-02", "outputs"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("")
    assert _complete(capsys, monkeypatch, "aectl report ") == ["multirun/", "outputs/"]
    assert _complete(capsys, monkeypatch, "aectl report multirun/") == ["multirun/2026-01-01/", "multirun/2026-01-02/"]
    assert _complete(capsys, monkeypatch, "aectl report outputs --") == ["--out", "--help"]
    assert _complete(capsys, monkeypatch, "aectl ") == ["train", "eval", "report", "export"]


@pytest.mark.parametrize("command,fields", [
    ("train", {"model.sigma": "the decoder's fixed σ", "noise.p": "corruption probability per entry",
               "trainer.epochs": "passes over the training split", "beta": "target KL weight"}),
    ("eval", {"k": "importance samples per example", "limit": "the first N examples",
              "dataset.path": "the .npy/.npz/.pt/.csv file"}),
])
def test_help_describes_every_field(capsys, command, fields):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out.split("== Fields (key  description) ==")[1]
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    for key, words in fields.items():
        assert words in lines[key], lines.get(key)
    from aectl.config import TrainConfig

    if command == "train":  # every field of the schema has a line, and a description
        expected = {f"{s.name}.{f.name}" for s in dataclasses.fields(TrainConfig) if dataclasses.is_dataclass(s.type)
                    for f in dataclasses.fields(s.type)}
        assert expected <= set(lines) and all(len(lines[k].split()) > 1 for k in expected)
