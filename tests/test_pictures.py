"""`aectl eval`'s pictures keep every word inside the image, at the image sizes aectl trains on."""

from unittest import mock

import pytest
import torch
from matplotlib.text import Text

from aectl.datasets.noise import Corruption
from aectl.evaluation import eval_pictures, pictures
from aectl.evaluation.evaluate import Variant
from aectl.models import build_model

SIZES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# (model kind, trained noise): between them every picture kind of write_pictures
KINDS = {"vae": "none", "cvae": "none", "dae": "gaussian"}


def texts_outside(fig) -> list[str]:
    """The words of `fig` whose box, as the renderer draws it, leaves the figure: every non-empty
    Text artist a fresh draw of the canvas draws (tick labels outside the view limits are not)."""
    drawn, draw = [], Text.draw

    def recording(text, renderer):
        drawn.append(text)
        return draw(text, renderer)

    with mock.patch.object(Text, "draw", recording):
        fig.canvas.draw()
    renderer, frame = fig.canvas.get_renderer(), fig.bbox
    outside = []
    for text in drawn:
        box = text.get_window_extent(renderer)
        if text.get_text() and (box.x0 < frame.x0 - 0.5 or box.y0 < frame.y0 - 0.5
                                or box.x1 > frame.x1 + 0.5 or box.y1 > frame.y1 + 0.5):
            outside.append(f"{text.get_text()!r} at x {box.x0:.0f}..{box.x1:.0f}, y {box.y0:.0f}..{box.y1:.0f} "
                           f"in {frame.width:.0f}×{frame.height:.0f}")
    assert drawn, "nothing was drawn"
    return outside


@pytest.mark.parametrize("size", SIZES)
def test_every_picture_keeps_its_titles_and_labels_inside(size):
    torch.manual_seed(0)
    shape = SIZES[size]
    drawn = {}
    for kind, noise in KINDS.items():
        model = build_model(kind, input_shape=list(shape), latent_dim=16, hidden_dims=[8],
                            **({"num_classes": 10} if kind == "cvae" else {}))
        variant = Variant(kind, kind in ("vae", "cvae"), {"kind": noise}, {"kind": "none"}, 1.0, kind == "cvae")
        labels = torch.arange(100) % 10
        figs = eval_pictures.figures(model, torch.rand(16, *shape), torch.randn(100, 16), labels, variant,
                                     Corruption(noise, sigma=0.3), CIFAR_CLASSES, "test", 0)
        drawn.update({f"{kind}/{name}": fig for name, fig in figs.items()})
    assert {name.split("/")[1] for name in drawn} == {"reconstruction", "denoising", "samples", "class_samples",
                                                      "traversal", "latent_scatter"}
    overflow = {name: words for name, fig in drawn.items() if (words := texts_outside(fig))}
    assert not overflow


def test_a_long_title_is_wrapped_and_long_row_names_get_their_room():
    grid = torch.rand(3, 62, 92)                           # two rows of three 28-px tiles
    title = "a title far wider than the grid it names, " * 4
    names = ["a rather long row name", "b"]
    fig = pictures.labelled_figure(grid, title, names)
    assert not texts_outside(fig)
    assert fig.texts[0].get_text().count("\n") >= 1       # wrapped, not stretched across a wide figure
    assert fig.bbox.width <= pictures.TITLE_WRAP_PX + 1
    assert pictures.labelled(grid, title, names).shape == (3, round(fig.bbox.height), round(fig.bbox.width))
