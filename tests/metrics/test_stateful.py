"""The torchmetrics.Metric classes equal the functional metrics on a dataset fed to them in batches."""

import pytest
import torch
import torch.nn.functional as F

from pixelbook.metrics import (DepthMetrics, MeanIoU, NormalMetrics, PixelAccuracy, SaliencyMetrics, depth_metrics,
                               fbeta_scores, mae, mean_iou, normal_metrics, pixel_accuracy)

SPLITS = [(0, 1), (1, 4), (4, 5), (5, 9)]  # uneven batches of a 9-image dataset


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _batches(*tensors):
    for a, b in SPLITS:
        yield tuple(None if t is None else t[a:b] for t in tensors)


def _feed(metric, *tensors):
    for batch in _batches(*tensors):
        metric.update(*batch)
    return metric


def _segmentation_data(C=5):
    labels = torch.randint(0, C, (9, 12, 10), generator=_g(0))
    labels[labels == C - 1] = 0                      # class C-1 absent from the ground truth ...
    labels[2, :3] = 255                              # ... void pixels ...
    pred = torch.where(torch.rand(9, 12, 10, generator=_g(1)) < 0.7, labels.clamp(max=C - 1),
                       torch.randint(0, C, (9, 12, 10), generator=_g(2)))
    pred[pred == 255] = 1
    pred[3, 0, 0] = C - 1                            # ... but predicted once
    return pred, labels, C


class TestConfusionMatrixMetrics:
    def test_mean_iou_and_pixel_accuracy_equal_the_functional_exactly(self):
        pred, labels, C = _segmentation_data()
        miou = _feed(MeanIoU(C, ignore_index=255), pred, labels).compute()
        acc = _feed(PixelAccuracy(C, ignore_index=255), pred, labels).compute()
        assert miou.dtype == torch.float64 and miou.ndim == 0
        assert float(miou) == mean_iou(pred, labels, C, ignore_index=255)
        assert float(acc) == pixel_accuracy(pred, labels, ignore_index=255)

    def test_states_merged_across_processes_give_the_dataset_value(self):
        # what DDP does with dist_reduce_fx="sum": each process sums its shard, the states add up
        pred, labels, C = _segmentation_data()
        a, b = MeanIoU(C, ignore_index=255), MeanIoU(C, ignore_index=255)
        a.update(pred[:4], labels[:4])
        b.update(pred[4:], labels[4:])
        a.merge_state(b)
        assert float(a.compute()) == mean_iou(pred, labels, C, ignore_index=255)

    def test_reset_and_errors(self):
        pred, labels, C = _segmentation_data()
        m = _feed(MeanIoU(C, ignore_index=255), pred, labels)
        m.reset()
        assert int(m.confmat.sum()) == 0
        with pytest.raises(ValueError, match="`pred`: expected labels in"):
            m.update(pred + C, labels)
        with pytest.raises(ValueError, match="`ignore_index`"):
            MeanIoU(C, ignore_index=0).update(pred, labels)
        with pytest.raises(ValueError, match="`labels`: no pixel other than ignore_index=255 has been counted"):
            m.compute()
        m.update(pred, torch.full_like(labels, 255))            # an all-void batch counts nothing
        with pytest.raises(ValueError, match="`labels`: no pixel other than ignore_index=255"):
            m.compute()


class TestDepthMetrics:
    def test_equals_the_functional_on_the_whole_dataset(self):
        target = torch.rand(9, 1, 8, 8, generator=_g(3)) * 5
        target[target < 0.5] = 0                                    # holes: default valid = target > 0
        pred = target.clamp_min(0.3) * torch.exp(0.3 * torch.randn(9, 1, 8, 8, generator=_g(4)))
        ref = depth_metrics(pred, target)
        out = _feed(DepthMetrics(), pred, target).compute()
        assert set(out) == set(ref)
        for k in ref:
            assert float(out[k]) == pytest.approx(ref[k], rel=1e-12, abs=1e-15), k

    def test_explicit_valid_mask(self):
        target = torch.rand(9, 8, 8, generator=_g(5)) + 0.5
        pred = target * (1 + 0.2 * torch.randn(9, 8, 8, generator=_g(6))).clamp_min(0.1)
        valid = torch.rand(9, 8, 8, generator=_g(7)) < 0.6
        ref = depth_metrics(pred, target, valid)
        out = _feed(DepthMetrics(), pred, target, valid).compute()
        assert {k: float(v) for k, v in out.items()} == pytest.approx(ref, rel=1e-12)

    @pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
    def test_compute_before_update_raises(self):
        with pytest.raises(ValueError, match="`valid`: no valid pixel has been counted"):
            DepthMetrics().compute()


class TestNormalMetrics:
    def test_equals_the_functional_and_the_median_within_half_a_bin(self):
        target = F.normalize(torch.randn(9, 3, 8, 8, generator=_g(8)), dim=1)
        pred = F.normalize(target + 0.4 * torch.randn(9, 3, 8, 8, generator=_g(9)), dim=1)
        valid = torch.rand(9, 8, 8, generator=_g(10)) < 0.8
        ref = normal_metrics(pred, target, valid)
        metric = NormalMetrics(bins=1800)
        out = _feed(metric, pred, target, valid).compute()
        for k in ("mean", "a11", "a22", "a30"):
            assert float(out[k]) == pytest.approx(ref[k], rel=1e-12), k
        assert abs(float(out["median"]) - ref["median"]) <= 0.5 * 180 / 1800

    def test_default_valid_skips_zero_ground_truth(self):
        target = F.normalize(torch.randn(9, 3, 4, 4, generator=_g(11)), dim=1)
        target[:, :, 0, 0] = 0                                       # missing normals
        pred = F.normalize(torch.randn(9, 3, 4, 4, generator=_g(12)), dim=1)
        out = _feed(NormalMetrics(), pred, target, None).compute()
        assert float(out["mean"]) == pytest.approx(normal_metrics(pred, target)["mean"], rel=1e-12)


class TestSaliencyMetrics:
    @pytest.mark.parametrize("average", ["pr", "f"])
    def test_equals_fbeta_scores_and_mae_on_the_whole_dataset(self, average):
        masks = torch.rand(9, 10, 10, generator=_g(13)) < 0.3
        masks[4] = False                                             # an image without salient pixels
        probs = (0.6 * masks + 0.5 * torch.rand(9, 10, 10, generator=_g(14))).clamp(0, 1)
        ref = fbeta_scores(probs, masks, average=average)
        out = _feed(SaliencyMetrics(average=average), probs, masks).compute()
        for k in ("max_f", "mean_f", "adaptive_f"):
            assert float(out[k]) == pytest.approx(ref[k], rel=1e-12), k
        assert float(out["mae"]) == pytest.approx(mae(probs, masks), rel=1e-12)

    def test_bad_options_fail_at_construction(self):
        with pytest.raises(ValueError, match="`average`"):
            SaliencyMetrics(average="mean")
        with pytest.raises((ValueError, TypeError), match="`beta2`"):
            SaliencyMetrics(beta2=-1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_states_follow_the_metric_to_cuda():
    pred, labels, C = _segmentation_data()
    m = MeanIoU(C, ignore_index=255).to("cuda")
    m.update(pred.cuda(), labels.cuda())
    assert m.compute().device.type == "cuda"
    assert float(m.compute()) == mean_iou(pred, labels, C, ignore_index=255)
