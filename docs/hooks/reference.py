"""MkDocs hook: fills the generated reference pages at build time, so they cannot drift.

`<!-- generated: config-schema -->` becomes the fields of every dataclass of `aectl.config` (name,
type, default and the field's comments in the source, read with inspect + tokenize);
`<!-- generated: config-options -->` the options of each group in configs/;
`<!-- generated: cli-help -->` the CLI's own help text.
"""

import dataclasses
import inspect
import io
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKERS = ("config-schema", "config-options", "cli-help")


def field_comments(cls) -> dict:
    """{field name: its comment}: the comment lines just above the field, then its trailing comment."""
    lines, _ = inspect.getsourcelines(cls)
    source = "".join(lines)
    comments = {}  # line number → comment text
    code_lines = {}  # line number → first name token on that line
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type == tokenize.NAME and tok.start[0] not in code_lines:
            code_lines[tok.start[0]] = tok.string
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for row, name in code_lines.items():
        if name not in names or not lines[row - 1].lstrip().startswith(name + ":"):
            continue
        above, prev = [], row - 1
        while prev in comments and prev not in code_lines:  # a comment-only line
            above.insert(0, comments[prev])
            prev -= 1
        out[name] = " ".join(above + ([comments[row]] if row in comments else []))
    return out


def _default(f) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return f"({type(value).__name__})" if dataclasses.is_dataclass(value) else repr(value)
    return "(required)"


def _type_name(tp) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def dataclass_markdown(cls) -> str:
    """One table for one config dataclass: field, type, default, comment."""
    comments = field_comments(cls)
    rows = [f"### `{cls.__name__}`", ""]
    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
        rows += [inspect.cleandoc(cls.__doc__), ""]
    rows += ["| field | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        rows.append(f"| `{f.name}` | `{_cell(_type_name(f.type))}` | `{_cell(_default(f))}` "
                    f"| {_cell(comments.get(f.name, ''))} |")
    return "\n".join(rows) + "\n"


def schema_markdown(module) -> str:
    """Every dataclass defined in `module`, in source order."""
    classes = [obj for obj in vars(module).values()
               if inspect.isclass(obj) and dataclasses.is_dataclass(obj)
               and obj.__module__.startswith(module.__name__)]
    return "\n".join(dataclass_markdown(cls) for cls in classes)


def options_markdown(configs: Path) -> str:
    """Each option group of configs/ (a folder of yaml files) with every option's yaml."""
    parts = []
    for group in sorted(p for p in configs.iterdir() if p.is_dir() and p.name != "hydra"):
        parts += [f"### `{group.name}`", ""]
        for option in sorted(group.glob("*.yaml")):
            parts += [f"`{group.name}={option.stem}`", "", "```yaml", option.read_text().rstrip(), "```", ""]
    return "\n".join(parts)


def cli_markdown() -> str:
    """`aectl --help` and each command's `--help`, as the CLI prints them."""
    parts = []
    for args in ([], ["train"], ["eval"], ["report"], ["export"]):
        text = subprocess.run([sys.executable, "-m", "aectl", *args, "--help"], capture_output=True,
                              text=True, check=True, cwd=ROOT).stdout
        parts += [f"### `aectl {' '.join(args + ['--help'])}`", "", "```text", text.rstrip(), "```", ""]
    return "\n".join(parts)


def generate(marker: str) -> str:
    import aectl.config
    if marker == "config-schema":
        return schema_markdown(aectl.config)
    if marker == "config-options":
        return options_markdown(ROOT / "configs")
    return cli_markdown()


def on_page_markdown(markdown, page, config, files):  # MkDocs hook
    for marker in MARKERS:
        tag = f"<!-- generated: {marker} -->"
        if tag in markdown:
            markdown = markdown.replace(tag, generate(marker))
    return markdown
