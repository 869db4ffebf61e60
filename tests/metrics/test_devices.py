"""Every functional metric follows its inputs' device and never builds a graph."""

import pytest
import torch

from pixelbook.metrics import (boundary_f, depth_metrics, fbeta_scores, mae, mean_iou, normal_metrics, s_measure)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# probs  0.9 0.6 0.2     mask  1 1 0      mean(p) = 2.5/6 -> adaptive threshold 5/6
#        0.1 0.7 0.0           0 0 0
SOD_P = torch.tensor([[[0.9, 0.6, 0.2], [0.1, 0.7, 0.0]]], dtype=torch.float64)
SOD_M = torch.tensor([[[1, 1, 0], [0, 0, 0]]], dtype=torch.bool)


class TestDevicesAndGradients:
    @pytest.mark.parametrize("device", DEVICES)
    def test_results_match_cpu_and_inputs_may_require_grad(self, device):
        g = torch.Generator().manual_seed(23)
        masks = torch.rand(2, 16, 16, generator=g) > 0.7
        probs = (0.5 * masks + 0.5 * torch.rand(2, 16, 16, generator=g)).requires_grad_()
        on = dict(probs=probs.to(device), labels=masks.to(device))
        assert fbeta_scores(**on) == pytest.approx(fbeta_scores(probs, masks))
        assert mae(**on) == pytest.approx(mae(probs, masks))
        assert s_measure(**on) == pytest.approx(s_measure(probs, masks))
        assert boundary_f(on["probs"], on["labels"]) == pytest.approx(boundary_f(probs, masks))
        p, t = torch.randint(0, 3, (2, 5, 5), generator=g), torch.randint(0, 3, (2, 5, 5), generator=g)
        assert mean_iou(p.to(device), t.to(device), 3) == mean_iou(p, t, 3)
        depth = torch.rand(2, 1, 5, 5, generator=g) + 0.1
        assert depth_metrics(depth.to(device).requires_grad_(), depth.to(device) * 1.1) == \
            pytest.approx(depth_metrics(depth, depth * 1.1))
        n = torch.randn(2, 3, 4, 4, generator=g)
        assert normal_metrics(n.to(device), n.flip(0).to(device)) == pytest.approx(normal_metrics(n, n.flip(0)))

    def test_error_mixed_devices_named(self):
        if not torch.cuda.is_available():
            pytest.skip("needs CUDA")
        with pytest.raises(ValueError, match="`labels`: expected a tensor on"):
            mae(SOD_P.cuda(), SOD_M)
