"""`aectl eval`'s pictures (PNGs and TensorBoard images) and the TensorBoard projector."""

import math
import shutil
from pathlib import Path

import torch
from torch import nn

from aectl.datasets.noise import Corruption
from aectl.evaluation import pictures
from aectl.evaluation.variant import Variant
from aectl.objectives import metrics
from aectl.runs import tracking

SCATTER_MAX = 5_000  # points drawn in the latent scatter
N_PICTURES = 16  # examples in the reconstruction and denoising grids
N_PRIOR_SAMPLES = 64  # decoded prior samples of a VAE
N_CLASS_SAMPLES = 10  # columns of a conditional VAE's samples per class (one z per column, shared by the rows)
MAX_TRAVERSED = 10  # latent dims in the traversal grid: the most active ones
MIN_TILE_PX = 28  # image grids are enlarged (nearest neighbour) until a tile is this tall


def write_pictures(model: nn.Module, first: torch.Tensor, codes: torch.Tensor, labels: torch.Tensor | None,
                   variant: Variant, noise: Corruption, classes: list[str] | None, split: str, seed: int,
                   out_dir: Path, tracker, tag: str, step: int) -> list[str]:
    """`figures` as PNGs in out_dir and the same images in TensorBoard under <tag>/<picture>;
    returns the file names."""
    images = {name: pictures.figure_image(fig)
              for name, fig in figures(model, first, codes, labels, variant, noise, classes, split, seed).items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        pictures.save_png(image, out_dir / f"{name}.png")
        tracker.image(f"{tag}/{name}", image, step)
    return [f"{name}.png" for name in images]


@torch.no_grad()
def figures(model: nn.Module, first: torch.Tensor, codes: torch.Tensor, labels: torch.Tensor | None,
            variant: Variant, noise: Corruption, classes: list[str] | None, split: str, seed: int) -> dict:
    """Every picture of the variant, by name, as a drawn matplotlib Figure. `noise` is the
    corruption the model was trained with, in the data's range."""
    if variant.kind == "sae":  # rows of activations, not images: how often each latent fires
        return {"log_density": pictures.log_density_figure((codes > 0).sum(0), len(codes),
                                                           f"sae: latent firing densities on {len(codes)} {split} examples")}
    device = next(model.parameters()).device
    x = first[:N_PICTURES].to(device)
    examples = f"{len(x)} {split} examples"
    trained = model
    if variant.conditional:  # reconstructions and traversals given the examples' own labels
        model = model.given(labels[:len(x)].to(device))
    grids = {"reconstruction": (pictures.reconstruction_grid(x, metrics.reconstruct(model, x)),
                                f"{variant.kind}: {examples} and their reconstructions"
                                + (" (z = μ)" if variant.variational else ""), ["input", "reconstruction"])}
    if noise.kind != "none":
        g = torch.Generator(device=device).manual_seed(seed)
        x_noisy = noise(x, generator=g)
        grids["denoising"] = (pictures.noisy_denoised_grid(x, x_noisy, metrics.reconstruct(model, x_noisy)),
                              f"{variant.kind}: denoising under the trained {noise.kind} noise",
                              ["clean", "noisy", "denoised"])
    if variant.conditional:
        g = torch.Generator(device=device).manual_seed(seed)
        names = [classes[c] if classes and c < len(classes) else str(c) for c in range(trained.num_classes)]
        grids["class_samples"] = (pictures.class_samples_grid(trained, N_CLASS_SAMPLES, g),
                                  f"{variant.kind}: E[x|z,y], z ~ N(0, I);\na class per row, a z per column", names)
    elif variant.variational:
        g = torch.Generator(device=device).manual_seed(seed)
        grids["samples"] = (pictures.samples_grid(pictures.prior_samples(model, N_PRIOR_SAMPLES, g)),
                            f"{N_PRIOR_SAMPLES} samples: z ~ N(0, I) decoded to E[x|z]", [])
    if variant.variational:
        most_active = codes.var(0).argsort(descending=True)[:MAX_TRAVERSED].tolist()
        z0 = torch.zeros(codes.shape[1], device=device)  # the prior's mean; one row per traversed dim
        traversed = trained.given(labels[:1].to(device)) if variant.conditional else model
        of_class = f", label y={int(labels[0])} (the first example's)" if variant.conditional else ""
        grids["traversal"] = (pictures.traversal_grid(traversed, z0, dims=most_active),
                              f"traversals: z_j from −3 to 3, the other units at 0 (most active first){of_class}",
                              [f"z{j}" for j in most_active])
    zoom = max(1, math.ceil(MIN_TILE_PX / first.shape[-2]))  # small images (8×8 digits) enlarged, pixel for pixel
    drawn = {name: pictures.labelled_figure(grid.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2), title, rows)
             for name, (grid, title, rows) in grids.items()}
    drawn["latent_scatter"] = pictures.latent_scatter_figure(
        codes[:SCATTER_MAX], None if labels is None else labels[:SCATTER_MAX],
        title=f"{variant.kind}: latent {'means' if variant.variational else 'code'}", class_names=classes)
    return drawn


def write_projector(run_dir: Path, tracker, codes: torch.Tensor, labels: torch.Tensor | None,
                    first: torch.Tensor, classes: list[str] | None, step: int, max_embed: int) -> None:
    """The TensorBoard projector: latent means of the first examples, labels and sprite thumbnails."""
    n = min(max_embed, len(codes), len(first))
    folder = run_dir / f"{step:05d}" / tracking.EVAL_EMBEDDING
    if folder.is_dir():  # an earlier eval of this checkpoint: replace it rather than add beside it
        shutil.rmtree(folder)
    metadata = None
    if labels is not None:
        names = classes if classes else []
        metadata = [names[y] if 0 <= y < len(names) else str(y) for y in labels[:n].tolist()]
    tracker.embedding(codes[:n], metadata, pictures.sprite_images(first, n), step, tracking.EVAL_EMBEDDING)

