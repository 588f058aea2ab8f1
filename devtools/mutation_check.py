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

# name: (file, original snippet, broken snippet, test files that must catch it)
MUTANTS = {
    "beta ignored": ("aectl/objective.py", "loss = loss + beta * kl", "loss = loss + kl",
                     ["tests/test_objective.py"]),
    "sparsity weight dropped": ("aectl/objective.py", "penalty = self.penalty_beta * losses.kl_sparsity",
                                "penalty = losses.kl_sparsity", ["tests/test_objective.py"]),
    "l1 weight dropped": ("aectl/objective.py", "penalty = self.l1_weight * losses.l1_activity",
                          "penalty = losses.l1_activity", ["tests/test_objective.py"]),
    "kl summed over the batch": ("aectl/objective.py",
                                 "kl = losses.gaussian_kl(out.mu, out.logvar).mean()\n            loss = loss + beta",
                                 "kl = losses.gaussian_kl(out.mu, out.logvar).sum()\n            loss = loss + beta",
                                 ["tests/test_objective.py"]),
    "z = mu + sigma^2 eps": ("aectl/models.py", "return mu + (0.5 * logvar).exp() * eps",
                             "return mu + logvar.exp() * eps", ["tests/test_objective.py"]),
    "forward ignores the reparameterisation": (
        "aectl/models.py",
        "z = reparameterize(mu, logvar, torch.randn_like(mu))\n        return ModelOutput(self.decode(z), z",
        "z = mu + torch.randn_like(mu)\n        return ModelOutput(self.decode(z), z", ["tests/test_objective.py"]),
    "cyclical period in epochs": ("aectl/build.py", "ratio=s.ratio, total_steps=total_steps)",
                                  "ratio=s.ratio, total_steps=config.trainer.epochs)", ["tests/test_wiring.py"]),
    "validation at the current beta": (
        "aectl/trainer.py", "                        self.target_beta, self.eval_batch, labels=labels)",
        "                        self.loop.beta_at(self.progress.step), self.eval_batch, labels=labels)",
        ["tests/test_wiring.py"]),
    "eval ignores the trained beta": ("aectl/evaluation.py", 'float(config.get("beta", 1.0)), kind == "cvae")',
                                      '1.0, kind == "cvae")', ["tests/test_wiring.py"]),
    "recon averaged over features": ("aectl/losses.py",
                                     'squared = F.mse_loss(recon, x, reduction="sum") / len(x)',
                                     "squared = F.mse_loss(recon, x) / len(x)", ["tests/test_objective.py"]),
    "gaussian constant dropped": ("aectl/losses.py",
                                  "return squared / (2 * sigma ** 2) + gaussian_log_norm(x[0].numel(), sigma)\n"
                                  "    per_element", "return squared / (2 * sigma ** 2)\n    per_element",
                                  ["tests/test_losses.py"]),
    "sigma for sigma^2 in the training loss": (
        "aectl/losses.py", "squared = F.mse_loss(recon, x, reduction=\"sum\") / len(x)\n        return squared / "
        "(2 * sigma ** 2)", "squared = F.mse_loss(recon, x, reduction=\"sum\") / len(x)\n        return squared / "
        "(2 * sigma)", ["tests/test_objective.py"]),
    "sigma for sigma^2 in the likelihood": (
        "aectl/losses.py", "squared = (recon - x).square().flatten(1).sum(1)\n        return squared / (2 * sigma ** 2)",
        "squared = (recon - x).square().flatten(1).sum(1)\n        return squared / (2 * sigma)",
        ["tests/test_wiring.py"]),
    "sigma not wired to eval": ("aectl/metrics.py",
                                "_sampled_log_likelihood(recon, x.reshape(n, -1), model.likelihood, model.sigma)",
                                "_sampled_log_likelihood(recon, x.reshape(n, -1), model.likelihood, 0.5 ** 0.5)",
                                ["tests/test_wiring.py"]),
    "iw bernoulli x·l with the wrong sign": ("aectl/metrics.py", "addcmul_(recon, x, value=-1)",
                                             "addcmul_(recon, x, value=1)", ["tests/test_metrics.py"]),
    "iw gaussian constant dropped": ("aectl/metrics.py",
                                     "-(squared / (2 * sigma ** 2) + losses.gaussian_log_norm(x.shape[1], sigma))",
                                     "-(squared / (2 * sigma ** 2))", ["tests/test_metrics.py"]),
    "iw copies x per sample": ("aectl/metrics.py", "nll = F.softplus(recon).addcmul_(recon, x, value=-1)",
                               "nll = F.softplus(recon) - recon * x.expand_as(recon).contiguous()",
                               ["tests/test_metrics.py"]),
    "probe on the default BLAS threads": ("aectl/metrics.py", "threadpool_limits(limits=1, user_api=\"blas\")",
                                          "threadpool_limits(limits=None, user_api=\"blas\")",
                                          ["tests/test_metrics.py"]),
    "continuous Bernoulli normaliser sign": ("aectl/losses.py",
                                             "per_element = per_element - continuous_bernoulli_log_norm(recon)",
                                             "per_element = per_element + continuous_bernoulli_log_norm(recon)",
                                             ["tests/test_losses.py"]),
    "kl term of the closed form": ("aectl/losses.py", "(1 + logvar - mu.square() - logvar.exp())",
                                   "(1 + logvar - mu.square() - logvar)", ["tests/test_losses.py"]),
    "rho hat over all entries": ("aectl/losses.py", "rho_hat = code.mean(0).clamp(eps, 1 - eps)",
                                 "rho_hat = code.mean().clamp(eps, 1 - eps)", ["tests/test_objective.py"]),
    "iw without -log k": ("aectl/metrics.py", "return total - math.log(k)", "return total",
                          ["tests/test_wiring.py"]),
    "masking probability halved": ("aectl/noise.py", "return corrupt(x, self.kind, sigma=self.sigma, clip=self.clip, "
                                   "p=self.p,", "return corrupt(x, self.kind, sigma=self.sigma, clip=self.clip, "
                                   "p=self.p / 2,", ["tests/test_wiring.py"]),
    # (Pepper at u < p with salt at p/2 ≤ u < p would be the same distribution: not a mutant.)
    "pepper at p/4": ("aectl/noise.py", "noisy = torch.where(u < p / 2, torch.full_like(x, v_min), x)",
                      "noisy = torch.where(u < p / 4, torch.full_like(x, v_min), x)", ["tests/test_wiring.py"]),
    "salt at p": ("aectl/noise.py", "torch.where((u >= p / 2) & (u < p), torch.full_like(x, v_max), noisy)",
                  "torch.where((u >= p / 2) & (u < 1.5 * p), torch.full_like(x, v_max), noisy)",
                  ["tests/test_wiring.py"]),
    "gaussian noise with sigma^2": ("aectl/noise.py", "noisy = x + sigma * torch.randn",
                                    "noisy = x + sigma ** 2 * torch.randn", ["tests/test_wiring.py"]),
    "noise range fixed to [0, 1]": ("aectl/build.py", "    low, high = data.value_range((\"train\",))\n    return {",
                                    "    low, high = 0.0, 1.0\n    return {", ["tests/test_data_integrity.py"]),
    "binarization drawn once": ("aectl/datasets/load.py", 'if how == "threshold" or name != "train":', "if True:",
                                ["tests/test_wiring.py"]),
    "image files scaled per pixel": ("aectl/datasets/scaling.py", "fit_scaler(data.train, mode, raw.tabular, fixed)",
                                     "fit_scaler(data.train, mode, True, None)",
                                     ["tests/test_data_integrity.py"]),
    "minmax val/test left unclipped": ("aectl/datasets/scaling.py", "setattr(data, name, x.clamp(0, 1))", "pass",
                                       ["tests/test_data_integrity.py"]),
    "psnr in amplitude dB": ("aectl/metrics.py", "return 10 * torch.log10(max_val ** 2 / mse)",
                             "return 20 * torch.log10(max_val ** 2 / mse)", ["tests/test_wiring.py"]),
    "psnr from the noisy input": ("aectl/validation.py", "raw = out.recon if not self.noisy and out.mu is None "
                                  "else model.decode(code)", "raw = out.recon", ["tests/test_wiring.py"]),
    "active units by std": ("aectl/metrics.py", "variances = mu_all.var(0, unbiased=False)",
                            "variances = mu_all.std(0)", ["tests/test_wiring.py"]),
    "ddp plain average": ("aectl/distributed.py", "buffer = bucket.buffer().mul_(state.weight)",
                          "buffer = bucket.buffer().mul_(1 / state.world_size)", ["tests/test_scaling.py"]),
    "ddp ranks share epsilon": ("aectl/distributed.py", "        if not self.rank:\n            return contextlib",
                                "        if True:\n            return contextlib", ["tests/test_scaling.py"]),
    # Resume and logging paths.
    "stop request read twice": ("aectl/trainer.py", "raise run.interrupt(signum)  # it came during validation",
                                "raise run.interrupt(stop_requested())  # it came during validation",
                                ["tests/test_resume.py"]),
    "beta curve laid out anew at resume": ("aectl/build.py", "    if resume is None:\n        total =",
                                           "    if True:\n        total =",
                                           ["tests/test_resume.py"]),
    "resume takes any override": ("aectl/cli/resume.py", "if key not in safe and old != new:", "if False:",
                                  ["tests/test_resume.py"]),
    "history of one segment": ("aectl/trainer.py", 'list(history.get("val_loss", []))', "[]",
                               ["tests/test_resume.py"]),
    "no best.pt in a continued run": ("aectl/cli/tasks.py", "            build.adopt_best_checkpoint(Path(source), run_dir)",
                                      "            pass", ["tests/test_resume.py"]),
    "cosine over twice the run": ("aectl/lr_schedules.py", "0.5 * (1.0 + math.cos(math.pi * done))",
                                  "0.5 * (1.0 + math.cos(math.pi * done / 2))", ["tests/test_lr_schedules.py"]),
    "warm-up starts at lr 0": ("aectl/lr_schedules.py", "base_lr * (step + 1) / warmup_steps",
                               "base_lr * step / warmup_steps", ["tests/test_lr_schedules.py"]),
    "step schedule decays every other period": ("aectl/lr_schedules.py", "gamma ** (epoch // step_size)",
                                                "gamma ** (epoch // (2 * step_size))", ["tests/test_lr_schedules.py"]),
    "plateau factor applied once": ("aectl/lr_schedules.py", "base_lr * factor ** reductions",
                                    "base_lr * factor ** min(reductions, 1)", ["tests/test_lr_schedules.py"]),
    "cosine length in epochs": ("aectl/build.py", "factor=r.factor, total_steps=total_steps)",
                                "factor=r.factor, total_steps=config.trainer.epochs)", ["tests/test_lr_schedules.py"]),
    "patience ignored": ("aectl/lr_schedules.py", "return patience > 0 and self.bad_epochs >= patience",
                         "return patience > 0 and self.bad_epochs >= 1", ["tests/test_lr_schedules.py"]),
    "min_delta ignored": ("aectl/lr_schedules.py", "if score < self.best - min_delta:",
                          "if score < self.best:", ["tests/test_lr_schedules.py"]),
    "last partial log interval dropped": ("aectl/trainer.py", "        if self.interval.steps:\n", "        if False:\n",
                                          ["tests/test_train.py"]),
    # the conditional VAE (model=cvae): the label's code and each wire that carries it
    "one-hot at the wrong column": ("aectl/models.py", "scatter_(1, y.long().unsqueeze(1), 1.0)",
                                    "scatter_(1, (num_classes - 1 - y.long()).unsqueeze(1), 1.0)",
                                    ["tests/test_cvae.py"]),
    "cvae decoder ignores the label": (
        "aectl/models.py", "torch.cat([z, one_hot(y, self.num_classes).to(z.dtype)], 1)",
        "torch.cat([z, 0 * one_hot(y, self.num_classes).to(z.dtype)], 1)", ["tests/test_cvae.py"]),
    "cvae encoder ignores the label": ("aectl/models.py", "return torch.cat([x.flatten(1), y1.to(x.dtype)], 1)",
                                       "return torch.cat([x.flatten(1), 0 * y1.to(x.dtype)], 1)",
                                       ["tests/test_cvae.py"]),
    "cvae batch labels dropped": ("aectl/trainer.py", "            y = dist.shard(y)",
                                  "            y = torch.zeros_like(dist.shard(y))", ["tests/test_cvae.py"]),
    "cvae labels paired with other examples": ("aectl/objective.py", "model(x_in) if y is None else model(x_in, y)",
                                               "model(x_in) if y is None else model(x_in, y.flip(0))",
                                               ["tests/test_cvae.py"]),
    "cvae validation without its labels": ("aectl/validation.py", "            model = model.given(y)",
                                           "            model = model.given(torch.zeros_like(y))",
                                           ["tests/test_cvae.py"]),
    "cvae IW labels not tiled": ("aectl/models.py", "return self.y.repeat(rows // len(self.y))",
                                 "return self.y.repeat_interleave(rows // len(self.y))", ["tests/test_cvae.py"]),
}
_VQ = ["tests/test_vqvae.py"]
MUTANTS.update({  # the VQ-VAE
    "vq farthest code": ("aectl/quantizer.py", "return distances.argmin(1)", "return distances.argmax(1)", _VQ),
    "vq no straight-through": ("aectl/quantizer.py", "return z_e + (z_q - z_e).detach()", "return z_q", _VQ),
    "vq forward skips straight-through": ("aectl/models.py", "z = straight_through(vq.z_e, vq.z_q).flatten(1)",
                                          "z = vq.z_q.flatten(1)", _VQ),
    "vq commitment weight dropped": ("aectl/objective.py", "commitment = self.commitment * losses.vq_commitment",
                                     "commitment = losses.vq_commitment", _VQ),
    "vq commitment moves the codes": ("aectl/losses.py", "return (z_e - z_q.detach()).square()",
                                      "return (z_e - z_q).square()", _VQ),
    "vq codebook term dropped": ("aectl/objective.py", "codebook = None if self.ema else losses.vq_codebook(z_e, z_q)",
                                 "codebook = None", _VQ),
    "vq ema without Laplace smoothing": ("aectl/quantizer.py",
                                         "smoothed = (cluster_size + eps) / (total + k * eps) * total",
                                         "smoothed = cluster_size", _VQ),
    "vq dead codes one step late": ("aectl/quantizer.py", "dead = self.unused_steps >= self.dead_code_steps",
                                    "dead = self.unused_steps > self.dead_code_steps", _VQ),
    "vq split counts of the last batch": ("aectl/validation.py", "self.code_counts = self.code_counts + quantizer",
                                          "self.code_counts = quantizer", _VQ),
})

