import pytest
import torch

from aectl.models import build_model


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (1, 7, 5)])
@pytest.mark.parametrize("kind", ["ae", "vae"])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_output_shape_matches_input_for_any_size(shape, kind, arch):
    model = build_model(kind, input_shape=list(shape), latent_dim=3, arch=arch, hidden_dims=[16],
                        conv_channels=[4, 8])
    out = model(torch.rand(2, *shape))
    assert out.recon.shape == (2, *shape)
    assert out.z.shape == (2, 3)
    assert (out.mu is not None) == (kind == "vae")


def test_basic_ae_has_no_hidden_layer():
    model = build_model("ae", input_shape=[1, 8, 8], latent_dim=4, hidden_dims=[])
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 4), (4, 64)]


def test_sparse_code_lies_in_unit_interval():
    model = build_model("sparse_ae", input_shape=[1, 8, 8], latent_dim=128, code_activation="sigmoid")
    z = model.encode(torch.rand(5, 1, 8, 8) * 10)
    assert z.min() > 0 and z.max() < 1


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("nope", input_shape=[1, 2, 2], latent_dim=1)
