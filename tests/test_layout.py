"""The package's layout: one subpackage per stage of the data flow, imports going one way only."""

import ast
import importlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aectl"
# The stages in data-flow order: a module may import its own stage and the ones before it, never one after.
LAYERS = ("config", "runtime", "datasets", "models", "objectives", "runs", "evaluation", "training", "report", "cli",
          "api")
TOP_FILES = {"__init__.py", "__main__.py", "api.py"}
MAX_LINES = 350


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(name: str, path: Path) -> set[str]:
    """Every aectl module `name` imports, at module level or inside a function (lazy imports count)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from aectl import build` imports a module
    modules = _modules()
    return {m for m in found if m in modules}


def _stage(module: str, importer: bool = False) -> int:
    """The layer of a module. The package root and __main__ import the API and the CLI (above every
    stage); what others take from the root (its __version__) sits below every stage."""
    parts = module.split(".")
    if module in ("aectl", "aectl.__main__"):
        return len(LAYERS) if importer else -1
    return LAYERS.index(parts[1])


def test_the_top_level_holds_only_the_stages_and_three_files():
    entries = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert {e for e in entries if (PACKAGE / e).is_file()} == TOP_FILES
    packages = {e for e in entries if (PACKAGE / e).is_dir()}
    assert packages == set(LAYERS) - {"api"}
    for package in packages:  # each says what its stage does
        doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
        assert doc and doc.strip(), package


def test_no_module_is_longer_than_the_limit():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_no_import_goes_up_the_stages():
    wrong = [f"{name} imports {target}" for name, path in _modules().items() for target in _imported(name, path)
             if _stage(target) > _stage(name, importer=True)]
    assert not wrong, "imports against the data flow: " + "; ".join(sorted(wrong))


def test_no_two_modules_import_each_other():
    graph = {name: _imported(name, path) - {name} for name, path in _modules().items()}
    cycles = sorted(f"{a} <-> {b}" for a, targets in graph.items() for b in targets
                    if a < b and a in graph.get(b, ()) and not b.startswith(a + ".") and not a.startswith(b + "."))
    assert not cycles, cycles


def test_the_import_paths_of_before_the_layout_still_work():
    from aectl.config import TrainConfig
    from aectl.config.schema import TrainConfig as schema_train_config
    from aectl.datasets import load_dataset
    from aectl.datasets.load import load_dataset as load_load_dataset

    assert TrainConfig is schema_train_config
    assert load_dataset is load_load_dataset
    api = importlib.import_module("aectl.api")
    assert callable(api.load)
