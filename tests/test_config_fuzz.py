"""Property: any override set, valid or not, either trains a step with a finite loss or ends in
one line naming a config key — never a traceback, never a hang.

Hypothesis draws a group combination (every option of every config group, and unknown ones)
and up to 8 field overrides from the real value ranges, stretched past them (negative sizes,
p > 1, unknown choices and keys, wrong types). Each draw goes through what `aectl train` does:
Hydra composition, the schema, `validate`, then `aectl.training.build.train` (1 epoch on tiny synthetic data)
for the valid ones. Hydra composes each group combination once (it costs ~0.1 s); the field
overrides go through Hydra's own override parser and `_apply_overrides_to_config`, as in
`compose`, on a copy.
"""

import contextlib
import copy
import dataclasses
import itertools
import math
import signal
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aectl import cli, config
from aectl.config import checks as config_checks
from aectl.config import option_fields
from aectl.training import build

GROUPS = {
    "model": ["ae", "stacked_ae", "sparse_ae", "dae", "vae"],
    "noise": ["none", "gaussian", "salt_pepper", "masking"],
    "penalty": ["none", "l1", "kl_sparsity"],
    "beta_schedule": ["constant", "linear", "sigmoid", "cyclical"],
    "lr_schedule": ["constant", "cosine", "step", "plateau"],
}
GROUPS["model"] += ["iwae", "cvae", "vqvae", "sae"]
GROUPS["penalty"].append("contractive")
# The kinds whose KL term beta and beta_schedule weigh (the IWAE's bound has no KL weight).
BETA_KINDS = tuple(k for k in config.VARIATIONAL_KINDS if k != "iwae")
UNKNOWN_OPTION = {"model": "gan", "noise": "blur", "penalty": "l2", "beta_schedule": "step", "lr_schedule": "cyclic"}


def _group_combinations() -> list[tuple[str, ...]]:
    """Every option of every group at least once (cycled together), each unknown option once,
    and the defaults."""
    longest = max(len(options) for options in GROUPS.values())
    combos = [()]
    for i in range(4 * longest):
        combos.append(tuple(f"{g}={options[(i * (k + 1)) % len(options)]}"
                            for k, (g, options) in enumerate(GROUPS.items()) if (i + k) % 3))
    combos += [(f"{g}={bad}",) for g, bad in UNKNOWN_OPTION.items()]
    return combos


ints = lambda lo, hi: st.integers(lo, hi).map(str)  # noqa: E731
floats = lambda lo, hi: st.floats(lo, hi, allow_nan=False).map(lambda v: f"{v:.3g}")  # noqa: E731
int_list = lambda lo, hi, n: st.lists(st.integers(lo, hi), min_size=n, max_size=3).map(  # noqa: E731
    lambda v: "[" + ",".join(map(str, v)) + "]")