MUTANTS.update({  # the contractive penalty and the IWAE
    "contractive closed form without the square": (
        "aectl/contractive.py", "return (h * (1 - h)).square() @ weight.square().sum(1)",
        "return (h * (1 - h)) @ weight.square().sum(1)", ["tests/test_contractive.py"]),
    "jacobian rows summed before squaring": ("aectl/contractive.py", "rows.square().flatten(2).sum(2).sum(0)",
                                             "rows.flatten(2).sum(2).square().sum(0)", ["tests/test_contractive.py"]),
    "contractive weight dropped": ("aectl/objective.py", "penalty = self.contractive_weight * jacobian_sq.mean()",
                                   "penalty = jacobian_sq.mean()", ["tests/test_contractive.py"]),
    "contractive penalty not differentiated": ("aectl/objective.py", "create_graph=training)", "create_graph=False)",
                                               ["tests/test_contractive.py"]),
    "eval reports the squared jacobian norm": ("aectl/validation.py", "create_graph=False).detach().sqrt()",
                                               "create_graph=False).detach()", ["tests/test_contractive.py"]),
    "iwae bound is the mean log weight": (
        "aectl/losses.py", "return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])", "return log_w.mean(0)",
        ["tests/test_iwae.py"]),
    "iwae log q added": ("aectl/objective.py", "log_w = log_px_z + log_pz - losses.gaussian_log_density",
                         "log_w = log_px_z + log_pz + losses.gaussian_log_density", ["tests/test_iwae.py"]),
    "ess of unnormalised weights": ("aectl/losses.py", "return 1 / torch.softmax(log_w, 0).square().sum(0)",
                                    "return 1 / log_w.exp().square().sum(0)", ["tests/test_iwae.py"]),
    "iwae k not wired to training": ("aectl/build.py", "vars(config.penalty), m.k,", "vars(config.penalty), 1,",
                                     ["tests/test_iwae.py"]),
    "iwae k not wired to eval": ("aectl/evaluation.py", 'getattr(model, "k", 1),', "1,", ["tests/test_iwae.py"]),
    "report ranks the loss across objectives": (
        "aectl/report/ranking.py", 'm.rsplit("/", 1)[-1] in OBJECTIVE_TERMS', "False", ["tests/test_report.py"]),
    "epoch score ignores the monitor's direction": (
        "aectl/monitor.py", 'return value if direction(name) == "minimize" else -value', "return value",
        ["tests/test_lr_schedules.py"]),
    "best.pt by the val loss, not the monitor": (
        "aectl/trainer.py", "score = epoch_score(val, settings.monitor)", 'score = val["loss"]',
        ["tests/test_lr_schedules.py"]),
    "plateau and early stopping on the val loss": (
        "aectl/trainer.py", "self.watch_plateaus(score)", 'self.watch_plateaus(val["loss"])',
        ["tests/test_lr_schedules.py"]),
    "monitor's history not restored on resume": (
        "aectl/trainer.py", 'score_history=list(history.get("score", history.get("val_loss", [])))',
        'score_history=list(history.get("val_loss", []))', ["tests/test_lr_schedules.py"]),
    "best epoch of the val loss history": (
        "aectl/trainer.py", "history = progress.score_history\n", "history = progress.val_history\n",
        ["tests/test_lr_schedules.py"]),
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
