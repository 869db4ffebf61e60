"""EmbeddingNet (Chapter 6's pixel-embedding network): shape, unit norm, coordinate channels, bad input."""

import pytest
import torch

from pixelbook.models import EmbeddingNet


class TestEmbeddingNet:
    def test_shape_norm_and_coordinates(self):
        torch.manual_seed(0)
        net = EmbeddingNet(dim=4, width=8).eval()
        img = torch.zeros(1, 3, 16, 16)
        img[:, :, 2:5, 2:5] = 1
        img[:, :, 10:13, 10:13] = 1  # two identical squares
        e = net(img)
        assert e.shape == (1, 4, 16, 16)
        torch.testing.assert_close(e.norm(dim=1), torch.ones(1, 16, 16))
        assert not torch.allclose(e[..., 3, 3], e[..., 11, 11], atol=1e-4)  # coordinates tell them apart
        e0 = EmbeddingNet(dim=4, width=8, coords=False).eval()(img)
        assert e0.shape == (1, 4, 16, 16)

    def test_bad_input(self):
        with pytest.raises(ValueError, match="`image`: expected shape"):
            EmbeddingNet()(torch.rand(1, 1, 8, 8))
        with pytest.raises(ValueError, match="`dilations`"):
            EmbeddingNet(dilations=())