choice = lambda *options: st.sampled_from(options)  # noqa: E731
WRONG_TYPE = choice("abc", "[1,2]", "1.5", "true", "null", "{a: 1}")
# field: (values allowed, values out of range or unknown)
FIELDS = {
    "model.latent_dim": (ints(1, 12), ints(-2, 0)),
    "model.arch": (choice("mlp", "conv"), choice("rnn")),
    "model.hidden_dims": (int_list(1, 24, 0), int_list(-4, 0, 1)),
    "model.conv_channels": (int_list(1, 16, 1), choice("[]", "[0]", "[-3,4]")),
    "model.activation": (choice(*config.ACTIVATIONS), choice("swish")),
    "model.code_activation": (choice("identity", "sigmoid", "tanh"), choice("swish")),
    "model.likelihood": (choice(*config.LIKELIHOODS), choice("poisson")),
    "noise.sigma": (floats(0, 1), floats(-0.5, -0.01)),
    "noise.p": (floats(0, 1), st.one_of(floats(-0.5, -0.01), floats(1.01, 1.5))),
    "noise.clip": (choice("true", "false"), choice("maybe")),
    "penalty.rho": (floats(0.01, 0.99), st.one_of(floats(-0.2, 0), floats(1, 1.2))),
    "penalty.beta": (floats(0, 5), floats(-1, -0.01)),
    "penalty.weight": (floats(0, 0.1), floats(-0.1, -0.001)),
    "beta": (floats(0, 4), floats(-1, -0.01)),
    "beta_schedule.warmup_steps": (ints(0, 50), ints(-5, -1)),
    "beta_schedule.k": (floats(0.001, 1), floats(-0.1, 0)),
    "beta_schedule.cycles": (ints(1, 5), ints(-1, 0)),
    "beta_schedule.ratio": (floats(0.01, 1), st.one_of(floats(-0.5, 0), floats(1.01, 1.5))),
    "dataset.num_samples": (ints(24, 64), ints(-5, 0)),
    "dataset.shape": (choice("[1,4,4]", "[1,6,6]", "[3,4,4]", "[1,5,3]"), choice("[0,4,4]", "[1,4]")),
    "dataset.val_fraction": (floats(0.05, 0.4), st.one_of(floats(-0.2, 0), floats(1, 1.1))),
    "dataset.test_fraction": (floats(0, 0.4), floats(-0.2, -0.01)),
    "trainer.batch_size": (ints(1, 64), ints(-4, 0)),
    "trainer.lr": (floats(1e-4, 1e-2), choice("0", "-0.001")),
    "trainer.optimizer": (choice(*config.OPTIMIZERS), choice("rmsprop")),
    "trainer.weight_decay": (floats(0, 0.1), floats(-0.1, -0.001)),
    "trainer.grad_clip": (floats(0, 5), floats(-1, -0.01)),
    "trainer.on_nonfinite": (choice(*config.ON_NONFINITE), choice("ignore")),
    "trainer.max_skipped_batches": (ints(1, 5), ints(-1, 0)),
    "trainer.log_every": (ints(1, 10), ints(-1, 0)),
    "trainer.save_every": (ints(1, 3), ints(-1, 0)),
    "trainer.early_stopping_patience": (ints(0, 3), ints(-3, -1)),
    "trainer.early_stopping_min_delta": (floats(0, 1), floats(-1, -0.001)),
    "trainer.pretrain_epochs": (ints(0, 0), ints(-3, -1)),  # > 0 only for model=stacked_ae (test_pretraining)
    "lr_schedule.warmup_steps": (ints(0, 1), ints(-5, -1)),
    "lr_schedule.min_lr": (floats(0, 1e-4), floats(-1, -0.001)),
    "lr_schedule.step_size": (ints(1, 3), ints(-2, 0)),
    "lr_schedule.gamma": (floats(0.1, 1), st.one_of(floats(-1, 0), floats(1.01, 2))),
    "lr_schedule.factor": (floats(0.1, 0.9), st.one_of(floats(-1, 0), floats(1, 2))),
    "lr_schedule.patience": (ints(1, 3), ints(-2, 0)),
    "lr_schedule.min_delta": (floats(0, 1), floats(-1, -0.001)),
}
FIELDS["model.k"] = (ints(1, 4), choice("0", "-1", "true"))
VQ_FIELDS = {"model.num_embeddings": (ints(2, 16), ints(-1, 1)),
             "model.commitment": (floats(0, 1), floats(-1, -0.01)),
             "model.ema": (choice("true", "false"), choice("maybe")),
             "model.dead_code_steps": (ints(0, 5), ints(-3, -1))}
FIELDS.update(VQ_FIELDS)
# model=sae's preset is topk with expansion_factor 8: the fields topk reads (num_latents would need
# expansion_factor=0 too: exactly one of them is set)
SAE_FIELDS = {"model.expansion_factor": (floats(1, 4), floats(-1, -0.01)),
              "model.dead_steps": (ints(1, 5), ints(-2, 0)),
              "model.b_dec_init": (choice(*config.B_DEC_INITS), choice("median")),
              "model.normalize_decoder": (choice("true", "false"), choice("maybe")),
              "model.k_aux": (ints(1, 8), ints(-1, 0)),
              "model.aux_coefficient": (floats(0, 1), floats(-1, -0.01))}
FIELDS.update(SAE_FIELDS)
UNKNOWN_KEYS = ["model.depth", "trainer.patience", "noise.scale", "foo"]
FIXED = ["dataset.num_samples=32", "dataset.shape=[1,4,4]", "trainer.epochs=1",
         "trainer.device=cpu", "trainer.progress=false", "trainer.threads=1"]
# Every key a message may name: the schema's fields, the groups, and the keys drawn.
SCHEMA_KEYS = {f"{f.name}.{sub.name}" for f in dataclasses.fields(config.TrainConfig)
               if dataclasses.is_dataclass(f.type) for sub in dataclasses.fields(f.type)} | \
              {f"{g}=" for g in (*GROUPS, "dataset", "trainer")} | {"beta="}


def _chosen(groups: tuple[str, ...]) -> dict[str, str]:
    """The option of each group a combination ends up with (the model presets choose the noise
    and penalty defaults of the denoising and sparse AE)."""
    given = dict(g.split("=", 1) for g in groups)
    model = given.get("model", "vae")
    return {"model": model, "beta_schedule": given.get("beta_schedule", "constant"),
            "noise": given.get("noise", "gaussian" if model == "dae" else "none"),
            "penalty": given.get("penalty", "kl_sparsity" if model == "sparse_ae" else "none"),
            "lr_schedule": given.get("lr_schedule", "constant")}


