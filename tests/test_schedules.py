import math

import pytest

from aectl.objectives.schedules import beta_at


def test_constant():
    assert [beta_at(t, beta=0.5) for t in (0, 10, 10_000)] == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("step, expected", [(0, 0.0), (250, 0.5), (500, 1.0), (1000, 1.0)])
def test_linear_warmup(step, expected):
    assert math.isclose(beta_at(step, beta=2.0, kind="linear", warmup_steps=500), 2.0 * expected)


@pytest.mark.parametrize("step, expected", [(100, 0.5), (0, 1 / (1 + math.exp(1))), (200, 1 / (1 + math.exp(-1)))])
def test_sigmoid(step, expected):
    assert math.isclose(beta_at(step, beta=1.0, kind="sigmoid", k=0.01, x0=100), expected, rel_tol=1e-12)


def test_sigmoid_far_before_midpoint_is_zero_without_overflow():
    assert beta_at(0, beta=1.0, kind="sigmoid", k=10.0, x0=10_000) == 0.0


@pytest.mark.parametrize("step, expected", [
    (0, 0.0), (25, 0.5), (50, 1.0), (99, 1.0),  # first cycle of 100 steps: rises over 50
    (100, 0.0), (125, 0.5), (175, 1.0),  # second cycle repeats
    (325, 0.5), (350, 1.0),
])
def test_cyclical(step, expected):
    # T = 400 steps, M = 4 cycles of 100 steps, R = 0.5 (Fu et al. 2019).
    value = beta_at(step, beta=1.0, kind="cyclical", cycles=4, ratio=0.5, total_steps=400)
    assert math.isclose(value, expected, abs_tol=1e-12)


def test_unknown_schedule():
    with pytest.raises(ValueError):
        beta_at(0, beta=1.0, kind="nope")
