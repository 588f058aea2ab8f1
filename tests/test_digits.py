import numpy as np
import torch

from aectl.datasets import load_digits


def test_digits_read_from_the_wheel_equal_scikit_learns_loader():
    from sklearn.datasets import load_digits as sklearn_load_digits

    x, y, scale = load_digits()
    reference = sklearn_load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.uint8 and scale == 1 / 16
    assert torch.equal(x.squeeze(1), torch.from_numpy(reference.images.astype(np.uint8)))
    assert torch.equal(y, torch.from_numpy(reference.target).long())
