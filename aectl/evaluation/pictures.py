"""Figures for `aectl eval` and TensorBoard: image grids as (3, H, W) float tensors in [0, 1]
(what `SummaryWriter.add_image` takes), a 2-D latent scatter, PNG saving and projector sprites.

matplotlib is imported inside the one function that needs it and drawn on its Agg canvas
directly (no pyplot, no global backend switch).
"""

import math
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from aectl.models import mean_reconstruction


def _grid(images: torch.Tensor, nrow: int) -> torch.Tensor:
    """make_grid of images (N, C, H, W) clamped to [0, 1]; 1-channel images become 3-channel."""
    from torchvision.utils import make_grid

    return make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)


def reconstruction_grid(x: torch.Tensor, x_hat: torch.Tensor, n: int = 16) -> torch.Tensor:
    """Two rows: the first n inputs above their reconstructions (x_hat in data space)."""
    n = min(n, x.shape[0])
    return _grid(torch.cat([x[:n], x_hat[:n]]), nrow=n)


def noisy_denoised_grid(x: torch.Tensor, x_noisy: torch.Tensor, x_hat: torch.Tensor,
                        n: int = 16) -> torch.Tensor:
    """Three rows: clean inputs, their corrupted versions, the reconstructions from those."""
    n = min(n, x.shape[0])
    return _grid(torch.cat([x[:n], x_noisy[:n], x_hat[:n]]), nrow=n)


