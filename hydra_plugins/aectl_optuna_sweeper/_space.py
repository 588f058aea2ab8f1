"""Hydra sweep overrides → Optuna distributions: `interval(a,b)` a float range,
`int(interval(a,b))` an int range, `tag(log, interval(...))` a log-scaled one, `choice(...)` and
`range(...)` categorical; a plain `key=value` is fixed for every trial."""

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


def distribution(override: Override) -> BaseDistribution:
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution([x for x in override.sweep_iterator(transformer=lambda x: x)])
    if isinstance(value, RangeSweep):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=lambda x: x)))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(f"{override.get_key_element()}={override.get_value_element_as_str()}: "
                     "not a search space (allowed: interval, int(interval), tag(log, ...), choice, range)")


def search_space(overrides: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """The distributions of the swept keys and the fixed `key=value` overrides, later ones winning
    (the command line after the preset's hydra.sweeper.params)."""
    distributions, fixed = {}, {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        distributions.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            distributions[key] = distribution(override)
        else:
            fixed[key] = override.get_value_element_as_str()
    return distributions, fixed


def params_overrides(params: dict) -> list[str]:
    return [f"{k}={v}" for k, v in params.items()]
