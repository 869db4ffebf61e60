"""Backward warping by a flow, flow composition and upsampling (Chapter 8's building blocks)."""

import pytest
import torch
import torch.nn.functional as F

from pixelbook.ops import apply_filter_flow, compose_flows, expected_flow, flow_warp, upsample_flow


def _grid_sample_reference(x, flow, padding):
    N, C, H, W = x.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=x.dtype), torch.arange(W, dtype=x.dtype), indexing="ij")
    grid = torch.stack([(xs + flow[:, 0]) * 2 / (W - 1) - 1, (ys + flow[:, 1]) * 2 / (H - 1) - 1], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=True)


class TestFlowWarp:
    @pytest.mark.parametrize("padding", ["zeros", "border"])
    def test_equals_grid_sample(self, padding):
        torch.manual_seed(0)
        x = torch.rand(2, 3, 9, 11, dtype=torch.float64)
        flow = torch.rand(2, 2, 9, 11, dtype=torch.float64) * 8 - 4
        torch.testing.assert_close(flow_warp(x, flow, padding=padding)[0], _grid_sample_reference(x, flow, padding))

    def test_integer_flow_moves_pixels_exactly_like_a_one_hot_filter(self):
        torch.manual_seed(0)
        x = torch.rand(1, 3, 32, 32)
        filters = torch.zeros(1, 25, 32, 32)
        filters[:, (-1 + 2) * 5 + (2 + 2)] = 1.0  # (dy, dx) = (-1, +2)
        flow = expected_flow(filters)
        warped, inside = flow_warp(x, flow)
        assert torch.equal(warped, apply_filter_flow(x, filters))  # bit-exact, zero padding alike
        assert int((~inside).sum()) == 32 + 2 * 31  # top row and the two rightmost columns

    def test_gradcheck(self):
        torch.manual_seed(0)
        x = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
        flow = (torch.rand(1, 2, 5, 6, dtype=torch.float64) * 3 - 1.5).requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b: flow_warp(a, b)[0], (x, flow))
        assert torch.autograd.gradcheck(lambda a, b: flow_warp(a, b, padding="border")[0], (x, flow))

    def test_bad_input(self):
        with pytest.raises(ValueError, match="`flow`: expected shape"):
            flow_warp(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
        with pytest.raises(ValueError, match="`flow`: expected H=8"):
            flow_warp(torch.rand(1, 3, 8, 8), torch.rand(1, 2, 4, 8))
        with pytest.raises(ValueError, match="`padding`"):
            flow_warp(torch.rand(1, 3, 8, 8), torch.rand(1, 2, 8, 8), padding="reflect")
        with pytest.raises(ValueError, match="H, W >= 2"):
            flow_warp(torch.rand(1, 3, 1, 8), torch.rand(1, 2, 1, 8))
        bad = torch.zeros(1, 2, 8, 8)
        bad[0, 0, 1, 1] = float("inf")
        with pytest.raises(ValueError, match="`flow`: expected finite"):
            flow_warp(torch.rand(1, 3, 8, 8), bad)


class TestComposeAndUpsample:
    def test_composition_equals_warping_twice(self):
        torch.manual_seed(0)
        x = torch.rand(1, 3, 20, 20, dtype=torch.float64)
        inner = torch.randint(-2, 3, (1, 2, 20, 20)).double()
        outer = torch.randint(-2, 3, (1, 2, 20, 20)).double()
        twice = flow_warp(flow_warp(x, inner)[0], outer)[0]
        once = flow_warp(x, compose_flows(outer, inner))[0]
        pos_x = torch.arange(20.0)[None, None, :] + outer[:, 0]
        pos_y = torch.arange(20.0)[None, :, None] + outer[:, 1]
        ok = (pos_x >= 0) & (pos_x <= 19) & (pos_y >= 0) & (pos_y <= 19)  # the outer step stays inside
        torch.testing.assert_close(once.permute(0, 2, 3, 1)[ok], twice.permute(0, 2, 3, 1)[ok])

    def test_upsample_scales_vectors_and_repeats_blocks(self):
        f = torch.tensor([[[[1.0, -2.0]], [[0.5, 3.0]]]])  # (1, 2, 1, 2)
        up = upsample_flow(f, 2)
        assert up.shape == (1, 2, 2, 4)
        assert up[0, 0].tolist() == [[2.0, 2.0, -4.0, -4.0]] * 2
        assert torch.equal(upsample_flow(f, 1), f)
        with pytest.raises(ValueError, match="`factor`"):
            upsample_flow(f, 0)
