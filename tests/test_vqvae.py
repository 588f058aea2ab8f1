"""The VQ-VAE (van den Oord et al. 2017) against hand values: nearest-code quantisation, the
straight-through gradient, the commitment and codebook terms of eq. 3, the EMA codebook of
appendix A.1, the dead-code reset, codebook usage and perplexity; and its wiring through
training, `aectl eval`, the report and the Python API."""

import json
import math

import pytest
import torch

from aectl.cli import main
from aectl.models import ModelOutput, build_model, quantizer
from aectl.models.quantizer import (VectorQuantizer, VQOutput, assignment_sums, ema_update, nearest_code,
                                    straight_through)
from aectl.objectives.objective import make_objective
from tests.conftest import eval_file, read_metrics

CODES = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])


def _brute_force_nearest(z: torch.Tensor, codes: torch.Tensor) -> list[int]:
    best = []
    for row in z.tolist():
        distances = [sum((a - b) ** 2 for a, b in zip(row, code)) for code in codes.tolist()]
        best.append(distances.index(min(distances)))
    return best


def test_quantisation_picks_the_nearest_code():
    z = torch.tensor([[0.1, 0.2], [0.9, 0.1], [0.4, 0.8], [1.6, 1.4], [-3.0, 0.2], [0.6, 0.55], [1.2, 1.3]])
    expected = _brute_force_nearest(z, CODES)
    assert expected == [0, 1, 2, 3, 0, 1, 3]  # the hand-made points sit nearest these codes
    assert nearest_code(z, CODES).tolist() == expected
    vq = VectorQuantizer(4, 2, dead_code_steps=0)
    with torch.no_grad():
        vq.codebook.copy_(CODES)
    out = vq.eval()(z.view(1, 7, 2))
    assert out.indices.tolist() == [expected]
    assert torch.equal(out.z_q[0], CODES[expected])


def _tiny_vqvae(**kwargs):
    torch.manual_seed(0)
    args = dict(input_shape=[1, 8, 8], latent_dim=4, arch="mlp", hidden_dims=[16], num_embeddings=8,
                embedding_dim=2, dead_code_steps=0)
    return build_model("vqvae", **{**args, **kwargs})


def test_the_straight_through_gradient_is_the_decoders_gradient_at_z_q():
    model = _tiny_vqvae()
    x = torch.rand(5, 1, 8, 8)
    z_e = model.encode_continuous(x)
    z_e.retain_grad()
    vq = model.quantizer.quantize(z_e)
    z = straight_through(z_e, vq.z_q)
    z.retain_grad()
    assert torch.allclose(z, vq.z_q)  # the forward pass sees the codes
    (model.decode(z.flatten(1)) - x).square().sum().backward()
    assert z_e.grad.abs().sum() > 0
    assert torch.equal(z_e.grad, z.grad)  # copied unchanged from the decoder's input


def test_the_models_encoder_learns_through_the_quantiser():
    """With β_c = 0 and an EMA codebook the only path from the loss to the encoder is the
    straight-through one: the encoder's gradients are non-zero only if forward uses it."""
    model = _tiny_vqvae(ema=True, commitment=0.0)
    x = torch.rand(5, 1, 8, 8)
    objective = make_objective("vqvae", "gaussian", 0.5, {"kind": "none"}, commitment=0.0, ema=True)
    loss, _ = objective(model(x), x, 0.0)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


Z_E = torch.tensor([[[0.5, 1.0], [2.0, -1.0]], [[0.0, 0.25], [1.0, 1.0]]])  # (N=2, P=2, D=2)
Z_Q = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 0.0], [1.0, 0.5]]])
X = torch.tensor([[0.0, 1.0, 0.5], [1.0, 1.0, 0.0]]).view(2, 1, 1, 3)
RECON = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 0.25]]).view(2, 1, 1, 3)


def _sq_per_example() -> list[float]:
    return [sum((a - b) ** 2 for a, b in zip(e, q)) for e, q in
            zip(Z_E.flatten(1).tolist(), Z_Q.flatten(1).tolist())]


