"""Greedy layer-wise pretraining of the stacked AE (aectl.training.pretraining): each stage AE learns to
reconstruct its own input, the encoder after pretraining holds the stage weights (and the
decoder the unrolled stage decoders), every stage runs, a stop in stage 2 resumes in stage 2,
and bad values end in one line."""

import signal

import pytest
import torch

from aectl.cli import main
from aectl.config import TrainerConfig
from aectl.datasets.noise import Corruption
from aectl.models import build_model
from aectl.runs import signals
from aectl.runs.checkpoint import load_checkpoint
from aectl.training import pretraining
from tests.conftest import read_metrics

STACKED = ("model=stacked_ae", "model.hidden_dims=[16,8]", "model.latent_dim=4", "trainer.images_every=100")
STEPS_PER_EPOCH = 12  # 1437 training digits in batches of 128


class Digits:
    """The few members of DataSplits the stage loop reads."""

    def __init__(self, x):
        self.train = x

    def batches(self, x_all, batch_size, shuffle=False):
        order = torch.randperm(len(x_all)) if shuffle else torch.arange(len(x_all))
        for start in range(0, len(x_all), batch_size):
            yield x_all[order[start:start + batch_size]]


def tiny_greedy(tmp_path, noise=Corruption(), epochs=3):
    torch.manual_seed(0)
    model = build_model("stacked_ae", input_shape=(1, 8, 8), latent_dim=4, hidden_dims=[16, 8],
                        likelihood="gaussian", output_activation="sigmoid")
    x = torch.rand(256, 1, 8, 8).round() * torch.rand(256, 1, 8, 8)  # sparse grey pixels in [0, 1]
    settings = TrainerConfig(pretrain_epochs=epochs, batch_size=32, lr=1e-2)
    return pretraining.Greedy(model, Digits(x), noise, settings, tmp_path, None, {}), x


def squared_error(model, decoder, h, stage) -> float:
    """Mean squared error of the stage AE's reconstruction of its clean input h."""
    layer, act = pretraining.encoder_layers(model)[stage - 1]
    out_act = torch.sigmoid if stage == 1 else torch.relu  # the model's output / hidden activation
    with torch.no_grad():
        return (out_act(decoder(act(layer(h)))) - h).square().mean().item()


@pytest.mark.parametrize("noise", [Corruption(), Corruption("masking", p=0.3)], ids=["ae", "dae"])
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_the_stage_ae_reconstructs_its_own_input_better_after_its_training(tmp_path, stage, noise):
    greedy, x = tiny_greedy(tmp_path, noise, epochs=15)
    lower = [layer.weight.clone() for layer, _ in pretraining.encoder_layers(greedy.model)[:stage - 1]]
    h = pretraining.stage_input(greedy.model, x, stage)
    assert h.shape[1] == pretraining.encoder_layers(greedy.model)[stage - 1][0].in_features
    decoder, optimizer = greedy.stage_parts(stage)
    before = squared_error(greedy.model, decoder, h, stage)
    for epoch in range(greedy.settings.pretrain_epochs):
        greedy.train_epoch(stage, epoch, decoder, optimizer, None)
    after = squared_error(greedy.model, decoder, h, stage)
    assert after < 0.7 * before, (before, after)
    # the layers below are frozen: the stage trains only its own layer and decoder
    assert all(torch.equal(w, layer.weight) for w, (layer, _) in
               zip(lower, pretraining.encoder_layers(greedy.model)))


def test_stage_1_reconstructs_the_data_with_the_models_likelihood_deeper_ones_the_codes(tmp_path):
    greedy, x = tiny_greedy(tmp_path)
    model = greedy.model
    decoder, _ = greedy.stage_parts(1)
    flat = x.flatten(1)
    layer, act = pretraining.encoder_layers(model)[0]
    by_hand = (torch.sigmoid(decoder(act(layer(flat)))) - flat).square().sum(1).mean() / (2 * model.sigma ** 2)
    from aectl.objectives.losses import gaussian_log_norm
    assert pretraining.stage_loss(model, decoder, flat, flat, 1).item() == pytest.approx(
        (by_hand + gaussian_log_norm(64, model.sigma)).item(), rel=1e-5)
    h1 = act(layer(flat)).detach()
    decoder2, _ = greedy.stage_parts(2)
    layer2, act2 = pretraining.encoder_layers(model)[1]
    by_hand = (torch.relu(decoder2(act2(layer2(h1)))) - h1).square().mean()
    assert pretraining.stage_loss(model, decoder2, h1, h1, 2).item() == pytest.approx(by_hand.item(), rel=1e-5)