def _applies(key: str, groups: tuple[str, ...]) -> bool:
    """Whether the options of `groups` read field `key` (a field they ignore is refused, so a
    valid draw only sets fields that do something)."""
    chosen, (section, _, name) = _chosen(groups), key.partition(".")
    tables = {"noise": option_fields.NOISE_FIELDS, "penalty": option_fields.PENALTY_FIELDS,
              "beta_schedule": option_fields.SCHEDULE_FIELDS, "lr_schedule": option_fields.LR_SCHEDULE_FIELDS}
    if section in tables:
        return name in tables[section].get(chosen[section], ()) and \
            (section != "beta_schedule" or chosen["model"] in BETA_KINDS)
    if key == "beta":
        return chosen["model"] in BETA_KINDS
    if key == "model.k":
        return chosen["model"] in ("iwae", "sae")
    if key in VQ_FIELDS:
        return chosen["model"] == "vqvae"
    if chosen["model"] == "sae":  # one linear encoder and decoder: only its own fields
        return key in SAE_FIELDS
    if key in SAE_FIELDS:
        return False
    return key != "model.code_activation" or chosen["model"] not in config.VARIATIONAL_KINDS


def _valid_overrides(groups: tuple[str, ...]):
    keys = [k for k in sorted(FIELDS) if _applies(k, groups)]
    return st.lists(st.sampled_from(keys).flatmap(lambda k: FIELDS[k][0].map(lambda v: f"{k}={v}")), max_size=7)



invalid_override = st.one_of(
    st.sampled_from(sorted(FIELDS)).flatmap(lambda k: FIELDS[k][1].map(lambda v: f"{k}={v}")),
    st.tuples(st.sampled_from(sorted(FIELDS)), WRONG_TYPE).map("=".join),
    st.tuples(st.sampled_from(UNKNOWN_KEYS), ints(0, 3)).map("=".join),
)
# Mostly valid values, so that about half the sets are valid and train; at most one bad value
# per set is enough to test the error (the first bad key is reported).
override_sets = st.sampled_from(_group_combinations()).flatmap(lambda groups: st.tuples(
    st.just(groups), _valid_overrides(groups), st.lists(invalid_override, max_size=1),
)).map(lambda d: (d[0], d[1] + d[2]))


@pytest.fixture(scope="module")
def composer():
    """Compose once per group combination (exceptions included), then apply field overrides to a copy."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cli.register_schemas()
    cache, parser = {}, OverridesParser.create()

    def composed(groups: tuple[str, ...]):
        if groups not in cache:
            data = [] if any(g.startswith("dataset=") for g in groups) else ["dataset=synthetic"]
            try:
                cache[groups] = compose("train", overrides=[*data, *groups])
            except Exception as err:  # noqa: BLE001 (re-raised for every draw of this combination)
                cache[groups] = err
        if isinstance(cache[groups], Exception):
            raise cache[groups]
        return copy.deepcopy(cache[groups])

    def run(groups: tuple[str, ...], fields: list[str], fixed: list[str] = FIXED):
        cfg = composed(groups)
        ConfigLoaderImpl._apply_overrides_to_config(parser.parse_overrides(fixed + fields), cfg)
        return cfg

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=cli.config_dir(), version_base="1.3"):
        yield run


def _train_or_explain(cfg, run_dir: Path):
    """What `aectl train` does after composition: (metrics, None) or (None, the one line it prints)."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from aectl.config.errors import AectlError

    try:
        settings = OmegaConf.to_object(cfg)
        config_checks.validate(settings)
        return build.train(settings, run_dir), None
    except (AectlError, HydraException, OmegaConfBaseException) as err:
        return None, cli.one_line(err)


