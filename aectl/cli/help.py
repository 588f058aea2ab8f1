"""The field descriptions of `aectl train --help` / `aectl eval --help`, read from the comments
next to each field of the schema (aectl/config/schema.py), so they are written once."""

import dataclasses
import inspect
import re

_FIELD = re.compile(r"^\s+(\w+): [^#]*?(?:#\s*(.*))?$")


def _comments(cls) -> dict[str, str]:
    """field → its comment: the one on its line, or the comment lines right above it. A class
    made by make_dataclass has no source: eval's dataset overrides take DatasetConfig's."""
    from aectl.config import DatasetConfig

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        source = inspect.getsource(DatasetConfig) if cls.__name__ == "DatasetOverrides" else ""
    docs, above = {}, []
    for line in source.splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# "))
            continue
        match = _FIELD.match(line)
        if match:
            docs[match.group(1)] = match.group(2) or " ".join(above)
        above = []
    return docs


def field_docs(schema) -> str:
    """One line per field, `section.field  description`, for every section of `schema`."""
    rows = []
    for section in dataclasses.fields(schema):
        if dataclasses.is_dataclass(section.type):
            docs = _comments(section.type)
            rows += [(f"{section.name}.{f.name}", docs.get(f.name, "")) for f in dataclasses.fields(section.type)]
        else:
            rows.append((section.name, _comments(schema).get(section.name, "")))
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"  {key.ljust(width)}  {doc}".rstrip() for key, doc in rows)


def help_fields(command: str) -> str:
    """The OmegaConf resolver `${aectl_fields:train}` of the help templates."""
    from aectl.config import EvalConfig, TrainConfig

    return field_docs(TrainConfig if command == "train" else EvalConfig)
