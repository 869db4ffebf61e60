"""Tests of pixelbook.models.unet."""

import pytest
import torch

from pixelbook.models import UNet, count_parameters


class TestUNet:
    def test_shapes_for_odd_sizes_and_parameter_count(self):
        net = UNet(1, 2, width=4, depth=2)
        assert net(torch.rand(2, 1, 19, 23)).shape == (2, 2, 19, 23)
        assert count_parameters(UNet(1, 1, 8, 2)) > 3 * count_parameters(UNet(1, 1, 4, 2))

    def test_bad_input_channels(self):
        with pytest.raises(ValueError, match="`image`: expected shape \\(N, 1, H, W\\)"):
            UNet(1, 1, 4, 1)(torch.rand(1, 3, 8, 8))
