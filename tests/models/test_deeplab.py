"""Tests of pixelbook.models.deeplab."""

import pytest
import torch

from pixelbook.models import MiniDeepLab


class TestMiniDeepLab:
    def test_output_shape_and_output_stride_four(self):
        net = MiniDeepLab(5, width=16).eval()
        feats = {}
        net.classifier.register_forward_hook(lambda m, i, o: feats.setdefault("logits", o))
        out = net(torch.rand(2, 3, 48, 40))
        assert out.shape == (2, 5, 48, 40) and feats["logits"].shape[-2:] == (12, 10)

    def test_is_small(self):
        assert sum(p.numel() for p in MiniDeepLab(4, width=32).parameters()) < 150_000

    def test_error_names_x(self):
        with pytest.raises(ValueError, match=r"`image`: expected shape \(N, C, H, W\)"):
            MiniDeepLab(3)(torch.rand(3, 32, 32))
