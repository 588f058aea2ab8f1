"""The generated reference pages: the config schema's fields come with their defaults and source
comments, every option of configs/ and the CLI's help appear, so the pages cannot drift."""

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import aectl.config

ROOT = Path(__file__).resolve().parent.parent


def _reference():
    spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "docs" / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class ExampleConfig:
    depth: int = 3  # layers of the example
    # a comment above the field,
    # over two lines
    width: float = 0.25
    tags: list[str] = field(default_factory=lambda: ["a"])  # list default


def test_a_new_field_appears_with_its_default_and_comments():
    text = _reference().dataclass_markdown(ExampleConfig)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    assert "`3`" in rows["`depth`"] and "layers of the example" in rows["`depth`"]
    assert "`0.25`" in rows["`width`"] and "a comment above the field, over two lines" in rows["`width`"]
    assert "`['a']`" in rows["`tags`"] and "list default" in rows["`tags`"]


def test_the_schema_page_has_every_field_of_every_group():
    text = _reference().schema_markdown(aectl.config)
    for cls in (aectl.config.ModelConfig, aectl.config.TrainerConfig, aectl.config.EvalConfig):
        assert f"### `{cls.__name__}`" in text
        for name in cls.__dataclass_fields__:
            assert f"| `{name}` |" in text
    assert "| `latent_dim` | `int` | `8` | K, size of the code z |" in text


def test_every_option_of_configs_and_the_cli_help_appear():
    reference = _reference()
    options = reference.options_markdown(ROOT / "configs")
    for yaml in (ROOT / "configs").glob("*/*.yaml"):
        if yaml.parent.name != "hydra":
            assert f"`{yaml.parent.name}={yaml.stem}`" in options
    assert "usage: aectl <command>" in reference.cli_markdown()
