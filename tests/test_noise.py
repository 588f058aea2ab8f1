import torch

from aectl.datasets import noise

N = 200_000


def _gen():
    return torch.Generator().manual_seed(0)


def test_masking_zeroes_about_p():
    x = torch.rand(N) * 0.9 + 0.1  # no zeros of its own
    noisy = noise.masking(x, 0.3, generator=_gen())
    assert abs((noisy == 0).float().mean().item() - 0.3) < 0.005
    kept = noisy != 0
    assert torch.equal(noisy[kept], x[kept])


def test_salt_pepper_sets_p_over_2_each():
    x = torch.full((N,), 0.5)
    noisy = noise.salt_pepper(x, 0.2, v_min=0.0, v_max=1.0, generator=_gen())
    assert abs((noisy == 0).float().mean().item() - 0.1) < 0.004
    assert abs((noisy == 1).float().mean().item() - 0.1) < 0.004
    assert abs((noisy == 0.5).float().mean().item() - 0.8) < 0.004


def test_gaussian_statistics_and_clipping():
    x = torch.full((N,), 0.5)
    noisy = noise.gaussian(x, 0.1, clip=False, generator=_gen())
    assert abs((noisy - x).mean().item()) < 0.002
    assert abs((noisy - x).std().item() - 0.1) < 0.002
    clipped = noise.gaussian(x, 1.0, clip=True, generator=_gen())
    assert clipped.min().item() >= 0.0 and clipped.max().item() <= 1.0


def test_none_is_identity_and_input_untouched():
    x = torch.rand(10)
    copy = x.clone()
    assert noise.corrupt(x, "none") is x
    noise.corrupt(x, "masking", p=0.5)
    assert torch.equal(x, copy)
