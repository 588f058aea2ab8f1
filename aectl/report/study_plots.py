"""The plots of an Optuna study in the report, drawn with matplotlib (no plotly): the history of
the first objective, each objective against each parameter, every trial's intermediate curve,
and the Pareto front of a two-objective study. `study` is an aectl.report.study.Study."""

from pathlib import Path


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def running_best(study) -> list[tuple[int, float]]:
    """(trial number, best first objective so far) after each completed trial."""
    best, out = None, []
    better = (lambda a, b: a > b) if study.direction == "MAXIMIZE" else (lambda a, b: a < b)
    for t in study.complete():
        best = t.value if best is None or better(t.value, best) else best
        out.append((t.number, best))
    return out


def plot_history(study, out_dir: Path):
    import matplotlib.pyplot as plt

    done = study.complete()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([t.number for t in done], [t.value for t in done], label=study.metric(0))
    steps = running_best(study)
    ax.step([n for n, _ in steps], [b for _, b in steps], where="post", color="C1", label="best so far")
    ax.set(xlabel="trial", ylabel=study.metric(0), title=f"{study.name} ({study.direction.lower()})")
    ax.legend()
    return _save(fig, out_dir / "optimization_history.png")


def plot_params(study, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    done, paths = study.complete(), []
    for key in dict.fromkeys(k for t in done for k in t.params):
        xs = [(t.params[key], t.value) for t in done if key in t.params]
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter([str(x) if isinstance(x, str) else x for x, _ in xs], [v for _, v in xs])
        ax.set(xlabel=key, ylabel=study.metric(0), title=f"{study.name}: {study.metric(0)} vs {key}")
        paths.append(_save(fig, out_dir / f"objective_vs_{key}.png"))
    return paths


def plot_intermediate(study, out_dir: Path) -> Path | None:
    """intermediate_values.png: the monitored val value after each epoch, one curve per trial;
    a PRUNED trial's curve dashed and ending in an ×, at the epoch it was stopped after."""
    import matplotlib.pyplot as plt

    curves = [t for t in study.trials if t.intermediate]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20").colors  # one colour per trial up to 20
    for i, t in enumerate(curves):
        epochs, values = zip(*sorted(t.intermediate.items()))
        pruned = t.state == "PRUNED"
        ax.plot(epochs, values, color=colors[i % len(colors)], ls="--" if pruned else "-", marker=".", alpha=0.8,
                label=f"trial {t.number}" + (f" (pruned at epoch {t.pruned_epoch})" if pruned else ""))
        if pruned:
            ax.plot(epochs[-1], values[-1], "x", color="k", ms=9, mew=2)
    ax.set(xlabel="epoch", ylabel=study.metric(0), title=f"{study.name}: {study.metric(0)} per epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=1 + len(curves) // 16, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside
    return _save(fig, out_dir / "intermediate_values.png")


def plot_pareto(study, out_dir: Path) -> Path | None:
    """pareto_front.png: every complete trial in the plane of the two objectives, the front's
    trials highlighted, joined and labelled with their trial numbers."""
    import matplotlib.pyplot as plt

    done = study.complete()
    if len(study.directions) != 2 or not done:
        return None
    front = study.pareto_front()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter([t.values[0] for t in done], [t.values[1] for t in done], color="0.6", label="complete trials")
    line = sorted((t.values[0], t.values[1]) for t in front)
    ax.plot(*zip(*line), color="C3", alpha=0.5)
    ax.scatter([t.values[0] for t in front], [t.values[1] for t in front], color="C3", zorder=3, label="Pareto front")
    for t in front:
        ax.annotate(str(t.number), (t.values[0], t.values[1]), textcoords="offset points", xytext=(5, 5), fontsize=9)
    x, y = (f"{study.metric(i)} ({study.directions[i].lower()})" for i in range(2))
    ax.set(xlabel=x, ylabel=y, title=f"{study.name}: Pareto front")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, out_dir / "pareto_front.png")


def plot_study(study, out_dir: Path) -> list[Path]:
    """Every plot of the study that has something to show; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    paths = [plot_intermediate(study, out_dir), plot_pareto(study, out_dir)]
    if study.complete():
        paths = [plot_history(study, out_dir), *plot_params(study, out_dir), *paths]
    return [p for p in paths if p is not None]
