"""Greedy layer-wise pretraining of the stacked (denoising) AE (trainer.pretrain_epochs > 0).

Each encoder Linear layer, bottom to top (the hidden layers, then the code layer), is trained
as a shallow AE on the codes of the frozen layers below it (Bengio et al. 2007, §2): the stage-k
input h_{k-1} is computed on the clean input, the noise is applied to that stage's own input
(Vincent et al. 2010, §3.5: x̃ → h_{k-1}(x) → corrupt → layer k), and a fresh Linear decoder
reconstructs h_{k-1}. Stage 1 reconstructs the data with the model's likelihood and output
activation; deeper stages reconstruct the (post-activation) codes through the same hidden
activation, with mean squared error. After its stage, the decoder's weights initialise the
mirrored decoder layer of the full net (stacked-AE unrolling, Hinton & Salakhutdinov 2006);
fine-tuning (aectl.training.trainer.fit) then trains the whole net end to end for trainer.epochs.

Each stage epoch ends with checkpoints/last.pt holding the full model and a `pretrain` entry
(stage, epoch in stage, the stage decoder and optimizer); a resume continues that stage.
"""

import dataclasses
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aectl.datasets.noise import Corruption
from aectl.objectives.losses import reconstruction_batch_mean
from aectl.runs.checkpoint import save_checkpoint
from aectl.runs.signals import Interrupted
from aectl.training.optim import epoch_seed, make_optimizer

log = logging.getLogger(__name__)
STAGE_SEED_OFFSET = 10_000  # stage k's epoch e is seeded as epoch 10000·k + e: apart from fine-tuning's


def encoder_layers(model: nn.Module) -> list[tuple[nn.Linear, nn.Module]]:
    """(Linear, the activation after it) of each encoder layer, bottom to top, code layer last."""
    body = list(model.encoder.body)
    pairs = [(m, body[i + 1]) for i, m in enumerate(body) if isinstance(m, nn.Linear)]
    return [*pairs, (model.code[0], model.code[1])]


def decoder_linears(model: nn.Module) -> list[nn.Linear]:
    """The full decoder's Linear layers, from the code to the output."""
    return [m for m in model.decoder.body if isinstance(m, nn.Linear)]


def stage_input(model: nn.Module, x: torch.Tensor, stage: int) -> torch.Tensor:
    """h_{stage-1}: x through the frozen encoder layers below `stage` (1-based), on the clean x."""
    h = x.flatten(1)
    with torch.no_grad():
        for layer, act in encoder_layers(model)[:stage - 1]:
            h = act(layer(h))
    return h


def stage_noise(corrupt: Corruption, h: torch.Tensor, stage: int) -> Corruption:
    """The noise of a stage's input: the data's noise at stage 1; deeper, the same kind on codes,
    whose range is not the data's (gaussian unclipped, salt and pepper at the batch's min/max)."""
    if stage == 1 or not corrupt.noisy:
        return corrupt
    return dataclasses.replace(corrupt, clip=False, v_min=h.min().item(), v_max=h.max().item())


def stage_metric(stage: int) -> str:
    """The name of stage `stage`'s loss, in its units (`stage_loss`): stage 1's is `recon`, the
    model's −log p(x|·) summed over features as training's `train/recon`; deeper stages' is `mse`,
    the per-element squared error of the codes, as the metrics' `mse`."""
    return "recon" if stage == 1 else "mse"


def stage_loss(model: nn.Module, decoder: nn.Linear, h: torch.Tensor, h_in: torch.Tensor, stage: int) -> torch.Tensor:
    """The stage AE's loss of reconstructing its clean input h from the (noisy) h_in (`stage_metric`
    names it): a batch mean."""
    layer, act = encoder_layers(model)[stage - 1]
    out = decoder(act(layer(h_in)))
    if stage == 1:  # the data: the model's likelihood and output activation (logits for Bernoulli)
        return reconstruction_batch_mean(model.output_activation(out), h, model.likelihood, model.sigma)
    below_act = encoder_layers(model)[stage - 2][1]  # h lies in the range of the activation below
    return F.mse_loss(below_act(out), h)


