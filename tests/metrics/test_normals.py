"""Tests of pixelbook.metrics.normals."""

import pytest
import torch

from pixelbook.metrics import normal_metrics


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rotated_about_x(angles_deg) -> torch.Tensor:
    """(1, 3, 1, K) unit normals at the given angles from +z, rotating about the x axis."""
    a = torch.tensor(angles_deg, dtype=torch.float64).deg2rad()
    return torch.stack([torch.zeros_like(a), torch.sin(a), torch.cos(a)])[None, :, None, :]


class TestNormalMetrics:
    def test_known_rotations(self):
        gt = rotated_about_x([0.0, 0.0, 0.0, 0.0])
        pred = rotated_about_x([0.0, 10.0, 20.0, 45.0])
        m = normal_metrics(pred, gt)
        assert list(m) == ["mean", "median", "a11", "a22", "a30"] and all(type(v) is float for v in m.values())
        assert m["mean"] == pytest.approx(75 / 4)
        assert m["median"] == pytest.approx(15.0)  # mean of the two middle values, as numpy.median
        assert (m["a11"], m["a22"], m["a30"]) == (0.5, 0.75, 0.75)

    def test_ninety_degrees_and_opposite(self):
        up = rotated_about_x([0.0, 0.0])
        assert normal_metrics(rotated_about_x([90.0, 90.0]), up)["mean"] == pytest.approx(90.0)
        assert normal_metrics(rotated_about_x([180.0, 180.0]), up)["mean"] == pytest.approx(180.0)

    def test_prediction_length_does_not_matter(self):
        gt = rotated_about_x([0.0, 30.0, 60.0])
        pred = rotated_about_x([5.0, 40.0, 50.0])
        assert normal_metrics(pred * torch.tensor([0.1, 7.0, 2.0]).reshape(1, 1, 1, 3), gt) == \
            pytest.approx(normal_metrics(pred, gt))

    def test_tiny_angles_are_accurate(self):
        m = normal_metrics(rotated_about_x([1e-4]).float(), rotated_about_x([0.0]).float())
        assert m["mean"] == pytest.approx(1e-4, rel=0.05)  # acos of a float32 dot product would give ~0.02°

    def test_default_valid_skips_zero_gt_and_explicit_valid(self):
        gt = rotated_about_x([0.0, 0.0])
        gt[..., 1] = 0.0
        pred = rotated_about_x([10.0, 90.0])
        assert normal_metrics(pred, gt)["mean"] == pytest.approx(10.0)
        valid = torch.tensor([[[False, True]]])
        assert normal_metrics(pred, rotated_about_x([0.0, 0.0]), valid=valid)["mean"] == pytest.approx(90.0)

    def test_error_zero_prediction(self):
        with pytest.raises(ValueError, match="`pred`: expected non-zero normal vectors"):
            normal_metrics(torch.zeros(1, 3, 1, 2), rotated_about_x([0.0, 0.0]))

    def test_error_two_channels(self):
        with pytest.raises(ValueError, match=r"`pred`: expected shape \(N, 3, H, W\)"):
            normal_metrics(torch.ones(1, 2, 4, 4), torch.ones(1, 2, 4, 4))

    def test_error_no_valid_pixel(self):
        with pytest.raises(ValueError, match="`target`: expected some non-zero normals"):
            normal_metrics(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))

    def test_error_nan(self):
        pred = torch.ones(1, 3, 2, 2)
        pred[0, 1, 1, 1] = float("nan")
        with pytest.raises(ValueError, match="`pred`: expected finite values"):
            normal_metrics(pred, torch.ones(1, 3, 2, 2))