@pytest.mark.parametrize("ema", [False, True])
@pytest.mark.parametrize("beta_c", [0.25, 2.0])
def test_the_loss_is_recon_plus_weighted_commitment_plus_codebook_by_hand(ema, beta_c):
    sigma = 0.5
    recon = sum(sum((a - b) ** 2 for a, b in zip(x, r)) / (2 * sigma ** 2) + 1.5 * math.log(2 * math.pi * sigma ** 2)
                for x, r in zip(X.view(2, -1).tolist(), RECON.view(2, -1).tolist())) / 2
    sq = sum(_sq_per_example()) / 2  # summed over positions and dims, averaged over the batch
    z_e, z_q = Z_E.clone().requires_grad_(), Z_Q.clone().requires_grad_()
    out = ModelOutput(RECON, z_q.flatten(1), vq=VQOutput(z_e, z_q, torch.tensor([[1, 2], [0, 3]]), 4))
    objective = make_objective("vqvae", "gaussian", sigma, {"kind": "none"}, commitment=beta_c, ema=ema)
    loss, stacked = objective(out, X, 1.0)
    assert loss.item() == pytest.approx(recon + beta_c * sq + (0 if ema else sq), rel=1e-6)
    named = objective.named(stacked.tolist(), 1.0)
    assert named["commitment"] == pytest.approx(beta_c * sq, rel=1e-6)
    assert ("codebook" in named) == (not ema)
    if not ema:
        assert named["codebook"] == pytest.approx(sq, rel=1e-6)
    assert named["batch_usage"] == pytest.approx(1.0) and named["batch_perplexity"] == pytest.approx(4.0)
    loss.backward()
    # sg[·] in the right places: β_c·‖z_e − sg[e]‖² moves only z_e, ‖sg[z_e] − e‖² only e
    assert torch.allclose(z_e.grad, beta_c * 2 * (Z_E - Z_Q) / 2)
    if ema:
        assert z_q.grad is None  # the EMA keeps the codebook: no loss term reaches it
    else:
        assert torch.allclose(z_q.grad, -2 * (Z_E - Z_Q) / 2)


def test_the_ema_update_against_a_hand_computation():
    n0, m0 = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    z = torch.tensor([[1.0, 1.0], [3.0, 1.0], [0.0, 4.0]])
    indices, decay, eps = torch.tensor([0, 0, 1]), 0.9, 0.1
    n, m, codebook = ema_update(n0, m0, *assignment_sums(z, indices, 3), decay, eps)
    counts, sums = [2, 1, 0], [[4.0, 2.0], [0.0, 4.0], [0.0, 0.0]]
    n_hand = [decay * a + (1 - decay) * c for a, c in zip(n0.tolist(), counts)]
    m_hand = [[decay * a + (1 - decay) * s for a, s in zip(row, srow)] for row, srow in zip(m0.tolist(), sums)]
    total = sum(n_hand)
    smoothed = [(v + eps) / (total + 3 * eps) * total for v in n_hand]  # Laplace smoothing (appendix A.1)
    e_hand = [[v / s for v in row] for row, s in zip(m_hand, smoothed)]
    assert n.tolist() == pytest.approx(n_hand)
    assert torch.allclose(m, torch.tensor(m_hand))
    assert torch.allclose(codebook, torch.tensor(e_hand))


def test_the_ema_quantiser_updates_its_codebook_in_training_only():
    vq = VectorQuantizer(4, 2, ema=True, ema_decay=0.8, dead_code_steps=0)
    with torch.no_grad():
        vq.codebook.copy_(CODES)
        vq.embed_sum.copy_(CODES)
    z = torch.tensor([[[0.2, 0.1], [0.8, -0.1], [1.9, 2.3]]])
    vq.eval()(z)
    assert torch.equal(vq.codebook, CODES)  # eval: a look-up only
    n, m, expected = ema_update(torch.ones(4), CODES.clone(), *assignment_sums(z[0], torch.tensor([0, 1, 3]), 4),
                                0.8, vq.eps)
    vq.train()(z)
    assert torch.allclose(vq.codebook, expected) and torch.allclose(vq.cluster_size, n)


