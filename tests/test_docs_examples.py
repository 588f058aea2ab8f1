"""Every example of README.md and docs/ runs: each ```bash/```sh/```console block as a bash script
(any failing command fails it) and each ```python block (after the page's earlier python blocks),
in a fresh folder, on the bundled data. An HTML comment just above a block steers it, visibly:

    <!-- skip: next "reason" -->            not run; the reason is required
    <!-- example: append "a=1 b=2" -->      added to every `aectl train` (small runs: few epochs)
    <!-- example: replace "old" "new" -->   a placeholder or a size, replaced (must occur in the block)
    <!-- example: before "command" -->      run first, in the same folder (a run for `<run>` to name)
"""

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LANGS = ("bash", "sh", "console", "python")
# where appended overrides go: after `aectl train` and its -m (argparse wants flags first); not
# into a completion script's command (-sc), which trains nothing
TRAIN = re.compile(r"aectl train(?: -m)?(?! -sc)")
MARKER = re.compile(r'<!-- (skip: next|example: (?:append|replace|before)) (.*) -->')


@dataclass
class Example:
    page: Path
    line: int
    lang: str
    code: str
    skip: str = None
    append: list = field(default_factory=list)
    replace: list = field(default_factory=list)
    before: list = field(default_factory=list)
    earlier_python: list = field(default_factory=list)  # the page's python blocks above this one

    @property
    def name(self):
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def collect(page: Path) -> list:
    """The page's examples, each with the markers written just above it."""
    lines = page.read_text().splitlines()
    examples, pending, i = [], [], 0
    while i < len(lines):
        marker = MARKER.fullmatch(lines[i].strip())
        if marker:
            pending.append((marker[1].split(": ")[1], shlex.split(marker[2])))
        elif lines[i].startswith("```"):
            lang, start = lines[i][3:].strip(), i
            i += 1
            while not lines[i].startswith("```"):
                i += 1
            if lang in LANGS:
                example = Example(page, start + 1, lang, "\n".join(lines[start + 1:i]) + "\n")
                for kind, args in pending:
                    if kind == "next":
                        example.skip = args[0] if args else ""
                    else:
                        getattr(example, kind).append(args)
                examples.append(example)
            pending = []
        i += 1
    python = [e for e in examples if e.lang == "python"]
    for k, example in enumerate(python):
        example.earlier_python = python[:k]
    return examples


EXAMPLES = [example for page in PAGES for example in collect(page)]


def _prepared(example: Example) -> str:
    code = example.code
    for old, new in example.replace:
        assert old in code, f"{example.name}: the replace marker's {old!r} is not in the block"
        code = code.replace(old, new)
    for (args,) in example.append:
        assert "aectl train" in code, f"{example.name}: an append marker but no `aectl train` in the block"
        code = TRAIN.sub(lambda m: f"{m[0]} {args}", code)
    return code


def _env():
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "PYTHONPATH": str(ROOT),
            "MPLBACKEND": "Agg"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_example(example, tmp_path, monkeypatch):
    if example.skip is not None:
        assert example.skip.strip(), f"{example.name}: a skip marker needs a reason"
        pytest.skip(example.skip)
    if example.lang == "python":
        monkeypatch.chdir(tmp_path)
        namespace = {}
        for block in [*example.earlier_python, example]:
            exec(compile(_prepared(block), block.name, "exec"), namespace)
        return
    script = "\n".join([*(cmd for (cmd,) in example.before), _prepared(example)])
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{example.name} failed:\n{script}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_examples_are_found():
    assert {e.page.name for e in EXAMPLES} >= {"README.md", "getting-started.md", "api.md", "cli.md"}
    assert all(e.skip is None or e.skip.strip() for e in EXAMPLES)