class Hang(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int):
    """Fail a draw that hangs instead of hanging the suite (where SIGALRM exists)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def alarm(signum, frame):
        raise Hang(f"a draw ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_any_override_set_trains_or_explains_itself_in_one_line(composer):
    outcomes = {"trained": 0, "explained": 0}

    @settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(draw=override_sets)
    def check(draw):
        groups, fields = draw
        with _time_limit(30):
            metrics, line = _run_draw(composer, groups, fields)
        if line is None:
            assert metrics and all(math.isfinite(v) for v in metrics["train"].values()), (draw, metrics)
            outcomes["trained"] += 1
            return
        assert "\n" not in line and line.strip(), (draw, line)
        drawn_keys = {o.split("=", 1)[0] for o in itertools.chain(groups, fields)}
        assert any(key in line for key in SCHEMA_KEYS | drawn_keys), (draw, line)
        outcomes["explained"] += 1

    check()
    assert sum(outcomes.values()) >= 200
    assert min(outcomes.values()) >= 40, outcomes  # both kinds of draw are well represented


def _run_draw(composer, groups, fields):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = composer(groups, fields)
    except (HydraException, OmegaConfBaseException) as err:
        return None, cli.one_line(err)
    with tempfile.TemporaryDirectory() as run_dir:
        return _train_or_explain(cfg, Path(run_dir) / "run")


# The dataset group: every option with dataset fields drawn at valid values. Loading needs the
# datasets' files, so these draws stop at the checks `aectl train` runs before loading (as in
# cli.compose): a field the chosen dataset does not read is refused in one line naming it and
# what the dataset reads; with only fields it reads, the config passes.
DATASET_VALUES = {
    "dataset.root": choice("data"), "dataset.download": choice("true", "false"),
    "dataset.binarize": choice(*config.BINARIZE), "dataset.path": choice("data/rows.csv"),
    "dataset.key": choice("x"), "dataset.label_key": choice("y"), "dataset.label_column": choice("0", "-1", "label"),
    "dataset.scale": choice(*config.SCALES), "dataset.size": choice("16", "[8,12]"),
    "dataset.channels": choice("1", "3"),
    "dataset.in_memory": choice("auto", "true", "false"), "dataset.workers": ints(-1, 2),
    "dataset.val_fraction": floats(0.05, 0.4), "dataset.test_fraction": floats(0, 0.4),
    "dataset.split_seed": ints(0, 5), "dataset.limit": ints(0, 50),
    "dataset.num_samples": ints(24, 64), "dataset.shape": choice("[1,4,4]", "[3,4,4]"),
    "dataset.n_directions": ints(4, 32), "dataset.dim": ints(2, 16), "dataset.active_prob": floats(0.01, 1),
    "dataset.normalize": choice("none", "mean_squared_norm"), "dataset.chunk_rows": ints(1, 50000),
}
NEEDS_PATH = ("tensor_file", "image_folder", "activations")

_values = lambda keys: st.tuples(*[DATASET_VALUES[k].map(lambda v, k=k: f"{k}={v}") for k in keys])  # noqa: E731
# Mostly fields the dataset reads, and at most one of any dataset's, so that both outcomes are common.
dataset_draws = st.sampled_from(config.DATASETS).flatmap(lambda name: st.tuples(
    st.just(name),
    st.tuples(st.lists(st.sampled_from([f"dataset.{f}" for f in option_fields.DATASET_FIELDS[name]]), max_size=3),
              st.lists(st.sampled_from(sorted(DATASET_VALUES)), max_size=1))
    .flatmap(lambda keys: _values(list(dict.fromkeys(keys[0] + keys[1])))),
))


def test_every_dataset_field_is_drawn():
    assert {k.split(".", 1)[1] for k in DATASET_VALUES} == \
        {f.name for f in dataclasses.fields(config.DatasetConfig)} - {"name"}


def test_a_dataset_field_the_chosen_dataset_does_not_read_is_refused(composer):
    from aectl.config.errors import AectlError

    outcomes = {"refused": 0, "passed": 0}

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(draw=dataset_draws)
    def check(draw):
        name, fields = draw
        if name == "binarized_mnist":  # binary already: its binarize is refused unless none (test_data_integrity)
            fields = tuple(f for f in fields if not f.startswith("dataset.binarize="))
        required = ("dataset.path=data/rows.csv",) if name in NEEDS_PATH else ()
        overrides = [*dict.fromkeys([*required, *fields])]
        unread = [o.split("=", 1)[0] for o in overrides
                  if o.split("=", 1)[0].split(".", 1)[1] not in option_fields.DATASET_FIELDS[name]]
        cfg = config.TrainConfig()
        try:
            from omegaconf import OmegaConf

            cfg = OmegaConf.to_object(composer((f"dataset={name}",), overrides, fixed=[]))
            option_fields.drop_fields_of_switched_options(cfg, [f"dataset={name}", *overrides])
            config_checks.validate(cfg)
            option_fields.check_given_fields(cfg, [f"dataset={name}", *overrides])
        except AectlError as err:
            line = cli.one_line(err)
            assert unread, (draw, line)  # only fields it reads: nothing to refuse
            assert "\n" not in line and f"dataset={name} does not use" in line, (draw, line)
            assert any(line.startswith(f"{key}=") for key in unread), (draw, line)
            outcomes["refused"] += 1
            return
        assert not unread, (draw, "accepted fields the dataset does not read")
        outcomes["passed"] += 1

    check()
    assert min(outcomes.values()) >= 30, outcomes