def samples_grid(images: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """A grid of images (N, C, H, W), e.g. decoded prior samples, `nrow` per row."""
    return _grid(images, nrow=nrow)


@torch.no_grad()
def prior_samples(model: nn.Module, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """E[x|z] for n draws z ~ p(z) of a VAE's prior (N(0, I_K), a VampPrior's mixture, or a
    two-layer model's p(z2) p(z1|z2)), images in data space."""
    return mean_reconstruction(model, model.decode(model.sample_prior(n, generator)))


@torch.no_grad()
def class_samples(model: nn.Module, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """E[x|z,y] of a conditional VAE for n draws z ~ N(0, I_K), each decoded with every label:
    (num_classes · n, C, H, W), class-major (row c holds the n samples of class c, and column j
    the same z_j in every row, so what changes down a column is the label alone)."""
    device = next(model.parameters()).device
    z = torch.randn((n, model.latent_dim), generator=generator, device=device)
    y = torch.arange(model.num_classes, device=device).repeat_interleave(n)
    return mean_reconstruction(model, model.decode(z.repeat(model.num_classes, 1), y))


def class_samples_grid(model: nn.Module, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`class_samples` as a grid: one row per class, n samples each."""
    return _grid(class_samples(model, n, generator), nrow=n)


@torch.no_grad()
def traversal_grid(model: nn.Module, z_base: torch.Tensor, dims: Sequence[int] | None = None,
                   steps: int = 9, span: float = 3.0) -> torch.Tensor:
    """Latent traversals of a VAE: one row per latent dim in `dims` (None: all), where that
    coordinate of `z_base` (K,) is swept over linspace(−span, span, steps) and the rest kept."""
    z_base = z_base.reshape(-1)
    dims = range(z_base.numel()) if dims is None else dims
    values = torch.linspace(-span, span, steps, device=z_base.device, dtype=z_base.dtype)
    rows = []
    for d in dims:
        z = z_base.repeat(steps, 1)
        z[:, d] = values
        rows.append(z)
    images = mean_reconstruction(model, model.decode(torch.cat(rows)))
    return _grid(images, nrow=steps)


def _project_2d(z: torch.Tensor) -> tuple[torch.Tensor, str, tuple[str, str]]:
    """(N, 2) coordinates, a description and axis names: z itself for K ≤ 2, else PCA via SVD."""
    k = z.shape[1]
    if k == 2:
        return z, "latent z (K=2)", ("z1", "z2")
    if k == 1:
        return torch.cat([z, torch.zeros_like(z)], 1), "latent z (K=1)", ("z1", "")
    centered = z - z.mean(0)
    _, s, vh = torch.linalg.svd(centered, full_matrices=False)
    explained = (s[:2].square().sum() / s.square().sum()).item()
    return centered @ vh[:2].T, f"PCA (SVD) of K={k} latent, {explained:.0%} variance", ("PC1", "PC2")


def latent_scatter_png(z: torch.Tensor, labels: torch.Tensor | None, path: str | Path | None,
                       title: str = "latent", class_names: Sequence[str] | None = None) -> torch.Tensor:
    """`latent_scatter_figure` saved as PNG at `path` (skipped if None); returns the figure as a
    (3, H, W) uint8 tensor."""
    fig = latent_scatter_figure(z, labels, title, class_names)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    return figure_image(fig)


def latent_scatter_figure(z: torch.Tensor, labels: torch.Tensor | None, title: str = "latent",
                          class_names: Sequence[str] | None = None):
    """Scatter of the latent (N, K) in 2-D (the latent itself when K = 2, else its first two
    principal components), coloured by `labels` (a legend for ≤ 20 classes, named by
    `class_names` where the dataset has them, else a colorbar); a drawn matplotlib Figure."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xy, how, (x_name, y_name) = _project_2d(z.detach().float().cpu())
    xy = xy.numpy()
    fig = Figure(figsize=(6, 5), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.6)
    else:
        labels = labels.detach().cpu()
        classes = labels.unique()
        labels = labels.numpy()
        if len(classes) <= 20:
            palette = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
            for i, c in enumerate(classes.tolist()):
                m = labels == c
                name = class_names[c] if class_names and 0 <= c < len(class_names) else str(c)
                ax.scatter(xy[m, 0], xy[m, 1], s=4, alpha=0.6, color=palette(i), label=name)
            ax.legend(markerscale=3, fontsize="small", title="class",   # outside: "best" is slow
                      loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            points = ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.6, c=labels, cmap="viridis")
            fig.colorbar(points, ax=ax, label="label")
    ax.set(xlabel=x_name, ylabel=y_name)
    ax.set_title(f"{title}\n{how}", fontsize="medium")
    fig.tight_layout()
    canvas.draw()
    return fig


def log_density_figure(fired: torch.Tensor, n: int, title: str):
    """Histogram of log10 of each latent's firing density (the share of the n inputs it is active
    on), the dead ones (density 0) counted in the title; a drawn matplotlib Figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    density = fired.double().cpu() / n
    alive = density[density > 0].log10().numpy()
    fig = Figure(figsize=(6, 4), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.hist(alive, bins=50, color="tab:blue")
    ax.axvline(-1, color="tab:red", linestyle="--", label="dense: active on > 10% of inputs")
    ax.set(xlabel="log10 firing density (share of inputs a latent is active on)", ylabel="latents")
    ax.legend(fontsize="small")
    ax.set_title(f"{title}\n{int((density == 0).sum())} of {len(density)} latents dead (never active), not drawn",
                 fontsize="medium")
    fig.tight_layout()
    canvas.draw()
    return fig


TITLE_PT, ROW_LABEL_PT = 10, 9  # font sizes of a labelled grid's title and row names
PAD_PX = 8  # white space at the figure's edges and between the title, the row names and the grid
TITLE_WRAP_PX = 480  # a title wider than this and than the grid is wrapped onto further lines


def labelled(grid: torch.Tensor, title: str, row_labels: Sequence[str] = (), pixels_per_row: int = 0) -> torch.Tensor:
    """`labelled_figure` as a (3, H', W') uint8 tensor, the form `save_png` and TensorBoard take."""
    return figure_image(labelled_figure(grid, title, row_labels, pixels_per_row))


def labelled_figure(grid: torch.Tensor, title: str, row_labels: Sequence[str] = (), pixels_per_row: int = 0):
    """A grid image (3, H, W) in [0, 1] drawn pixel for pixel with a title above it and a name left
    of each row (rows of equal height, `pixels_per_row` each: 0 = H / len(row_labels)); a drawn
    matplotlib Figure sized to hold every word: the row names' column is as wide as the longest
    name, and the title is wrapped (`TITLE_WRAP_PX`) and the figure widened to fit it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image = grid.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    height, width = image.shape[:2]
    dpi = 100
    fig = Figure(dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    names = max((_text_size(fig, renderer, name, ROW_LABEL_PT)[0] for name in row_labels), default=0.0)
    left = names + 2 * PAD_PX if row_labels else PAD_PX  # the row names' column, left of the grid
    content = left + width + PAD_PX
    title = _wrap(fig, renderer, title, TITLE_PT, max(content, TITLE_WRAP_PX) - 2 * PAD_PX)
    title_width, title_height = _text_size(fig, renderer, title, TITLE_PT)
    fig_width = math.ceil(max(content, title_width + 2 * PAD_PX))
    fig_height = math.ceil(height + title_height + 3 * PAD_PX)
    fig.set_size_inches(fig_width / dpi, fig_height / dpi)
    grid_left = (fig_width - content) / 2 + left  # names and grid centred under a wider title
    ax = fig.add_axes((grid_left / fig_width, PAD_PX / fig_height, width / fig_width, height / fig_height))
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    row_height = pixels_per_row or (height / len(row_labels) if row_labels else height)
    ax.set_yticks([row_height * (i + 0.5) for i in range(len(row_labels))], list(row_labels),
                  fontsize=ROW_LABEL_PT)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.suptitle(title, fontsize=TITLE_PT, y=1 - PAD_PX / fig_height, va="top")
    canvas.draw()
    return fig


def _text_size(fig, renderer, text: str, fontsize: float) -> tuple[float, float]:
    """(width, height) in pixels of `text` as the figure draws it."""
    artist = fig.text(0, 0, text, fontsize=fontsize)
    box = artist.get_window_extent(renderer)
    artist.remove()
    return box.width, box.height


def _wrap(fig, renderer, text: str, fontsize: float, max_width: float) -> str:
    """`text` with its spaces turned into line breaks where a line would be wider than
    `max_width` pixels (a single longer word keeps a line of its own); its own breaks are kept."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            longer = f"{line} {word}" if line else word
            if line and _text_size(fig, renderer, longer, fontsize)[0] > max_width:
                lines.append(line)
                longer = word
            line = longer
        lines.append(line)
    return "\n".join(lines)


def figure_image(fig) -> torch.Tensor:
    """A drawn matplotlib Figure's pixels as a (3, H, W) uint8 tensor."""
    import numpy as np

    rgba = torch.from_numpy(np.asarray(fig.canvas.buffer_rgba()).copy())
    return rgba[..., :3].permute(2, 0, 1).contiguous()


def save_png(img: torch.Tensor, path: str | Path) -> None:
    """Write an image tensor (C, H, W) or (H, W), float in [0, 1] or uint8, as a PNG file."""
    from PIL import Image

    img = img.detach().cpu()
    if img.dtype != torch.uint8:
        img = (img.float().clamp(0, 1) * 255).round().to(torch.uint8)
    if img.dim() == 3:
        img = img.permute(1, 2, 0)
        img = img.squeeze(2) if img.shape[2] == 1 else img
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img.numpy()).save(path, format="PNG")


def sprite_images(x: torch.Tensor, max_n: int) -> torch.Tensor:
    """The first max_n images as float (N, C, H, W) thumbnails in [0, 1] on the CPU, the
    `label_img` of `SummaryWriter.add_embedding` (the projector's sprite)."""
    return x[:max_n].detach().float().cpu().clamp(0, 1)