@pytest.mark.parametrize("stage", [1, 2])
def test_the_noise_corrupts_the_stage_input_computed_on_the_clean_data(tmp_path, monkeypatch, stage):
    greedy, x = tiny_greedy(tmp_path, Corruption("masking", p=0.3), epochs=1)
    seen, loss = [], pretraining.stage_loss
    monkeypatch.setattr(pretraining, "stage_loss", lambda m, d, h, h_in, k: seen.append((h, h_in)) or
                        loss(m, d, h, h_in, k))
    decoder, optimizer = greedy.stage_parts(stage)
    greedy.train_epoch(stage, 0, decoder, optimizer, None)
    h, h_in = (torch.cat(parts) for parts in zip(*seen))
    clean = pretraining.stage_input(greedy.model, x, stage)  # the clean codes, in some batch order
    assert sorted(map(tuple, h.tolist())) == sorted(map(tuple, clean.tolist()))
    assert bool(((h_in == 0) | (h_in == h)).all())  # masking: an entry is kept or zeroed
    dropped = ((h_in == 0) & (h != 0)).sum() / (h != 0).sum()
    assert 0.25 < float(dropped) < 0.35  # p = 0.3 of the stage's own input


def recording_stages(monkeypatch):
    """(layer weight, layer bias, decoder weight, decoder bias) of each stage when it ends, and the
    model's state_dict when fine-tuning starts."""
    from aectl.training import trainer

    stages, at_fit = {}, {}
    unroll, fit = pretraining.Greedy.unroll, trainer.fit

    def recorded_unroll(self, stage, decoder):
        layer, _ = pretraining.encoder_layers(self.model)[stage - 1]
        stages[stage] = [t.detach().clone() for t in (layer.weight, layer.bias, decoder.weight, decoder.bias)]
        return unroll(self, stage, decoder)

    def recorded_fit(model, *args, **kwargs):
        at_fit.update({k: v.clone() for k, v in model.state_dict().items()})
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(pretraining.Greedy, "unroll", recorded_unroll)
    monkeypatch.setattr(trainer, "fit", recorded_fit)
    return stages, at_fit


def test_after_pretraining_the_encoder_is_the_stage_layers_and_the_decoder_their_decoders(
        train_run, monkeypatch):
    stages, at_fit = recording_stages(monkeypatch)
    run = train_run(*STACKED, "trainer.pretrain_epochs=1", "trainer.epochs=1")
    assert sorted(stages) == [1, 2, 3]  # two hidden layers and the code layer
    encoder = ["encoder.body.1", "encoder.body.3", "code.0"]  # Linear layers, bottom to top
    mirrored = ["decoder.body.4", "decoder.body.2", "decoder.body.0"]  # stage k's mirror, output first
    for k in (1, 2, 3):
        w, b, dw, db = stages[k]
        assert torch.equal(at_fit[f"{encoder[k - 1]}.weight"], w) and torch.equal(at_fit[f"{encoder[k - 1]}.bias"], b)
        assert torch.equal(at_fit[f"{mirrored[k - 1]}.weight"], dw)
        assert torch.equal(at_fit[f"{mirrored[k - 1]}.bias"], db)
    # every stage trained: no layer keeps the weights the run starts from
    torch.manual_seed(0)
    init = build_model(**{"kind": "stacked_ae", **load_checkpoint(run)["model"]["kwargs"]}).state_dict()
    for name in [*encoder, *mirrored]:
        assert not torch.equal(at_fit[f"{name}.weight"], init[f"{name}.weight"]), name
    metrics = read_metrics(run)
    assert metrics["pretrain"]["stage_epochs"] == [1, 1, 1] and metrics["epochs"] == 1
    assert metrics["steps"] == STEPS_PER_EPOCH  # the fine-tuning steps; pretraining's come on top


