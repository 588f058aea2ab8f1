"""The report's PNG plots: each metric against each numeric swept key, the VAEs' rate–distortion
and the sparse autoencoders' sparsity–fidelity frontier."""

from pathlib import Path

from aectl.report.jobs import Job
from aectl.report.ranking import Report, finite, param_value, swept_params
from aectl.runs.tables import format_value


def numeric_params(report: Report) -> list[str]:
    """Swept keys with a number in every finished job along which some jobs form a line: two
    values or more with every other swept key the same (runs that each changed something else,
    as outputs/ holds, share no such key and get no plot of single points)."""
    ok = [j for j in report.jobs if j.status == "ok"]
    numeric = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    return [p for p in report.params if ok and all(numeric(param_value(j, p)) for j in ok) and line_groups(report, p)]


def log_scale(values: list[float]) -> bool:
    """A log x-axis when positive values span two decades or more (K = 2..512, lr = 1e-4..1e-2)."""
    return min(values) > 0 and max(values) / min(values) >= 100


def _label(job: Job, keys: list[str]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={format_value(param_value(job, k))}" for k in keys) or job.name


def line_groups(report: Report, param: str) -> dict[str, list[Job]]:
    """The finished jobs by the values of the other swept keys: one plotted line (and legend
    entry, e.g. "beta=0.5") each; a key a job did not override shows the value it ran with.
    Only lines of two values of `param` or more: a job alone in its combination is no curve
    against `param` (the table shows it)."""
    others = [p for p in report.params if p != param]
    groups: dict[str, list[Job]] = {}
    for job in (j for j in report.jobs if j.status == "ok"):
        groups.setdefault(_label(job, others) if others else "", []).append(job)
    return {label: jobs for label, jobs in groups.items() if len({repr(param_value(j, param)) for j in jobs}) > 1}


def plot_param(report: Report, param: str, out: Path) -> Path:
    """One panel per metric against `param`; one line per combination of the other swept keys."""
    import matplotlib.pyplot as plt

    ok = [j for j in report.jobs if j.status == "ok"]
    metrics = [m for m in report.shown if any(finite(j.metrics.get(m)) for j in ok)]
    others = [p for p in report.params if p != param]
    groups = line_groups(report, param)
    log_x = log_scale([param_value(j, param) for j in ok])
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for label, jobs in groups.items():
            points = sorted((param_value(j, param), j.metrics[metric]) for j in jobs if finite(j.metrics.get(metric)))
            if points:
                ax.plot(*zip(*points), marker="o", label=label or None)
        ax.set(title=metric, xlabel=param, xscale="log" if log_x else "linear")
        ax.grid(alpha=0.3)
        if others:
            ax.legend(fontsize="x-small")
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    fig.tight_layout()
    path = out / f"metrics_vs_{param.replace('/', '_')}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# Where a point's label may go, in points from the point: right-up first, then stacked above
# and below it, right of it and then left of it.
LABEL_OFFSETS = tuple((dx, dy) for dx in (4, -6) for dy in (4, -12, 20, -28, 36, -44))


def place_labels(fig, ax, points, labels) -> None:
    """Annotate each point with its label at the first offset where the label overlaps no label
    placed before it (the last offset if every one does)."""
    fig.canvas.draw()  # settles the axes' limits: the labels' extents depend on them
    renderer = fig.canvas.get_renderer()
    placed = []
    for point, label in zip(points, labels):
        for dx, dy in LABEL_OFFSETS:
            text = ax.annotate(label, point, textcoords="offset points", xytext=(dx, dy), fontsize="small",
                               ha="left" if dx > 0 else "right")
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            if not any(box.overlaps(other) for other in placed) or (dx, dy) == LABEL_OFFSETS[-1]:
                placed.append(box)
                break
            text.remove()


def plot_rate_distortion(report: Report, out: Path) -> Path | None:
    """VAE jobs in the rate–distortion plane: val KL (rate) against val reconstruction
    (distortion), both in nats per example, one labelled point per job."""
    import matplotlib.pyplot as plt

    vaes = [j for j in report.jobs if j.status == "ok" and (j.config.get("model") or {}).get("kind") in ("vae", "cvae")
            and finite(j.metrics.get("val/kl")) and finite(j.metrics.get("val/recon"))]
    if not vaes:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    points = [(j.metrics["val/kl"], j.metrics["val/recon"]) for j in vaes]
    ax.scatter(*zip(*points))
    ax.set(xlabel="rate: val KL(q(z|x) ‖ p(z)) [nats]", ylabel="distortion: val reconstruction [nats]",
           title="rate–distortion")
    ax.margins(x=0.3, y=0.1)  # room for the labels of the outermost points
    ax.grid(alpha=0.3)
    fig.tight_layout()
    place_labels(fig, ax, points, [_label(job, report.params) for job in vaes])
    path = out / "rate_distortion.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sparsity_fidelity_jobs(report: Report) -> list[Job]:
    """The finished sparse-autoencoder jobs with a finite val L0 and val FVU."""
    return [j for j in report.jobs if j.status == "ok" and (j.config.get("model") or {}).get("kind") == "sae"
            and finite(j.metrics.get("val/l0")) and finite(j.metrics.get("val/fvu"))]


def sparsity_fidelity_figure(report: Report):
    """SAE jobs in the sparsity–fidelity plane: val L0 (mean active latents per example) against
    val FVU (fraction of variance unexplained), one labelled point per job; None without such jobs."""
    import matplotlib.pyplot as plt

    saes = sparsity_fidelity_jobs(report)
    if not saes:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    points = [(j.metrics["val/l0"], j.metrics["val/fvu"]) for j in saes]
    ax.scatter(*zip(*points))
    ax.set(xlabel="sparsity: val L0 [mean active latents per example]",
           ylabel="fidelity: val FVU [fraction of variance unexplained]", title="sparsity–fidelity frontier",
           xscale="log" if log_scale([x for x, _ in points]) else "linear")
    ax.margins(x=0.3, y=0.1)  # room for the labels of the outermost points
    ax.grid(alpha=0.3)
    fig.tight_layout()
    swept = swept_params(saes)  # what differs between the SAEs (not model=sae beside other models' jobs)
    place_labels(fig, ax, points, [_label(job, swept) for job in saes])
    return fig


def plot_sparsity_fidelity(report: Report, out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    fig = sparsity_fidelity_figure(report)
    if fig is None:
        return None
    path = out / "sparsity_fidelity.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_all(report: Report, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    images = [plot_param(report, p, out) for p in numeric_params(report)]
    pictures = (plot_rate_distortion(report, out), plot_sparsity_fidelity(report, out))
    return images + [p for p in pictures if p]