class Greedy:
    """The stage loop of one run: trains, logs and checkpoints each stage in turn."""

    def __init__(self, model, data, corrupt, settings, run_dir: Path, tracker, meta: dict, is_main: bool = True):
        self.model, self.data, self.corrupt, self.settings = model, data, corrupt, settings
        self.run_dir, self.tracker, self.meta, self.is_main = Path(run_dir), tracker, meta, is_main
        self.n_stages = len(encoder_layers(model))
        self.record = {"stages": self.n_stages, "epochs_per_stage": settings.pretrain_epochs,
                       "stage_epochs": [0] * self.n_stages, "stage_loss": [None] * self.n_stages,
                       "stage_metric": [stage_metric(k) for k in range(1, self.n_stages + 1)],
                       "train_time_s": 0.0}

    def run(self, state: dict | None, stop_requested=None) -> dict:
        """Every stage from `state` (a checkpoint's `pretrain` entry) on; returns the record."""
        start, self.start_time = (state["stage"] if state else 1), time.perf_counter()
        if state:
            self.record.update({k: state[k] for k in self.record if k in state})
        for stage in range(start, self.n_stages + 1):
            self.train_stage(stage, state if state and stage == state["stage"] else None, stop_requested)
        return {**self.record, "train_time_s": round(self.elapsed(), 3), "done": True}

    def elapsed(self) -> float:
        return self.record["train_time_s"] + time.perf_counter() - self.start_time

    def stage_parts(self, stage: int) -> tuple[nn.Linear, torch.optim.Optimizer]:
        """A fresh stage decoder (layer k's output → its input) and the optimizer of layer k and
        that decoder only: the layers below stay frozen."""
        s, (layer, _) = self.settings, encoder_layers(self.model)[stage - 1]
        decoder = nn.Linear(layer.out_features, layer.in_features).to(layer.weight.device)
        return decoder, make_optimizer(s.optimizer, [*layer.parameters(), *decoder.parameters()], s.lr,
                                       s.weight_decay)

    def train_stage(self, stage: int, state: dict | None, stop_requested) -> None:
        s, (decoder, optimizer) = self.settings, self.stage_parts(stage)
        first = 0
        if state:
            decoder.load_state_dict(state["decoder"])
            optimizer.load_state_dict(state["optimizer"])
            first = state["epoch"]
            log.info("resuming pretraining in stage %d of %d after epoch %d", stage, self.n_stages, first)
        else:
            self.checkpoint(stage, 0, decoder, optimizer)  # a stop in its first epoch resumes here
        for epoch in range(first, s.pretrain_epochs):
            loss, signum = self.train_epoch(stage, epoch, decoder, optimizer, stop_requested)
            if signum:  # the partial epoch is trained again (same seed) on resume
                log.info("stopped in pretraining stage %d/%d, epoch %d: last.pt holds the stage after %d "
                         "epochs; a resume trains this epoch again", stage, self.n_stages, epoch + 1, epoch)
                raise Interrupted(signum, 0, self.run_dir / "checkpoints" / "last.pt")
            self.record["stage_epochs"][stage - 1], self.record["stage_loss"][stage - 1] = epoch + 1, loss
            self.tracker.scalar(f"pretrain/stage{stage}/{stage_metric(stage)}", loss, epoch + 1)
            log.info("pretraining stage %d/%d epoch %d/%d: %s %.5g", stage, self.n_stages, epoch + 1,
                     s.pretrain_epochs, stage_metric(stage), loss)
            self.checkpoint(stage, epoch + 1, decoder, optimizer)
        self.unroll(stage, decoder)
        self.tracker.flush()

    def train_epoch(self, stage: int, epoch: int, decoder, optimizer, stop_requested) -> tuple[float, int]:
        """One pass over data.train for the stage AE; (mean loss, signal number or 0)."""
        torch.manual_seed(epoch_seed(self.settings.seed, STAGE_SEED_OFFSET * stage + epoch))
        total, batches = torch.zeros((), device=decoder.weight.device), 0
        for x in self.data.batches(self.data.train, self.settings.batch_size, shuffle=True):
            h = stage_input(self.model, x, stage)
            loss = stage_loss(self.model, decoder, h, stage_noise(self.corrupt, h, stage)(h), stage)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.detach(), batches + 1
            if stop_requested is not None and (signum := stop_requested()):
                return float("nan"), signum
        return (total / batches).item(), 0

    def unroll(self, stage: int, decoder: nn.Linear) -> None:
        """The stage decoder initialises the full decoder's mirrored layer (Hinton & Salakhutdinov
        2006): stage k's decoder is the k-th Linear from the output, when the shapes mirror."""
        mirror = decoder_linears(self.model)[self.n_stages - stage]
        if mirror.weight.shape == decoder.weight.shape:
            with torch.no_grad():
                mirror.weight.copy_(decoder.weight)
                mirror.bias.copy_(decoder.bias)

    def checkpoint(self, stage: int, epoch: int, decoder, optimizer) -> None:
        if not self.is_main:
            return
        save_checkpoint(self.run_dir / "checkpoints" / "last.pt", {
            **self.meta, "state_dict": self.model.state_dict(), "optimizer": {}, "step": 0, "epoch": 0, "batch": 0,
            "best_val_loss": float("inf"),
            "pretrain": {**self.record, "train_time_s": round(self.elapsed(), 3), "done": False, "stage": stage,
                         "epoch": epoch, "decoder": decoder.state_dict(), "optimizer": optimizer.state_dict()}})


def pretrain(built, config, run_dir: Path, tracker, resume: dict | None, stop_requested=None,
             is_main: bool = True) -> dict | None:
    """Run (or finish) greedy pretraining when the config asks for it; returns the checkpoint
    fine-tuning resumes from (None: it starts fresh on the pretrained weights). The record goes
    into built.meta, hence into every later checkpoint and metrics.json."""
    if not config.trainer.pretrain_epochs:
        return resume
    state = resume.get("pretrain") if resume is not None else None
    if state is not None and state.get("done"):  # a fine-tuning checkpoint: pretraining is behind it
        built.meta["pretrain"] = state
        return resume
    if resume is not None and state is None:
        return resume  # fine-tuning had begun (never: pretraining writes its entry first)
    greedy = Greedy(built.model, built.data, built.corrupt, config.trainer, run_dir, tracker, built.meta, is_main)
    built.model.train()
    built.meta["pretrain"] = greedy.run(state, stop_requested)
    return None