@pytest.mark.parametrize("ema", [False, True])
def test_codes_unused_for_dead_code_steps_are_reset_to_encoder_outputs(ema):
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, ema=ema, ema_decay=0.5, dead_code_steps=2).train()
    with torch.no_grad():
        vq.codebook.copy_(CODES)
        if ema:
            vq.embed_sum.copy_(CODES)
    z = torch.tensor([[[0.1, -0.1], [-0.2, 0.1], [0.05, 0.0]]])  # every row nearest code 0
    vq(z)
    assert vq.resets.item() == 0 and vq.unused_steps.tolist() == [0, 1, 1, 1]  # unused once: kept
    vq(z)
    assert vq.resets.item() == 3 and vq.unused_steps.tolist() == [0, 0, 0, 0]
    rows = z[0].tolist()
    assert all(code in rows for code in vq.codebook[1:].tolist())  # each reset code is an encoder output
    if ema:  # the new code is its own running mean
        assert torch.equal(vq.embed_sum[1:], vq.codebook[1:]) and vq.cluster_size[1:].tolist() == [1.0] * 3


def test_no_dead_code_reset_when_off():
    vq = VectorQuantizer(4, 2, dead_code_steps=0).train()
    with torch.no_grad():
        vq.codebook.copy_(CODES)
    for _ in range(5):
        vq(torch.zeros(1, 3, 2))
    assert torch.equal(vq.codebook, CODES) and vq.resets.item() == 0


def test_usage_and_perplexity_by_hand():
    counts = quantizer.code_counts(torch.tensor([[0, 0, 2], [0, 5, 5]]), 8)
    assert counts.tolist() == [3, 0, 1, 0, 0, 2, 0, 0]
    assert quantizer.code_usage(counts).item() == pytest.approx(3 / 8)
    p = [3 / 6, 1 / 6, 2 / 6]
    assert quantizer.code_perplexity(counts).item() == pytest.approx(math.exp(-sum(q * math.log(q) for q in p)))
    assert quantizer.code_perplexity(torch.tensor([5, 0, 0])).item() == pytest.approx(1.0)
    assert quantizer.code_perplexity(torch.tensor([2, 2, 2, 2])).item() == pytest.approx(4.0)


def test_split_metrics_count_every_code_of_the_split():
    from aectl.datasets.noise import Corruption
    from aectl.evaluation.validation import evaluate_split

    model = _tiny_vqvae(num_embeddings=16)
    x = torch.rand(40, 1, 8, 8)
    objective = make_objective("vqvae", "gaussian", 0.5, {"kind": "none"})
    values = evaluate_split(model, [x[:15], x[15:]], objective, Corruption("none"), 1.0, (0.0, 1.0), False)
    with torch.no_grad():
        z_e = model.encode_continuous(x)
    chosen = _brute_force_nearest(z_e.reshape(-1, 2), model.quantizer.codebook.detach())
    counts = [chosen.count(k) for k in range(16)]
    assert values["codebook_usage"] == pytest.approx(sum(c > 0 for c in counts) / 16)
    p = [c / len(chosen) for c in counts if c]
    assert values["perplexity"] == pytest.approx(math.exp(-sum(q * math.log(q) for q in p)), rel=1e-6)