def test_each_stage_logs_its_loss_under_its_own_prefix_and_the_name_of_its_units(train_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train_run(*STACKED, "trainer.pretrain_epochs=2", "trainer.epochs=1")
    events = EventAccumulator(str(run)).Reload()
    # stage 1: the likelihood's −log p(x|·) summed over the 64 pixels; deeper: per-element MSE of codes
    names = {1: "recon", 2: "mse", 3: "mse"}
    assert {tag for tag in events.Tags()["scalars"] if tag.startswith("pretrain/")} == \
        {f"pretrain/stage{k}/{name}" for k, name in names.items()}
    for k, name in names.items():
        losses = [e.value for e in events.Scalars(f"pretrain/stage{k}/{name}")]
        assert [e.step for e in events.Scalars(f"pretrain/stage{k}/{name}")] == [1, 2]
        assert losses[1] < losses[0]
    record = read_metrics(run)["pretrain"]
    assert record["stage_metric"] == ["recon", "mse", "mse"]
    assert record["stage_loss"][2] == pytest.approx(losses[1])


def counting_stage_steps(monkeypatch, stop_at: int | None = None) -> dict:
    """The optimizer steps taken in each stage; with `stop_at`, SIGINT once that many are done."""
    counts, loss = {}, pretraining.stage_loss

    def counted(model, decoder, h, h_in, stage):
        counts[stage] = counts.get(stage, 0) + 1
        return loss(model, decoder, h, h_in, stage)

    monkeypatch.setattr(pretraining, "stage_loss", counted)
    if stop_at is not None:
        monkeypatch.setattr(signals.StopSignals, "__call__",
                            lambda self: signal.SIGINT if sum(counts.values()) >= stop_at else 0)
    return counts


def test_a_stop_in_stage_2_resumes_in_stage_2_to_the_uninterrupted_weights(train_run, monkeypatch):
    args = (*STACKED, "trainer.pretrain_epochs=2", "trainer.epochs=1")
    reference = train_run(*args)
    counting_stage_steps(monkeypatch, stop_at=2 * STEPS_PER_EPOCH + STEPS_PER_EPOCH + 5)  # stage 2, epoch 2
    run = train_run(*args, expect_rc=130)
    monkeypatch.undo()
    state = load_checkpoint(run)["pretrain"]
    assert (state["stage"], state["epoch"], state["done"]) == (2, 1, False)
    counts = counting_stage_steps(monkeypatch)
    assert main(["train", f"trainer.resume={run}", f"hydra.run.dir={run}", "trainer.progress=false",
                 "trainer.device=cpu"]) == 0
    assert counts == {2: STEPS_PER_EPOCH, 3: 2 * STEPS_PER_EPOCH}  # stage 1 not redone; stage 2's 2nd epoch
    a, b = load_checkpoint(run)["state_dict"], load_checkpoint(reference)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert read_metrics(run)["pretrain"]["stage_epochs"] == [2, 2, 2]


def test_a_finished_pretraining_is_not_redone_when_fine_tuning_resumes(train_run, monkeypatch):
    first = train_run(*STACKED, "trainer.pretrain_epochs=1", "trainer.epochs=1")
    counts = counting_stage_steps(monkeypatch)
    resumed = train_run(f"trainer.resume={first}", "trainer.epochs=2")
    assert counts == {}
    assert read_metrics(resumed)["epochs"] == 2 and read_metrics(resumed)["pretrain"]["stage_epochs"] == [1, 1, 1]


@pytest.mark.parametrize("overrides, expected", [
    (["model=stacked_ae", "trainer.pretrain_epochs=-1"], ["trainer.pretrain_epochs=-1", "≥ 0"]),
    (["model=vae", "trainer.pretrain_epochs=2"], ["trainer.pretrain_epochs=2", "model=vae", "stacked_ae"]),
    (["model=stacked_ae", "model.arch=conv", "trainer.pretrain_epochs=1"],
     ["trainer.pretrain_epochs=1", "model.arch=conv", "mlp"]),
])
def test_bad_pretraining_values_end_in_one_line(capsys, overrides, expected):
    rc = main(["train", *overrides, "trainer.epochs=1", "trainer.progress=false", "trainer.device=cpu"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert all(fragment in lines[0] for fragment in expected), lines[0]
