"""Break each piece of the math by hand, run the tests that guard it, and report which test
went red. A mutant that no test catches is a hole in the suite.

    .venv/bin/python devtools/mutation_check.py            # every mutant (a few minutes)
    .venv/bin/python devtools/mutation_check.py beta kl     # the mutants whose name contains a word

Each mutant replaces one exact snippet of one file (it must occur exactly once), runs the named
test files with -x, and restores the file, also on Ctrl-C. Not part of the test suite: it runs
the suite many times over. It edits the tree it lives in: run it in a copy while you keep
working (`cp -r` the checkout without .venv, then run this copy's script with your venv's python).
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NO_OPTUNA_TEST = "tests/test_cli.py::test_no_plugin_warnings_without_the_optuna_extra"
PIPELINE_TEST = "tests/test_reliability.py::test_ctrl_c_with_a_dead_pipe_reader_saves_and_says_how_to_resume"

# The torchrun equivalence tests (2 ranks against one process) that guard the ranks' draws and sums.
_DDP_VAE = "tests/test_scaling.py::test_torchrun_vae_matches_one_process"
_DDP_DRAWS = "tests/test_scaling.py::test_standard_normal_gives_each_rank_its_rows_of_the_global_draw"
_DDP_VQ = "tests/test_scaling.py::test_torchrun_vqvae_matches_one_process"

# name: (file, original snippet, broken snippet, test files (or test ids) that must catch it)
MUTANTS = {
    "beta ignored": ("aectl/objectives/objective.py", "loss = loss + beta * kl", "loss = loss + kl",
                     ["tests/test_objective.py"]),
    "sparsity weight dropped": ("aectl/objectives/objective.py", "penalty = self.penalty_beta * losses.kl_sparsity",
                                "penalty = losses.kl_sparsity", ["tests/test_objective.py"]),
    "l1 weight dropped": ("aectl/objectives/objective.py", "penalty = self.l1_weight * losses.l1_activity",
                          "penalty = losses.l1_activity", ["tests/test_objective.py"]),
    "kl summed over the batch": ("aectl/objectives/objective.py",
                                 "kl = (losses.gaussian_kl(out.mu, out.logvar) if kl is None else kl).mean()",
                                 "kl = (losses.gaussian_kl(out.mu, out.logvar) if kl is None else kl).sum()",
                                 ["tests/test_objective.py"]),
    "z = mu + sigma^2 eps": ("aectl/models/variational.py", "return mu + (0.5 * logvar).exp() * eps",
                             "return mu + logvar.exp() * eps", ["tests/test_objective.py"]),
    "forward ignores the reparameterisation": (
        "aectl/models/variational.py",
        "z = reparameterize(mu, logvar, standard_normal(mu.shape, mu))\n        return ModelOutput(self.decode(z), z",
        "z = mu + torch.randn_like(mu)\n        return ModelOutput(self.decode(z), z", ["tests/test_objective.py"]),
    "cyclical period in epochs": ("aectl/training/build.py", "ratio=s.ratio, total_steps=total_steps)",
                                  "ratio=s.ratio, total_steps=config.trainer.epochs)", ["tests/test_wiring.py"]),
    "validation at the current beta": (
        "aectl/training/trainer.py", "                        self.target_beta, self.eval_batch, labels=labels)",
        "                        self.loop.beta_at(self.progress.step), self.eval_batch, labels=labels)",
        ["tests/test_wiring.py"]),
    "eval ignores the trained beta": ("aectl/evaluation/variant.py", 'float(config.get("beta", 1.0)), kind == "cvae",',
                                      '1.0, kind == "cvae",', ["tests/test_wiring.py"]),
    "recon averaged over features": ("aectl/objectives/losses.py",
                                     'squared = F.mse_loss(recon, x, reduction="sum") / len(x)',
                                     "squared = F.mse_loss(recon, x) / len(x)", ["tests/test_objective.py"]),
    "gaussian constant dropped": ("aectl/objectives/losses.py",
                                  "return squared / (2 * sigma ** 2) + gaussian_log_norm(x[0].numel(), sigma)\n"
                                  "    per_element", "return squared / (2 * sigma ** 2)\n    per_element",
                                  ["tests/test_losses.py"]),
    "sigma for sigma^2 in the training loss": (
        "aectl/objectives/losses.py", "squared = F.mse_loss(recon, x, reduction=\"sum\") / len(x)\n        return squared / "
        "(2 * sigma ** 2)", "squared = F.mse_loss(recon, x, reduction=\"sum\") / len(x)\n        return squared / "
        "(2 * sigma)", ["tests/test_objective.py"]),
    "sigma for sigma^2 in the likelihood": (
        "aectl/objectives/losses.py", "squared = (recon - x).square().flatten(1).sum(1)\n        return squared / (2 * sigma ** 2)",
        "squared = (recon - x).square().flatten(1).sum(1)\n        return squared / (2 * sigma)",
        ["tests/test_wiring.py"]),
    "sigma not wired to eval": ("aectl/objectives/metrics.py",
                                "_sampled_log_likelihood(recon, x.reshape(n, -1), model.likelihood, model.sigma)",
                                "_sampled_log_likelihood(recon, x.reshape(n, -1), model.likelihood, 0.5 ** 0.5)",
                                ["tests/test_wiring.py"]),
    "iw bernoulli x·l with the wrong sign": ("aectl/objectives/metrics.py", "addcmul_(recon, x, value=-1)",
                                             "addcmul_(recon, x, value=1)", ["tests/test_metrics.py"]),
    "iw gaussian constant dropped": ("aectl/objectives/metrics.py",
                                     "-(squared / (2 * sigma ** 2) + losses.gaussian_log_norm(x.shape[1], sigma))",
                                     "-(squared / (2 * sigma ** 2))", ["tests/test_metrics.py"]),
    "iw copies x per sample": ("aectl/objectives/metrics.py", "nll = F.softplus(recon).addcmul_(recon, x, value=-1)",
                               "nll = F.softplus(recon) - recon * x.expand_as(recon).contiguous()",
                               ["tests/test_metrics.py"]),
    "probe on the default BLAS threads": ("aectl/objectives/metrics.py", "threadpool_limits(limits=1, user_api=\"blas\")",
                                          "threadpool_limits(limits=None, user_api=\"blas\")",
                                          ["tests/test_metrics.py"]),
    "continuous Bernoulli normaliser sign": ("aectl/objectives/losses.py",
                                             "per_element = per_element - continuous_bernoulli_log_norm(recon)",
                                             "per_element = per_element + continuous_bernoulli_log_norm(recon)",
                                             ["tests/test_losses.py"]),
    "continuous Bernoulli reconstruction is lambda": ("aectl/models/factory.py", "return continuous_bernoulli_mean(recon)",
                                                       "return recon.sigmoid()", ["tests/test_losses.py"]),
    "kl term of the closed form": ("aectl/objectives/losses.py", "(1 + logvar - mu.square() - logvar.exp())",
                                   "(1 + logvar - mu.square() - logvar)", ["tests/test_losses.py"]),
    "rho hat over all entries": ("aectl/objectives/losses.py", "rho_hat = code.mean(0).clamp(eps, 1 - eps)",
                                 "rho_hat = code.mean().clamp(eps, 1 - eps)", ["tests/test_objective.py"]),
    "iw without -log k": ("aectl/objectives/metrics.py", "e).logsumexp(0))\n    return total - math.log(k)",
                          "e).logsumexp(0))\n    return total",
                          ["tests/test_wiring.py"]),
    "masking probability halved": ("aectl/datasets/noise.py", "return corrupt(x, self.kind, sigma=self.sigma, clip=self.clip, "
                                   "p=self.p,", "return corrupt(x, self.kind, sigma=self.sigma, clip=self.clip, "
                                   "p=self.p / 2,", ["tests/test_wiring.py"]),
    # (Pepper at u < p with salt at p/2 ≤ u < p would be the same distribution: not a mutant.)
    "pepper at p/4": ("aectl/datasets/noise.py", "noisy = torch.where(u < p / 2, torch.full_like(x, v_min), x)",
                      "noisy = torch.where(u < p / 4, torch.full_like(x, v_min), x)", ["tests/test_wiring.py"]),
    "salt at p": ("aectl/datasets/noise.py", "torch.where((u >= p / 2) & (u < p), torch.full_like(x, v_max), noisy)",
                  "torch.where((u >= p / 2) & (u < 1.5 * p), torch.full_like(x, v_max), noisy)",
                  ["tests/test_wiring.py"]),
    "gaussian noise with sigma^2": ("aectl/datasets/noise.py", "noisy = x + sigma * torch.randn",
                                    "noisy = x + sigma ** 2 * torch.randn", ["tests/test_wiring.py"]),
    "noise range fixed to [0, 1]": ("aectl/training/build.py", "    low, high = data.value_range((\"train\",))\n    return {",
                                    "    low, high = 0.0, 1.0\n    return {", ["tests/test_data_integrity.py"]),
    "binarization drawn once": ("aectl/datasets/load.py", 'if how == "threshold" or name != "train":', "if True:",
                                ["tests/test_wiring.py"]),
    "image files scaled per pixel": ("aectl/datasets/scaling.py", "fit_scaler(data.train, mode, raw.tabular, fixed)",
                                     "fit_scaler(data.train, mode, True, None)",
                                     ["tests/test_data_integrity.py"]),
    "minmax val/test left unclipped": ("aectl/datasets/scaling.py", "setattr(data, name, x.clamp(0, 1))", "pass",
                                       ["tests/test_data_integrity.py"]),
    "psnr in amplitude dB": ("aectl/objectives/metrics.py", "return 10 * torch.log10(max_val ** 2 / mse)",
                             "return 20 * torch.log10(max_val ** 2 / mse)", ["tests/test_wiring.py"]),
    "psnr from the noisy input": ("aectl/evaluation/validation.py", "raw = out.recon if not self.noisy and out.mu is None "
                                  "else model.decode(code)", "raw = out.recon", ["tests/test_wiring.py"]),
    "active units by std": ("aectl/objectives/metrics.py", "variances = mu_all.var(0, unbiased=False)",
                            "variances = mu_all.std(0)", ["tests/test_wiring.py"]),
    "ddp plain average": ("aectl/runtime/distributed.py", "buffer = bucket.buffer().mul_(state.weight)",
                          "buffer = bucket.buffer().mul_(1 / state.world_size)", ["tests/test_scaling.py"]),
    "ddp epsilon drawn per shard": ("aectl/runtime/distributed.py", "    if _STEP is None:\n        return torch.randn(",
                                    "    if True:\n        return torch.randn(", [_DDP_VAE, _DDP_DRAWS]),
    "ddp vq counts per rank": ("aectl/models/quantizer.py", "counts = batch_sum(code_counts(indices, self.num_embeddings))",
                               "counts = code_counts(indices, self.num_embeddings)", [_DDP_VQ]),
    "ddp vq ema from the rank's shard": ("aectl/models/quantizer.py", "stats = batch_sum(torch.cat(", "stats = (torch.cat(",
                                        [_DDP_VQ]),
    "ddp vq dead codes from the rank's shard": ("aectl/runtime/distributed.py", "    if _STEP is None:\n        return flat[",
                                                "    if True:\n        return flat[", [_DDP_VQ]),
    "ddp vq picks at the wrong local row": (
        "aectl/runtime/distributed.py", "local = ((example // _STEP.world_size) * p + position)",
        "local = ((example // _STEP.world_size) + position)", [_DDP_VQ]),
    "ddp stand-in example summed": ("aectl/runtime/distributed.py", "if not _STEP.weight:\n        tensor.zero_()",
                                    "if False:\n        tensor.zero_()", [_DDP_VQ]),
    "ddp vq batch perplexity of the rank's shard": (
        "aectl/objectives/objective.py", "counts = batch_sum(quantizer.code_counts(", "counts = (quantizer.code_counts(", [_DDP_VQ]),
    # Resume and logging paths.
    "stop request read twice": ("aectl/training/trainer.py", "raise run.interrupt(signum)  # it came during validation",
                                "raise run.interrupt(stop_requested())  # it came during validation",
                                ["tests/test_resume.py"]),
    "beta curve laid out anew at resume": ("aectl/training/build.py", "    if resume is None:\n        total =",
                                           "    if True:\n        total =",
                                           ["tests/test_resume.py"]),
    "resume takes any override": ("aectl/cli/resume.py", "if key not in safe and old != new:", "if False:",
                                  ["tests/test_resume.py"]),
    "history of one segment": ("aectl/training/trainer.py", 'list(history.get("val_loss", []))', "[]",
                               ["tests/test_resume.py"]),
    "no best.pt in a continued run": ("aectl/cli/tasks.py", "            build.adopt_best_checkpoint(Path(source), run_dir)",
                                      "            pass", ["tests/test_resume.py"]),
    "cosine over twice the run": ("aectl/training/lr_schedules.py", "0.5 * (1.0 + math.cos(math.pi * done))",
                                  "0.5 * (1.0 + math.cos(math.pi * done / 2))", ["tests/test_lr_schedules.py"]),
    "warm-up starts at lr 0": ("aectl/training/lr_schedules.py", "base_lr * (step + 1) / warmup_steps",
                               "base_lr * step / warmup_steps", ["tests/test_lr_schedules.py"]),
    "step schedule decays every other period": ("aectl/training/lr_schedules.py", "gamma ** (epoch // step_size)",
                                                "gamma ** (epoch // (2 * step_size))", ["tests/test_lr_schedules.py"]),
    "plateau factor applied once": ("aectl/training/lr_schedules.py", "base_lr * factor ** reductions",
                                    "base_lr * factor ** min(reductions, 1)", ["tests/test_lr_schedules.py"]),
    "cosine length in epochs": ("aectl/training/build.py", "factor=r.factor, total_steps=total_steps)",
                                "factor=r.factor, total_steps=config.trainer.epochs)", ["tests/test_lr_schedules.py"]),
    "patience ignored": ("aectl/training/lr_schedules.py", "return patience > 0 and self.bad_epochs >= patience",
                         "return patience > 0 and self.bad_epochs >= 1", ["tests/test_lr_schedules.py"]),
    "cosine reaches min_lr a step after the run": (
        "aectl/training/lr_schedules.py", "last = total_steps - 1  # the run's", "last = total_steps  # the run's",
        ["tests/test_lr_schedules.py"]),
    "min_delta ignored": ("aectl/training/lr_schedules.py", "if score < self.best - min_delta:",
                          "if score < self.best:", ["tests/test_lr_schedules.py"]),
    "last partial log interval dropped": ("aectl/training/trainer.py", "        if self.interval.steps:\n", "        if False:\n",
                                          ["tests/test_train.py"]),
    # the conditional VAE (model=cvae): the label's code and each wire that carries it
    "one-hot at the wrong column": ("aectl/models/conditional.py", "scatter_(1, y.long().unsqueeze(1), 1.0)",
                                    "scatter_(1, (num_classes - 1 - y.long()).unsqueeze(1), 1.0)",
                                    ["tests/test_cvae.py"]),
    "cvae decoder ignores the label": (
        "aectl/models/conditional.py", "torch.cat([z, one_hot(y, self.num_classes).to(z.dtype)], 1)",
        "torch.cat([z, 0 * one_hot(y, self.num_classes).to(z.dtype)], 1)", ["tests/test_cvae.py"]),
    "cvae encoder ignores the label": ("aectl/models/conditional.py", "return torch.cat([x.flatten(1), y1.to(x.dtype)], 1)",
                                       "return torch.cat([x.flatten(1), 0 * y1.to(x.dtype)], 1)",
                                       ["tests/test_cvae.py"]),
    "cvae batch labels dropped": ("aectl/training/trainer.py", "            y = dist.shard(y)",
                                  "            y = torch.zeros_like(dist.shard(y))", ["tests/test_cvae.py"]),
    "cvae labels paired with other examples": ("aectl/objectives/objective.py", "model(x_in) if y is None else model(x_in, y)",
                                               "model(x_in) if y is None else model(x_in, y.flip(0))",
                                               ["tests/test_cvae.py"]),
    "cvae validation without its labels": ("aectl/evaluation/validation.py", "            model = model.given(y)",
                                           "            model = model.given(torch.zeros_like(y))",
                                           ["tests/test_cvae.py"]),
    "cvae IW labels not tiled": ("aectl/models/conditional.py", "return self.y.repeat(rows // len(self.y))",
                                 "return self.y.repeat_interleave(rows // len(self.y))", ["tests/test_cvae.py"]),
}
_VQ = ["tests/test_vqvae.py"]
MUTANTS.update({  # the VQ-VAE
    "vq farthest code": ("aectl/models/quantizer.py", "return distances.argmin(1)", "return distances.argmax(1)", _VQ),
    "vq no straight-through": ("aectl/models/quantizer.py", "return z_e + (z_q - z_e).detach()", "return z_q", _VQ),
    "vq forward skips straight-through": ("aectl/models/vq.py", "z = straight_through(vq.z_e, vq.z_q).flatten(1)",
                                          "z = vq.z_q.flatten(1)", _VQ),
    "vq commitment weight dropped": ("aectl/objectives/objective.py", "commitment = self.commitment * losses.vq_commitment",
                                     "commitment = losses.vq_commitment", _VQ),
    "vq commitment moves the codes": ("aectl/objectives/losses.py", "return (z_e - z_q.detach()).square()",
                                      "return (z_e - z_q).square()", _VQ),
    "vq codebook term dropped": ("aectl/objectives/objective.py", "codebook = None if self.ema else losses.vq_codebook(z_e, z_q)",
                                 "codebook = None", _VQ),
    "vq ema without Laplace smoothing": ("aectl/models/quantizer.py",
                                         "smoothed = (cluster_size + eps) / (total + k * eps) * total",
                                         "smoothed = cluster_size", _VQ),
    "vq dead codes one step late": ("aectl/models/quantizer.py", "dead = self.unused_steps >= self.dead_code_steps",
                                    "dead = self.unused_steps > self.dead_code_steps", _VQ),
    "vq split counts of the last batch": ("aectl/evaluation/validation.py", "self.code_counts = self.code_counts + quantizer",
                                          "self.code_counts = quantizer", _VQ),
})

MUTANTS.update({  # the contractive penalty and the IWAE
    "contractive closed form without the square": (
        "aectl/objectives/contractive.py", "return (h * (1 - h)).square() @ weight.square().sum(1)",
        "return (h * (1 - h)) @ weight.square().sum(1)", ["tests/test_contractive.py"]),
    "jacobian rows summed before squaring": ("aectl/objectives/contractive.py", "rows.square().flatten(2).sum(2).sum(0)",
                                             "rows.flatten(2).sum(2).square().sum(0)", ["tests/test_contractive.py"]),
    "contractive weight dropped": ("aectl/objectives/objective.py", "penalty = self.contractive_weight * jacobian_sq.mean()",
                                   "penalty = jacobian_sq.mean()", ["tests/test_contractive.py"]),
    "contractive penalty not differentiated": ("aectl/objectives/objective.py", "create_graph=training)", "create_graph=False)",
                                               ["tests/test_contractive.py"]),
    "eval reports the squared jacobian norm": ("aectl/evaluation/validation.py", "create_graph=False).detach().sqrt()",
                                               "create_graph=False).detach()", ["tests/test_contractive.py"]),
    "contractive closed form for any code activation": (
        "aectl/objectives/contractive.py", "type(code[0]) is nn.Linear and type(code[1]) is nn.Sigmoid:",
        "type(code[0]) is nn.Linear:", ["tests/test_contractive.py"]),
    "iwae logged kl summed over the batch": (
        "aectl/objectives/objective.py", 'else log_q - log_pz).mean()', 'else log_q - log_pz).sum()',
        ["tests/test_iwae.py"]),
    "iwae logged recon summed over the draws": ("aectl/objectives/objective.py", "terms = torch.stack([loss, -log_px_z.mean(), kl, zero,",
                                                "terms = torch.stack([loss, -log_px_z.sum(0).mean(), kl, zero,",
                                                ["tests/test_iwae.py"]),
    "iwae bound is the mean log weight": (
        "aectl/objectives/losses.py", "return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])", "return log_w.mean(0)",
        ["tests/test_iwae.py"]),
    "iwae log q added": ("aectl/objectives/objective.py", "log_w = log_px_z + log_pz - log_q",
                         "log_w = log_px_z + log_pz + log_q", ["tests/test_iwae.py"]),
    "ess of unnormalised weights": ("aectl/objectives/losses.py", "return 1 / torch.softmax(log_w, 0).square().sum(0)",
                                    "return 1 / log_w.exp().square().sum(0)", ["tests/test_iwae.py"]),
    "iwae k not wired to training": ("aectl/training/build.py", "vars(config.penalty), m.k,", "vars(config.penalty), 1,",
                                     ["tests/test_iwae.py"]),
    "iwae k not wired to eval": ("aectl/evaluation/variant.py", 'getattr(model, "k", 1),', "1,", ["tests/test_iwae.py"]),
    "report ranks the loss across objectives": (
        "aectl/report/ranking.py", 'm.rsplit("/", 1)[-1] in OBJECTIVE_TERMS', "False", ["tests/test_report.py"]),
    "epoch score ignores the monitor's direction": (
        "aectl/training/monitor.py", 'return value if direction(name) == "minimize" else -value', "return value",
        ["tests/test_lr_schedules.py"]),
    "best.pt by the val loss, not the monitor": (
        "aectl/training/trainer.py", "score = epoch_score(val, primary(settings.monitor))", 'score = val["loss"]',
        ["tests/test_lr_schedules.py"]),
    "plateau and early stopping on the val loss": (
        "aectl/training/trainer.py", "self.watch_plateaus(score)", 'self.watch_plateaus(val["loss"])',
        ["tests/test_lr_schedules.py"]),
    "monitor's history not restored on resume": (
        "aectl/training/trainer.py", 'score_history=list(history.get("score", history.get("val_loss", [])))',
        'score_history=list(history.get("val_loss", []))', ["tests/test_lr_schedules.py"]),
    "best epoch of the val loss history": (
        "aectl/training/trainer.py", "history = progress.score_history\n", "history = progress.val_history\n",
        ["tests/test_lr_schedules.py"]),
    "val line every epoch (log)": (
        "aectl/training/training_log.py", "return epoch % val_log_every(epochs) == 0 or epoch == epochs", "return True",
        ["tests/test_logging.py"]),
    "no val line at the last epoch (log)": (
        "aectl/training/training_log.py", "return epoch % val_log_every(epochs) == 0 or epoch == epochs",
        "return epoch % val_log_every(epochs) == 0", ["tests/test_logging.py"]),
    "val line's best from the last epoch (log)": (
        "aectl/training/trainer.py", "score_value(best, primary(settings.monitor)), progress.score_history.index(best) + 1))",
        "score_value(score, settings.monitor), progress.epoch))", ["tests/test_logging.py"]),
    "val loss not in the progress bar (log)": (
        "aectl/training/trainer.py", 'self.interval.show_val(val["loss"], self.bar)', "pass", ["tests/test_progress.py"]),
    "no next-steps line after a run (log)": (
        "aectl/cli/tasks.py", "print(next_steps(run_dir))", "pass", ["tests/test_logging.py"]),
    "no next-steps line after a sweep (log)": (
        "configs/train.yaml", "_target_: aectl.cli.tasks.SweepNextSteps", "_target_: aectl.runs.runfolder.NoteRunDir",
        ["tests/test_logging.py"]),
    "next-steps line names commands the shell may not find (log)": (
        "aectl/cli/tasks.py", "    return shown_path(here)\n", "    return name\n", ["tests/test_logging.py"]),
    "report: recent files read as running (log)": (
        "aectl/report/jobs.py", "    if is_locked(path):  # first:", "    if True:  # first:", ["tests/test_report.py"]),
    "report: a resumed run's old metrics.json read as ok (log)": (
        "aectl/report/jobs.py", "    if is_locked(path):  # first:",
        '    if is_locked(path) and not (path / "metrics.json").is_file():  # first:', ["tests/test_report.py"]),
    "report: a stub read as incomplete (log)": (
        "aectl/report/jobs.py", "    if resumable:\n", "    if True:\n", ["tests/test_report.py"]),
    "a failed run leaves no error.txt (log)": (
        "aectl/training/build.py", "            runfolder.mark_failed(run_dir, err)", "            pass",
        ["tests/test_report.py"]),
    "a resumed run keeps its old error.txt (log)": (
        "aectl/runs/runfolder.py", "    for name in (INTERRUPTED, ERROR):", "    for name in (INTERRUPTED,):",
        ["tests/test_report.py"]),
    "a refused run's error.txt keeps its folder (log)": (
        "aectl/runs/runfolder.py", '_ONLY_STARTED = {".hydra", "train.log", LOCK_NAME, ERROR}',
        '_ONLY_STARTED = {".hydra", "train.log", LOCK_NAME}', ["tests/test_cli.py"]),
    "report: plots of single points (log)": (
        "aectl/report/plots.py", "if len({repr(param_value(j, param)) for j in jobs}) > 1}", "if jobs}",
        ["tests/test_report.py"]),
    "eval metrics as single-point charts (log)": (
        "aectl/evaluation/evaluate.py", "tracker.table(tag, values, step)", "tracker.scalars(tag, values, step)",
        ["tests/test_eval.py"]),
    "HPARAMS lists a sweep's constants (log)": (
        "aectl/training/build.py", "constants=not hparams_lead)", "constants=True)", ["tests/test_report.py"]),
    "HPARAMS swept keys not first (log)": (
        "aectl/runs/tracking.py", "infos[name].differs = name in varied", "infos[name].differs = False",
        ["tests/test_report.py"]),
    "HPARAMS every val metric (log)": (
        "aectl/runs/tracking.py", "names = dict.fromkeys([*(m for m in FINAL_METRICS if m in val), monitored])",
        "names = dict.fromkeys(val)", ["tests/test_report.py"]),
    "lr chart before the curves (log)": (
        "aectl/runs/tracking.py", 'CHARTS_LR, CHARTS_SPEED = "train/lr", "train/samples_per_s"',
        'CHARTS_LR, CHARTS_SPEED = "charts/lr", "charts/samples_per_s"', ["tests/test_train.py"]),
    "plain progress lines every 30 s however long the run (log)": (
        "aectl/runtime/progress.py", "max(LINE_EVERY_S, LINE_SILENCE_SHARE * (now - self._start))", "LINE_EVERY_S",
        ["tests/test_progress.py"]),
    "pretraining stages' losses under one name": (
        "aectl/training/pretraining.py", 'return "recon" if stage == 1 else "mse"', 'return "loss"',
        ["tests/test_pretraining.py"]),
    "probe fitted without a word first": (
        "aectl/evaluation/evaluate.py", 'train codes of {z_train.shape[1]} dims",\n         disable=not progress)',
        'train codes of {z_train.shape[1]} dims",\n         disable=True)',
        ["tests/test_eval.py::test_the_probe_shows_its_progress_and_says_so_before_its_long_fit"]),
    "probe's train codes without a bar": (
        "aectl/evaluation/evaluate.py", 'desc="probe: encoding the train split", unit="batch", disable=not progress',
        'desc="probe: encoding the train split", unit="batch", disable=True',
        ["tests/test_eval.py::test_the_probe_shows_its_progress_and_says_so_before_its_long_fit"]),
    "picture as wide as its grid, not its title": (
        "aectl/evaluation/pictures.py", "fig_width = math.ceil(max(content, title_width + 2 * PAD_PX))",
        "fig_width = math.ceil(content)", ["tests/test_pictures.py"]),
    "picture's row names in a fixed column": (
        "aectl/evaluation/pictures.py", "left = names + 2 * PAD_PX if row_labels else PAD_PX",
        "left = 40 if row_labels else PAD_PX", ["tests/test_pictures.py"]),
    "picture title unwrapped": (
        "aectl/evaluation/pictures.py", "title = _wrap(fig, renderer, title, TITLE_PT, max(content, TITLE_WRAP_PX) - 2 * PAD_PX)",
        "title = title", ["tests/test_pictures.py"]),
})

# Every field a config accepts does something: the fields each dataset option reads.
MUTANTS.update({
    "binarized_mnist said to read val_fraction": (
        "aectl/config/option_fields.py", '"binarized_mnist": ("binarize", "limit", "root", "download"),',
        '"binarized_mnist": ("binarize", "val_fraction", "split_seed", "limit", "root", "download"),',
        ["tests/test_datasets.py::test_every_dataset_reads_exactly_the_fields_its_option_table_names",
         "tests/test_data_integrity.py::test_settings_that_would_do_nothing_are_refused_in_one_line"]),
    "datasets with a test set said to read test_fraction": (
        "aectl/config/option_fields.py", '_DOWNLOADED = ("binarize", "val_fraction", "split_seed"',
        '_DOWNLOADED = ("binarize", "val_fraction", "test_fraction", "split_seed"',
        ["tests/test_datasets.py::test_every_dataset_reads_exactly_the_fields_its_option_table_names"]),
    "dataset fields given on the command line not checked": (
        "aectl/config/option_fields.py", '"dataset": (cfg.dataset.name, DATASET_FIELDS)}',
        '"dataset": (cfg.dataset.name, {n: DATASET_FIELDS["image_folder"] + DATASET_FIELDS["synthetic"] + ('
        '"root", "download") for n in DATASET_FIELDS})}',
        ["tests/test_config_fuzz.py::test_a_dataset_field_the_chosen_dataset_does_not_read_is_refused"]),
    "eval's dataset overrides not checked": (
        "aectl/evaluation/evaluate.py", "    check_dataset_overrides(config.name, overrides)\n", "",
        ["tests/test_eval.py::test_a_dataset_override_the_checkpoints_dataset_does_not_read_is_refused"]),
    "psnr monitor not checked against the data": (
        "aectl/training/build.py", "        check_monitor_data(name, data.known_range)\n", "",
        ["tests/test_lr_schedules.py::test_a_psnr_monitor_on_data_without_a_known_range_is_refused_before_training"]),
    "IW slices keep the whole batch's labels": (
        "aectl/objectives/metrics.py", 'part = getattr(model, "rows", lambda start, stop: model)',
        "part = lambda start, stop: model",
        ["tests/test_cvae.py::test_iw_estimate_of_more_examples_than_a_pass_holds_slices_their_labels_too"]),
    "resume overrides read as a dotlist": (
        "aectl/cli/resume.py", "    for parsed in OverridesParser.create().parse_overrides(dotted):\n"
        "        OmegaConf.update(merged, parsed.key_or_group, parsed.value(), merge=True)",
        "    merged = OmegaConf.merge(original, OmegaConf.from_dotlist(dotted))",
        ["tests/test_resume.py::test_a_repeated_list_element_override_resumes_and_a_changed_one_is_refused"]),
    "text labels' names dropped": (
        "aectl/datasets/tensor_file.py", "value_range, classes, tabular=", "value_range, None, tabular=",
        ["tests/test_readers.py::test_csv_text_labels_are_classes_in_sorted_order"]),
    "a preset's refused value not named as the preset's": (
        "aectl/training/build.py", '        if not given or any(o.split("=", 1)[0] == err.key for o in given):\n            raise',
        "        raise",
        ["tests/test_lr_schedules.py::test_a_presets_value_refused_for_a_short_run_is_named_as_the_presets"]),
    "a string taken as the override list": (
        "aectl/api.py", "given = _override_list(overrides)", "given = list(overrides or [])", ["tests/test_api.py::test_wrong_arguments_are_refused_in_one_line_naming_them"]),
    "numpy input passed to the model": (
        "aectl/api.py", "if isinstance(value, torch.Tensor):\n        return value", "return value", ["tests/test_api.py::test_wrong_arguments_are_refused_in_one_line_naming_them"]),
    "input shape unchecked": (
        "aectl/api.py", "if not shape or tuple(x.shape[1:]) == shape:", "if True:", ["tests/test_api.py::test_wrong_arguments_are_refused_in_one_line_naming_them"]),
    "pipe: the SIGINT notice raises on a reader-less stderr": (
        "aectl/runs/signals.py", "except OSError:  # stderr is a pipe", "except ValueError:  # stderr is a pipe",
        [PIPELINE_TEST]),
    "pipe: a write to a reader-less stream raises": (
        "aectl/cli/streams.py", "            except BrokenPipeError:\n                self._silence()\n        return",
        "            except ValueError:\n                self._silence()\n        return", [PIPELINE_TEST]),
    "pipe: the stop not recorded in train.log": (
        "aectl/cli/hydra_run.py", "    _to_log_files(line)\n", "", [PIPELINE_TEST]),
    "optuna extra: the sweeper plugin fails to import without it": (
        "hydra_plugins/aectl_optuna_sweeper/config.py", "if OPTUNA_INSTALLED:\n", "if True:\n", [NO_OPTUNA_TEST]),
    "optuna extra: the missing sweeper does not name it": (
        "aectl/cli/messages.py", "line += \" (pip install 'aectl[optuna]' adds aectl_optuna)\"", 'line += ""',
        [NO_OPTUNA_TEST]),
    "optuna: a rerun counts only this run's trials": (
        "hydra_plugins/aectl_optuna_sweeper/_impl.py", "n_trials, n_jobs = sweeper.conf.n_trials, sweeper.conf.n_jobs",
        "n_trials, n_jobs = sweeper.conf.n_trials + len(study.trials), sweeper.conf.n_jobs",
        ["tests/test_optuna_search.py::test_n_trials_counts_every_trial_of_the_study"]),
    "optuna: a seeded rerun replays the first run": (
        "hydra_plugins/aectl_optuna_sweeper/_impl.py", "int(conf.seed) + n_trials_so_far", "int(conf.seed)",
        ["tests/test_optuna_search.py::test_a_seeded_rerun_continues_the_search_instead_of_replaying_it"]),
    "optuna: a trial without params is launched empty": (
        "hydra_plugins/aectl_optuna_sweeper/_impl.py", "if not trial.params and distributions:", "if False:",
        ["tests/test_optuna_search.py::test_a_trial_cut_off_before_its_params_is_failed_and_asked_again_never_launched_empty"]),
    "optuna: one direction for every metric": (
        "hydra_plugins/aectl_optuna_sweeper/_impl.py", "return [direction(m) for m in metrics]",
        "return [direction(metrics[0])] * len(metrics)",
        ["tests/test_optuna_search.py::test_a_list_monitor_has_one_direction_per_metric_told_in_order"]),
    "optuna: the pruner's decision is not acted on": (
        "aectl/training/pruning.py", "    if not run.loop.dist.any_rank(says):", "    if True:",
        ["tests/test_optuna_search.py::test_training_stops_cleanly_when_the_pruner_says_so"]),
    "optuna: the trial never reports its epoch": (
        "aectl/runs/optuna_study.py", "        self.trial.report(value, epoch)\n", "",
        ["tests/test_optuna_search.py::test_the_trial_reports_each_epoch_and_hears_the_pruner"]),
    "optuna: a pruned job is told complete or failed": (
        "hydra_plugins/aectl_optuna_sweeper/_impl.py", "study.tell(number, state=TrialState.PRUNED)",
        "study.tell(number, state=TrialState.FAIL)", ["tests/test_optuna_search.py::test_a_pruned_job_is_told_pruned"]),
    "optuna: the pruning decision stays on rank 0": (
        "aectl/runtime/distributed.py", "        dist.all_reduce(says, op=dist.ReduceOp.MAX)\n", "",
        ["tests/test_optuna_end_to_end.py::test_under_torchrun_rank_0_reports_and_every_rank_stops"]),
    "optuna: a field another pruner reads goes unrefused": (
        "aectl/runs/optuna_study.py", "if key not in PRUNER_FIELDS[name] and conf.get(key, default) != default:",
        "if False:", ["tests/test_optuna_search.py::test_a_field_the_chosen_pruner_does_not_read_is_refused_before_the_study_is_touched"]),
    "optuna: hyperband ignores its reduction factor": (
        "aectl/runs/optuna_study.py", 'max_resource=c["max_resource"],\n                                              reduction_factor=c["reduction_factor"])',
        'max_resource=c["max_resource"])', ["tests/test_optuna_search.py::test_each_pruner_is_built_from_its_own_fields"]),
    "optuna: the median pruner ignores its startup trials": (
        "aectl/runs/optuna_study.py", 'MedianPruner(n_startup_trials=c["n_startup_trials"], ', "MedianPruner(",
        ["tests/test_optuna_search.py::test_each_pruner_is_built_from_its_own_fields",
         "tests/test_optuna_end_to_end.py::test_the_median_pruner_prunes_a_trial_that_lags_and_the_report_shows_it"]),
    "checkpoint written in place, not renamed into place": (
        "aectl/runs/checkpoint.py", "        _write_synced(fd, buffer.getbuffer())\n        os.replace(tmp, path)\n",
        "        _write_synced(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), buffer.getbuffer())\n"
        "        os.close(fd)\n",
        ["tests/test_reliability.py::test_sigkill_while_writing_a_checkpoint_leaves_old_or_new_never_half"]),
    "optuna: the trial's study stays in the environment after the search": (
        "hydra_plugins/aectl_optuna_sweeper/_impl.py", "            os.environ.pop(TRIAL_ENV, None)\n", "            pass\n",
        ["tests/test_optuna_search.py::test_the_trials_study_is_in_the_environment_only_while_the_search_runs"]),
    "optuna: hydra.sweeper.params.<key> on the command line left to Hydra's parser": (
        "aectl/cli/hydra_run.py", '    return f"{key}={space}"\n', "    return arg\n",
        ["tests/test_optuna_end_to_end.py::test_a_command_line_search_grows_from_3_to_5_trials_in_its_sweep_folder"]),
    "optuna: a second controller runs the same study": (
        "hydra_plugins/aectl_optuna_sweeper/_impl.py", "fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass",
        ["tests/test_optuna_search.py::test_a_second_controller_on_the_same_study_is_refused_and_nothing_is_lost"]),
    "optuna: a broken storage URL is not named": (
        "hydra_plugins/aectl_optuna_sweeper/_impl.py", "    except Exception as err:  # a bad URL",
        "    except KeyError as err:  # a bad URL",
        ["tests/test_optuna_search.py::test_a_broken_storage_url_is_one_line_naming_the_key"]),
    "optuna: trial folders named by their overrides": (
        "hydra_plugins/aectl_optuna_sweeper/sweeper.py", "[(*o, folder) for o in overrides]",
        "[tuple(o) for o in overrides]",
        ["tests/test_optuna_search.py::test_n_trials_counts_every_trial_of_the_study"]),
    "optuna: a resume refuses the search preset": (
        "aectl/cli/resume.py", 'PRESETS = {"experiment": GROUPS[:-1], "hparams_search": GROUPS}',
        'PRESETS = {"experiment": GROUPS[:-1]}',
        ["tests/test_optuna_search.py::test_an_interrupted_trial_resumes_under_every_preset"]),
})


_MEAN = ["tests/test_losses.py"]
MUTANTS.update({  # a distribution's parameter where its mean is meant, a formula outside its case
    "mean: bernoulli reconstruction is the logits": ("aectl/models/factory.py", "return recon.sigmoid()", "return recon",
                                                     _MEAN),
    "mean: eval reconstructs logits": ("aectl/objectives/metrics.py",
                                       "return mean_reconstruction(model, model.decode(latent_means(model, x)))",
                                       "return model.decode(latent_means(model, x))", _MEAN),
    "mean: validation mse of logits": ("aectl/evaluation/validation.py", "x_hat = mean_reconstruction(model, raw).float()",
                                       "x_hat = raw.float()", _MEAN),
    "mean: prior samples are logits": ("aectl/evaluation/pictures.py", "return mean_reconstruction(model, model.decode(model.sample_prior(n, generator)))",
                                       "return model.decode(model.sample_prior(n, generator))", _MEAN),
    "mean: traversals are logits": ("aectl/evaluation/pictures.py",
                                    "images = mean_reconstruction(model, model.decode(torch.cat(rows)))",
                                    "images = model.decode(torch.cat(rows))", _MEAN),
    "mean: cvae class samples are logits": (
        "aectl/evaluation/pictures.py", "return mean_reconstruction(model, model.decode(z.repeat(model.num_classes, 1), y))",
        "return model.decode(z.repeat(model.num_classes, 1), y)", _MEAN),
    "mean: the API decodes to logits": ("aectl/api.py",
                                        "return self._from_model(mean_reconstruction(module, module.decode(z)))",
                                        "return self._from_model(module.decode(z))", _MEAN),
    "mean: training images of logits": ("aectl/training/training_log.py",
                                        "mean = lambda r: mean_reconstruction(model, r).float()",
                                        "mean = lambda r: r.float()", _MEAN),
    "mean: a bernoulli decoder squashed to probabilities": (
        "aectl/models/networks.py", 'return ACTIVATIONS[name]() if likelihood == "gaussian" else nn.Identity()',
        "return ACTIVATIONS[name]()", _MEAN),
    "mean: continuous Bernoulli series slope": ("aectl/models/factory.py", "0.5 + logits / 12, exact)",
                                                "0.5 - logits / 12, exact)", _MEAN),
    "scale: sampled KL with the variance as scale": ("aectl/objectives/metrics.py", "log_q = normal(mu, std).log_prob(z)",
                                                     "log_q = normal(mu, logvar.exp()).log_prob(z)",
                                                     ["tests/test_metrics.py"]),
    "scale: iw log weights with log sigma": ("aectl/objectives/metrics.py", "(z.square() - eps.square() - logvar).sum(-1)",
                                             "(z.square() - eps.square() - 0.5 * logvar).sum(-1)",
                                             ["tests/test_metrics.py"]),
    "scale: log density divides by sigma": ("aectl/objectives/losses.py", "(z - mu).square() * (-logvar).exp()",
                                            "(z - mu).square() * (-0.5 * logvar).exp()", ["tests/test_iwae.py"]),
    "scale: iwae prior at the posterior mean": ("aectl/objectives/objective.py",
                                                "log_pz = model.log_prior(out.z)",
                                                "log_pz = model.log_prior(out.z - out.mu)",
                                                ["tests/test_iwae.py"]),
    "scale: denoising -ELBO at the default sigma": (
        "aectl/evaluation/validation.py", "losses.reconstruction_nll(clean.recon, x, model.likelihood, model.sigma)",
        "losses.reconstruction_nll(clean.recon, x, model.likelihood)", ["tests/test_objective.py"]),
    "code: active units of the sampled z": ("aectl/evaluation/validation.py", "code = out.mu if out.mu is not None else out.z",
                                            "code = out.z", ["tests/test_objective.py"]),
    "code: split rho-hat over all entries": ("aectl/objectives/metrics.py", "rho_hat = codes.double().mean(0)",
                                             "rho_hat = codes.double().mean()", ["tests/test_metrics.py"]),
    "code: kl sparsity on a code outside (0, 1)": ("aectl/config/checks.py",
                                                   'm.code_activation == "sigmoid",\n               "sigmoid when',
                                                   'True,\n               "sigmoid when', ["tests/test_cli.py"]),
    "contractive closed form for a deep encoder": (
        "aectl/objectives/contractive.py", "any(not isinstance(m, nn.Flatten) for m in encoder.body)", "False",
        ["tests/test_contractive.py"]),
    "vq codebook term moves the encoder": ("aectl/objectives/losses.py", "return (z_e.detach() - z_q).square()",
                                           "return (z_e - z_q).square()", _VQ),
    "vq perplexity in bits": ("aectl/models/quantizer.py", "return torch.exp(-(p * p.clamp_min(1e-30).log()).sum())",
                              "return 2 ** (-(p * p.clamp_min(1e-30).log()).sum())", _VQ),
})

REPORT_UNITS = ["tests/test_report.py::test_the_table_says_whose_weights_its_numbers_are_and_prints_each_unit_fixed"]
BOTH_WEIGHTS = ["tests/test_lr_schedules.py::test_a_run_that_ends_past_its_best_epoch_gives_both_weights_numbers"]
MUTANTS.update({  # whose weights the final numbers are, and each unit's decimals
    "best.pt's numbers left out when they differ": (
        "aectl/training/run_record.py", '            final["best"] = of_best', "            pass", BOTH_WEIGHTS),
    "best section of the last weights": (
        "aectl/training/run_record.py", "    if not load_best(run):", "    if not best_epoch:", BOTH_WEIGHTS),
    "done line without whose weights": (
        "aectl/training/run_summary.py", "else f\"last weights (epoch {metrics['epochs']})\"", 'else "done"', BOTH_WEIGHTS),
    "final log line's KL to 3 digits": ("aectl/training/run_summary.py", "KL {format_metric('kl', val['kl'])} nats",
                                        "KL {val['kl']:.3g} nats", ["tests/test_tables.py"]),
    "done line's losses to 5 digits": ("aectl/training/run_summary.py", "{format_metric('loss', splits[s]['loss'])}",
                                       "{splits[s]['loss']:.5g}", ["tests/test_tables.py"]),
    "dB to significant digits": ("aectl/runs/tables.py", 'if unit in ("dB", "nats"):', 'if unit == "nats":',
                                 ["tests/test_tables.py"]),
    "shares as fractions": ("aectl/runs/tables.py", 'if unit == "share":', 'if unit == "fraction":',
                            ["tests/test_tables.py"]),
    "cvae probe without its note": ("aectl/evaluation/eval_tables.py", 'if result["model"] == "cvae" and "probe_acc" in values:',
                                    "if False:", ["tests/test_tables.py"]),
    "report.md cells without units": ("aectl/report/output.py", "text = format_metric(m, job.metrics.get(m))",
                                      "text = format_value(job.metrics.get(m))", REPORT_UNITS),
    "terminal report cells without units": (
        "aectl/report/output.py", "*(format_metric(metric, job.metrics.get(metric))",
        "*(format_value(job.metrics.get(metric))", REPORT_UNITS),
    "report without whose weights": ("aectl/report/output.py", "    lines += textwrap.wrap(which_weights(report), width)",
                                     "    pass", REPORT_UNITS),
    # The Optuna study in the report (studies built with optuna directly; run with an optuna>=4 venv).
    "study: pruned epoch dropped": (
        "aectl/report/study.py", 'return max(self.intermediate) if self.state == "PRUNED"',
        'return None if self.state == "PRUNED"', ["tests/test_report_study.py"]),
    "study: intermediate values not read": (
        "aectl/report/study.py", "{int(k): v for k, v in sorted(t.intermediate_values.items())}", "{}",
        ["tests/test_report_study.py"]),
    "study: intermediate curve drops its last epoch": (
        "aectl/report/study_plots.py", "epochs, values = zip(*sorted(t.intermediate.items()))",
        "epochs, values = zip(*sorted(t.intermediate.items())[:-1] or [(0, 0)])", ["tests/test_report_study.py"]),
    "study: every objective minimised": (
        "aectl/report/study.py", 'sign = [1 if d == "MINIMIZE" else -1 for d in self.directions]',
        "sign = [1 for d in self.directions]", ["tests/test_report_study.py"]),
    "study: front read as the first objective only": (
        "aectl/report/study.py", "all(y <= x for x, y in zip(a, b)) and any(y < x for x, y in zip(a, b))",
        "b[0] < a[0]", ["tests/test_report_study.py"]),
    "search objective: swept keys not checked": (
        "aectl/config/search_objective.py", "        if keys:\n", "        if False:\n", ["tests/test_search_objective.py"]),
    "search objective: only the first monitor checked": (
        "aectl/config/search_objective.py", "    for metric in metrics:\n", "    for metric in metrics[:1]:\n",
        ["tests/test_search_objective.py"]),
    "search objective: noise not a key of psnr_denoised": (
        "aectl/config/search_objective.py", '"psnr_denoised": ("noise",)', '"psnr_denoised": ()',
        ["tests/test_search_objective.py"]),
    "search objective: the sweeper does not check": (
        "hydra_plugins/aectl_optuna_sweeper/_impl.py",
        "    check_search_objective(metrics, list(distributions))\n", "",
        ["tests/test_search_objective.py",
         "tests/test_optuna_search.py::test_searching_beta_on_the_loss_is_refused_before_the_study_is_touched"]),
    "study: an unreadable study stops the report": (
        "aectl/report/study.py", "    except Exception as err:  # e.g. a schema", "    except ImportError as err:  # e.g. a schema",
        ["tests/test_report_study.py"]),
})


LAYOUT = ["tests/test_layout.py"]
MUTANTS.update({  # the stages import one way only (config → ... → training → report → cli)
    "layout: eval's device from training": (
        "aectl/evaluation/evaluate.py", "    from aectl.runtime.device import resolve_device\n",
        "    from aectl.runtime.device import resolve_device\n    from aectl.training import optim  # noqa: F401\n", LAYOUT),
    "layout: config checks the monitor through training": (
        "aectl/config/checks.py", "from aectl.config.monitoring import check_monitor",
        "from aectl.training.monitor import check_monitor", LAYOUT),
    "layout: eval pictures and eval import each other": (
        "aectl/evaluation/eval_pictures.py", "from aectl.evaluation.variant import Variant",
        "from aectl.evaluation.variant import Variant\nfrom aectl.evaluation import evaluate  # noqa: F401", LAYOUT),
})

MUTANTS.update({  # the docs' generated reference pages
    "docsref: comments above a field dropped": ("docs/hooks/reference.py",
                                                'out[name] = " ".join(above + ', 'out[name] = " ".join(',
                                                ["tests/test_docs_reference.py"]),
    "docsref: defaults not shown": ("docs/hooks/reference.py", "return repr(f.default)\n", "return repr(None)\n",
                                    ["tests/test_docs_reference.py"]),
})

_SAE, _SAE_M = ["tests/test_sae.py"], ["tests/test_sae_metrics.py"]
MUTANTS.update({  # the sparse autoencoder (model=sae), its recipe, metrics and ground truth
    "sae topk without its relu": ("aectl/models/sae.py", "return torch.zeros_like(pre).scatter(1, indices, values.relu())",
                                  "return torch.zeros_like(pre).scatter(1, indices, values)", _SAE),
    "sae batchtopk per example": ("aectl/models/sae.py", "values, indices = flat.topk(min(k * len(pre), flat.numel()))",
                                  "values, indices = flat.topk(k)", _SAE),
    "sae batchtopk threshold unused at inference": ("aectl/models/sae.py", "return pre.relu() * (pre > self.threshold)",
                                                    "return batch_topk_latents(pre, self.k)", _SAE),
    "sae batchtopk threshold not averaged": (
        "aectl/models/sae.py", "blended = self.threshold_decay * self.threshold + (1 - self.threshold_decay) * smallest",
        "blended = smallest", _SAE),
    "sae batchtopk threshold moved by a batch with nothing kept": (
        "aectl/models/sae.py", "torch.where(smallest.isinf(), self.threshold, updated)", "updated", _SAE),
    "sae batchtopk threshold not in the checkpoint": (
        "aectl/models/sae.py", 'self.register_buffer("threshold", torch.tensor(-1.0))',
        'self.register_buffer("threshold", torch.tensor(-1.0), persistent=False)', _SAE),
    "sae jumprelu threshold gradient without theta": (
        "aectl/models/sae.py", "grad_threshold = (-(threshold / ctx.bandwidth) * window * grad).sum(0)",
        "grad_threshold = (-(1 / ctx.bandwidth) * window * grad).sum(0)", _SAE),
    "sae jumprelu without the straight-through threshold gradient": (
        "aectl/models/sae.py", "return grad * (pre > threshold), grad_threshold, None",
        "return grad * (pre > threshold), None, None", _SAE),
    "sae l0 step gradient with the wrong sign": (
        "aectl/models/sae.py", "return torch.zeros_like(pre), (-window / ctx.bandwidth * grad).sum(0), None",
        "return torch.zeros_like(pre), (window / ctx.bandwidth * grad).sum(0), None", _SAE),
    "sae l1 not weighted by the decoder norm": ("aectl/models/sae.py", "return z, (z * self.W_dec.norm(dim=1)).sum(1)",
                                                "return z, z.sum(1)", _SAE),
    "sae parallel gradient kept": ("aectl/models/sae.py", "g.sub_((g * w).sum(1, keepdim=True) * w)", "g.sub_(0 * w)",
                                   _SAE),
    "sae decoder not renormed": ("aectl/models/sae.py",
                                 "self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))",
                                 "self.W_dec.div_(1.0)", _SAE),
    "sae encoder not the decoder's transpose": ("aectl/models/sae.py", "self.W_enc = nn.Parameter(w_dec.T.clone())",
                                                "self.W_enc = nn.Parameter(torch.randn(self.d_in, num_latents))", _SAE),
    "sae auxk from live latents": ("aectl/models/sae.py", 'masked = pre.masked_fill(~dead, float("-inf"))',
                                   "masked = pre", _SAE),
    "sae dead one step late": ("aectl/models/sae.py", "return self.steps_since_active >= self.dead_steps",
                               "return self.steps_since_active > self.dead_steps", _SAE),
    "sae geometric median is the mean": ("aectl/models/sae.py", "y = (weights[:, None] * x).sum(0) / weights.sum()",
                                         "y = x.mean(0)", _SAE),
    "sae b_dec not from the data": ("aectl/training/build.py", "        model.init_from_data(data.as_float(rows))",
                                    "        pass", _SAE),
    "sae hooks not wired into the loop": ("aectl/training/loop.py",
                                          'model if hasattr(model, "after_optimizer_step") else None)', "None)", _SAE),
    "sae renorm skipped by the step": ("aectl/training/trainer.py", "        upkeep.after_optimizer_step()",
                                       "        pass", _SAE),
    "sae projection skipped by the step": ("aectl/training/trainer.py", "        upkeep.before_optimizer_step()",
                                           "        pass", _SAE),
    "sae aux weight dropped": ("aectl/objectives/sae.py", "return coefficient * sae.has_dead * (residual",
                               "return sae.has_dead * (residual", _SAE),
    "sae aux without dead latents": ("aectl/objectives/sae.py", "return coefficient * sae.has_dead * (residual",
                                     "return coefficient * (residual", _SAE),
    "sae sparsity weight dropped": ("aectl/objectives/sae.py", "return coefficient * out.sae.sparsity.mean()",
                                    "return out.sae.sparsity.mean()", _SAE),
    "sae fvu around zero, not the mean": ("aectl/objectives/sae.py",
                                          "total_var = (self.sum_x2 - self.sum_x.square() / self.n).sum()",
                                          "total_var = self.sum_x2.sum()", _SAE_M),
    "sae squared error of the last batch": ("aectl/objectives/sae.py", "self.sq_err = self.sq_err + (x - x_hat)",
                                            "self.sq_err = (x - x_hat)", _SAE_M),
    "sae dense at 10% or more": ("aectl/objectives/sae.py", "(share > DENSE_SHARE)", "(share >= DENSE_SHARE)", _SAE_M),
    "sae dead counts the rarely active": ("aectl/objectives/sae.py", "(self.fired == 0)", "(self.fired <= 1)", _SAE_M),
    "sae l0 counts negative latents": ("aectl/objectives/sae.py", "active = z > 0", "active = z != 0", _SAE_M),
    "sae decoder cosine includes itself": ("aectl/objectives/sae.py", 'cos.fill_diagonal_(float("-inf"))', "cos = cos",
                                           _SAE_M),
    "sae mmcs over the decoder rows": ("aectl/objectives/sae.py",
                                       "best = max_cosine(true_directions.to(w_dec.device), w_dec)",
                                       "best = max_cosine(w_dec, true_directions.to(w_dec.device))", _SAE_M),
    "sparse synthetic directions not unit": ("aectl/datasets/builtin.py",
                                             "directions /= directions.norm(dim=1, keepdim=True)",
                                             "directions = directions", _SAE_M),
    "eval without the ground truth": ("aectl/evaluation/evaluate.py",
                                      "values.update(sae.direction_recovery(data.directions, model.W_dec.detach()))",
                                      "pass", _SAE_M),
})

_EXPORT, _FRONTIER = ["tests/test_sae_export.py"], ["tests/test_sae_report.py"]
_EXPORT_PY, _PLOTS_PY = "aectl/evaluation/export.py", "aectl/report/plots.py"
MUTANTS.update({  # interop: `aectl export format=saelens` (the scale folding, the fields) and the L0–FVU frontier
    "interop export W_enc without the gain": (_EXPORT_PY, '"W_enc": gain[:, None] * w_enc', '"W_enc": w_enc', _EXPORT),
    "interop export W_dec times the gain": (_EXPORT_PY, '"W_dec": w_dec / gain[None, :]',
                                            '"W_dec": w_dec * gain[None, :]', _EXPORT),
    "interop export b_dec not rescaled": (_EXPORT_PY, '"b_dec": shift + model.b_dec.detach().double() / gain',
                                          '"b_dec": shift + model.b_dec.detach().double()', _EXPORT),
    "interop export b_dec without the shift": (_EXPORT_PY, '"b_dec": shift + model.b_dec.detach().double() / gain',
                                               '"b_dec": model.b_dec.detach().double() / gain', _EXPORT),
    "interop export normalisation scale unread": (_EXPORT_PY, 'return shift, gain * float(scaler["scale"])',
                                                  "return shift, gain", _EXPORT),
    "interop export scaler spread unfolded": (_EXPORT_PY, "gain = gain / spread", "gain = gain", _EXPORT),
    "interop export batchtopk threshold lost": (_EXPORT_PY, ".clamp_min(0).expand(model.num_latents)",
                                                ".clamp_min(0).expand(model.num_latents) * 0", _EXPORT),
    "interop export jumprelu log threshold": (_EXPORT_PY, 'weights["threshold"] = model.threshold.detach().double()\n',
                                              'weights["threshold"] = model.log_threshold.detach().double()\n',
                                              _EXPORT),
    "interop export batchtopk as topk": (_EXPORT_PY, '"batchtopk": "jumprelu"', '"batchtopk": "topk"', _EXPORT),
    "interop export k of the aux": (_EXPORT_PY, 'cfg |= {"k": model.k,', 'cfg |= {"k": model.k_aux,', _EXPORT),
    "interop export d_sae as d_in": (_EXPORT_PY, '"d_sae": model.num_latents', '"d_sae": model.d_in', _EXPORT),
    "interop export b_dec not applied to the input": (_EXPORT_PY, '"apply_b_dec_to_input": True',
                                                      '"apply_b_dec_to_input": False', _EXPORT),
    "interop export of any model": (_EXPORT_PY, 'if kind != "sae":', "if False:", _EXPORT),
    "interop frontier axes swapped": (_PLOTS_PY,
                                      'points = [(j.metrics["val/l0"], j.metrics["val/fvu"]) for j in saes]',
                                      'points = [(j.metrics["val/fvu"], j.metrics["val/l0"]) for j in saes]',
                                      _FRONTIER),
    "interop frontier of any model": (_PLOTS_PY, '(j.config.get("model") or {}).get("kind") == "sae"', "True",
                                      _FRONTIER),
})


ACTS = "tests/test_activations.py"
MUTANTS.update({  # dataset=activations: read in place, seeded chunks, limit, normalisation
    "activations: shuffle ignores the global seed": (
        "aectl/datasets/disk_rows.py", "manual_seed(int(torch.randint(2**62, (1,))))", "manual_seed(0)",
        [ACTS + "::test_a_shuffled_epoch_is_every_train_row_once_in_an_order_fixed_by_the_global_seed"]),
    "activations: rows of a chunk not shuffled": (
        "aectl/datasets/disk_rows.py", "                rows = rows[torch.randperm(len(rows), generator=generator).to(rows.device)]\n",
        "                rows = rows\n", [ACTS + "::test_a_shuffled_epoch_is_every_train_row_once_in_an_order_fixed_by_the_global_seed"]),
    "activations: limit ignored": (
        "aectl/datasets/activations.py", "        train = train[:d.limit]  # before any row is read\n", "        pass\n",
        [ACTS + "::test_the_split_is_seeded_and_limit_cuts_the_train_rows_before_any_is_read"]),
    "activations: normalisation scale squared": (
        "aectl/datasets/activations.py", 'math.sqrt(rows.shape[1] / mean_sq)', 'rows.shape[1] / mean_sq',
        [ACTS + "::test_normalisation_makes_the_mean_squared_norm_d_and_a_saved_scale_is_reused"]),
    "activations: a saved scale not reused": (
        "aectl/datasets/activations.py", "    scaler = scaler if scaler is not None else _fit_normalization(rows, d.normalize)",
        "    scaler = _fit_normalization(rows, d.normalize)",
        [ACTS + "::test_normalisation_makes_the_mean_squared_norm_d_and_a_saved_scale_is_reused"]),
    "activations: a scattered read spans the file": (
        "aectl/datasets/disk_rows.py", "((mine[1:] - mine[:-1]) > _GAP)", "((mine[1:] - mine[:-1]) > 10**12)",
        [ACTS + "::test_a_2gb_float16_file_trains_in_a_fraction_of_its_size"]),
    "activations: NaN rows pass": (
        "aectl/datasets/disk_rows.py", "                if bad.any():\n", "                if False:\n",
        [ACTS + "::test_bad_activations_are_one_line_naming_the_key_and_the_value"]),
    "activations: bfloat16 bits read as float16": (
        "aectl/datasets/disk_rows.py", "rows.view(torch.bfloat16) if self.bfloat16 else rows", "rows",
        [ACTS + "::test_every_format_gives_each_row_once_split_three_ways"]),
})


LIK = "tests/test_likelihood_models.py"
MUTANTS.update({  # the VampPrior, the two-stochastic-layer model, the burda schedule, kept checkpoints
    "vamp: the mixture's largest component": (
        "aectl/models/priors.py", "return (log_n.logsumexp(-1) - math.log(mu_k.shape[0]))",
        "return (log_n.max(-1).values - math.log(mu_k.shape[0]))", [LIK]),
    "vamp: no 1/K": ("aectl/models/priors.py", "return (log_n.logsumexp(-1) - math.log(mu_k.shape[0]))",
                     "return (log_n.logsumexp(-1) - 0)", [LIK]),
    "vamp: cross term sign": ("aectl/models/priors.py", "quadratic = (flat.square() @ precision.T - 2 * flat",
                              "quadratic = (flat.square() @ precision.T + 2 * flat", [LIK]),
    "vamp: variance for precision": ("aectl/models/priors.py", "precision = (-logvar_k).exp()",
                                     "precision = logvar_k.exp()", [LIK]),
    "vamp: log-determinant dropped": ("aectl/models/priors.py", "log_n = -0.5 * (quadratic + logvar_k.sum(-1) +",
                                      "log_n = -0.5 * (quadratic + 0 +", [LIK]),
    "vamp: pseudo-inputs not clipped": ("aectl/models/priors.py", "return F.hardtanh(self.raw, *self.value_range)",
                                        "return self.raw", [LIK]),
    "vamp: samples from N(0, I)": ("aectl/models/variational.py",
                                   "return sample_mixture(*self.encode(self.pseudo_inputs()), n, generator)",
                                   "return torch.randn((n, self.latent_dim), generator=generator, device=device)",
                                   [LIK]),
    "vamp: closed-form KL with N(0, I)": ("aectl/objectives/objective.py", '        if self.prior == "gaussian":\n'
                                          "            return losses.gaussian_kl", "        if True:\n"
                                          "            return losses.gaussian_kl", [LIK]),
    "vamp: prior not wired into the objective": ("aectl/objectives/objective.py",
                                                 'prior=(model or {}).get("prior", "gaussian"),', 'prior="gaussian",',
                                                 [LIK]),
    "vamp: eval's IW with N(0, I)": ("aectl/objectives/metrics.py",
                                     'if getattr(model, "pseudo_inputs", None) is not None:\n        return log_px_z',
                                     "if False:\n        return log_px_z", [LIK]),
    "vamp: allowed for a cvae": ("aectl/config/variational_checks.py", "m.prior, m.kind in VAMP_KINDS,",
                                 "m.prior, True,", [LIK]),
    "hvae: p(z1|z2) replaced by N(0, I)": (
        "aectl/objectives/losses.py",
        "log_p = gaussian_log_density(draw.z1, draw.prior_mu1, draw.prior_logvar1)",
        "log_p = standard_normal_log_prob(draw.z1)", [LIK]),
    "hvae: q(z2|z1) left out of log q": ("aectl/objectives/losses.py",
                                         "+ gaussian_log_density(draw.z2, draw.mu2, draw.logvar2)", "", [LIK]),
    "hvae: q(z2|·) of the mean z1": ("aectl/models/hierarchical.py", "mu2, logvar2 = self.encode_upper(z1)",
                                     "mu2, logvar2 = self.encode_upper(mu1.expand_as(z1))", [LIK]),
    "hvae: the ELBO without beta": ("aectl/objectives/objective.py", "loss = (-log_px_z + beta * kl).mean()",
                                    "loss = (-log_px_z + kl).mean()", [LIK]),
    "hvae: L_k as the mean log weight": ("aectl/objectives/objective.py",
                                         "loss = -losses.importance_weighted_bound(log_px_z - kl).mean()",
                                         "loss = -(log_px_z - kl).mean()", [LIK]),
    "hvae: k not wired to the bound": ("aectl/objectives/objective.py", "iw_samples=k if k > 1 else 0)",
                                       "iw_samples=0)", [LIK]),
    "hvae: eval's IW without -log k": ("aectl/objectives/metrics.py",
                                       "torch.logaddexp(total, part)\n    return total - math.log(k)",
                                       "torch.logaddexp(total, part)\n    return total", [LIK]),
    "hvae: active units of z2 are z1's": ("aectl/evaluation/validation.py",
                                          "metrics.active_units(torch.cat(self.upper_codes))[0]",
                                          "metrics.active_units(codes)[0]", [LIK]),
    "burda: stages of 2^i epochs": ("aectl/training/lr_schedules.py", "end += 3 ** stage", "end += 2 ** stage", [LIK]),
    "burda: 10^(-i/8)": ("aectl/training/lr_schedules.py", "return base_lr * 10 ** (-burda_stage(epoch) / 7)",
                         "return base_lr * 10 ** (-burda_stage(epoch) / 8)", [LIK]),
    "keep_every ignored": ("aectl/training/trainer.py",
                           "if settings.keep_every and progress.epoch % settings.keep_every == 0:",
                           "if False:", [LIK]),
})


def run(name: str, file: str, original: str, broken: str, tests: list[str]) -> bool:
    """Apply one mutant, run its tests; True if a test failed (the mutant was caught)."""
    path = ROOT / file
    source = path.read_text()
    if source.count(original) != 1:
        raise SystemExit(f"{name}: the snippet occurs {source.count(original)} times in {file}; expected once")
    path.write_text(source.replace(original, broken))
    try:
        # PYTHONPATH: the subprocesses of the tests (torchrun's ranks) import this tree's aectl too.
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        path.write_text(source)
    failed = [line.split(" - ")[0] for line in proc.stdout.splitlines() if line.startswith("FAILED")]
    print(f"{'caught  ' if proc.returncode else 'SURVIVED'}  {name}: {failed[0] if failed else '-'}", flush=True)
    return proc.returncode != 0


def main(words: list[str]) -> int:
    chosen = {n: m for n, m in MUTANTS.items() if not words or any(w in n for w in words)}
    survived = [name for name, mutant in chosen.items() if not run(name, *mutant)]
    print(f"{len(chosen) - len(survived)} of {len(chosen)} mutants caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
