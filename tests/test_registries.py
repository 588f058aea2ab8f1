"""The names of kinds live in aectl/config/schema.py; the code's registries and the YAML options of
configs/ name exactly the same ones."""

from pathlib import Path

import pytest

from aectl import config, models
from aectl.cli import config_dir
from aectl.config import option_fields
from aectl.datasets import noise
from aectl.objectives import losses, schedules

GROUPS = {"model": config.MODEL_KINDS, "noise": config.NOISES, "penalty": config.PENALTIES,
          "beta_schedule": config.SCHEDULES, "dataset": config.DATASETS}


@pytest.mark.parametrize("group", GROUPS)
def test_every_choice_has_a_yaml_option_and_every_option_is_a_choice(group):
    options = {p.stem for p in (Path(config_dir()) / group).glob("*.yaml")}
    assert options == set(GROUPS[group])


def test_code_registries_name_the_configs_kinds():
    from aectl.datasets import LOADERS

    assert set(models.MODEL_CLASSES) == set(config.MODEL_KINDS)
    assert set(models.ACTIVATIONS) == set(config.ACTIVATIONS)
    assert set(LOADERS) | {"activations"} == set(config.DATASETS)  # activations: read in place, no RawData reader
    assert losses.LIKELIHOODS is config.LIKELIHOODS and noise.NOISES is config.NOISES
    assert schedules.SCHEDULES is config.SCHEDULES and models.ARCHS is config.ARCHS
    for table, kinds in ((option_fields.NOISE_FIELDS, config.NOISES), (option_fields.PENALTY_FIELDS, config.PENALTIES),
                         (option_fields.SCHEDULE_FIELDS, config.SCHEDULES), (option_fields.DATASET_FIELDS, config.DATASETS)):
        assert set(table) == set(kinds)


def test_every_kind_the_code_accepts_works():
    import torch

    for kind in config.NOISES:
        assert noise.Corruption(kind)(torch.rand(2, 1, 2, 2)).shape == (2, 1, 2, 2)
    for kind in config.SCHEDULES:
        assert 0 <= schedules.beta_at(10, beta=1.0, kind=kind, total_steps=100) <= 1
    for likelihood in config.LIKELIHOODS:
        assert losses.reconstruction_nll(torch.zeros(1, 1, 1, 2), torch.rand(1, 1, 1, 2), likelihood).shape == (1,)