@pytest.mark.parametrize("override, allowed", [
    ("model.num_embeddings=1", "≥ 2"),
    ("model.embedding_dim=0", "≥ 1"),
    ("model.commitment=-0.1", "≥ 0"),
    ("model.ema_decay=1.0", "(0, 1)"),
    ("model.dead_code_steps=-1", "≥ 0"),
    ("model.latent_dim=12", "unset for model=vqvae model.arch=conv"),
    ("model.hidden_dims=[64]", "[] for model=vqvae model.arch=conv"),
    ("model.ema_decay=0.9", "unset unless model.ema=true"),
    ("penalty=l1", "none for model=vqvae"),
])
def test_bad_vq_values_end_in_one_line(capsys, override, allowed):
    rc = main(["train", "model=vqvae", override, "trainer.epochs=1", "trainer.progress=false"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and allowed in lines[0] and override.split("=")[0].split("/")[-1] in lines[0]


@pytest.mark.parametrize("overrides, allowed", [
    (["model=vqvae", "model.arch=mlp", "model.latent_dim=10", "model.embedding_dim=4"], "a multiple of"),
    (["model=ae", "model.num_embeddings=64"], "only model=vqvae has a codebook"),
])
def test_grid_and_kind_mismatches_end_in_one_line(capsys, overrides, allowed):
    rc = main(["train", *overrides, "trainer.epochs=1", "trainer.progress=false"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and allowed in lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("vq") / "run"
    assert main(["train", "model=vqvae", "model.num_embeddings=16", "model.dead_code_steps=5", "trainer.epochs=2",
                 f"hydra.run.dir={run_dir}", "trainer.progress=false", "trainer.device=cpu"]) == 0
    return run_dir


def test_training_logs_the_vq_terms(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained)).Reload()
    tags = set(events.Tags()["scalars"])
    for name in ("commitment", "codebook", "batch_usage", "batch_perplexity"):
        assert f"train/{name}" in tags and f"val/{name}" in tags
    assert {"val/codebook_usage", "val/perplexity", "val/psnr"} <= tags
    val = read_metrics(trained)["val"]
    assert val["loss"] == pytest.approx(val["recon"] + val["commitment"] + val["codebook"], rel=1e-5)
    assert 0 < val["codebook_usage"] <= 1 and 1 <= val["perplexity"] <= 16
    ckpt = torch.load(trained / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["model"]["kwargs"]["num_embeddings"] == 16 and ckpt["state_dict"]["quantizer.resets"] > 0


def test_eval_reports_the_vq_metrics_and_says_it_has_no_samples(trained, capsys):
    assert main(["eval", f"ckpt={trained}", "progress=false", "projector=false"]) == 0
    out = capsys.readouterr().out
    result = json.loads(eval_file(trained).read_text())
    for name in ("codebook_usage", "perplexity", "commitment", "codebook", "psnr"):
        assert name in result["metrics"]
    assert "learned prior" in result["samples"] and "no samples" in out
    assert "samples.png" not in result["pictures"]
    test = read_metrics(trained)["test"]
    assert result["metrics"]["codebook_usage"] == pytest.approx(test["codebook_usage"])


def test_the_api_encodes_to_codes_reconstructs_and_refuses_to_sample(trained):
    import aectl
    from aectl.config.errors import AectlError

    model = aectl.load(trained)
    x = torch.rand(3, 1, 8, 8)
    z = model.encode(x)
    codebook = model.module.quantizer.codebook
    idx = model.indices(x)
    assert torch.equal(z.view(3, -1, codebook.shape[1]), codebook[idx])  # encode gives the codes themselves
    assert model.reconstruct(x).shape == x.shape
    with pytest.raises(AectlError, match="learned prior"):
        model.sample(4)


def test_report_ranks_the_loss_only_within_the_same_objective(tmp_path):
    from aectl.report import ranking
    from tests.test_report import fake_job, metrics_of

    for i, (kind, loss) in enumerate(zip(["ae", "ae", "vqvae", "vqvae"], [2.0, 3.0, 5.0, 4.0])):
        job = fake_job(tmp_path / f"j{i}", [f"model={kind}", f"trainer.seed={i}"], metrics_of(loss, 20.0 + i),
                       kind=kind, num=i)
        job.joinpath("metrics.json").write_text(json.dumps({**metrics_of(loss, 20.0 + i)}))
    report = ranking.build_report([tmp_path])
    assert report.best["val/loss"] == {0, 3}  # the lower loss of the AEs and of the VQ-VAEs
    assert report.best["val/psnr"] == {3}  # a score of the reconstruction: one ranking

