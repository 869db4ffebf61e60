"""pixelbook.multitask against hand-computed cases: the trivial baselines on a tiny training set
with invalid pixels, the ``valid`` mask in ``task_metrics``, the documented boundary tolerance and
constants, ``label_boundaries`` without an ignore label. Complements tests/test_multitask.py."""

from __future__ import annotations

import math

import pytest
import torch

from pixelbook import multitask as mt


def _train():
    """Two 1 x 3 images. Valid: image 0 pixel 0, image 1 pixels 1 and 2."""
    return {
        "labels": torch.tensor([[[0, 2, 2]], [[2, 1, 1]]]),
        "valid": torch.tensor([[[True, False, False]], [[False, True, True]]]),
        "boundaries": torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]]),
        "depth": torch.tensor([[[[1.0, 9.0, 0.0]]], [[[3.0, 0.0, 5.0]]]]),
        "normals": torch.tensor([[[[1.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]], [[0.0, 1.0, 1.0]]],
                                 [[[0.0, 0.0, 0.0]], [[0.0, 1.0, 1.0]], [[1.0, 0.0, 0.0]]]]),
    }


def test_constants():
    assert mt.BSDS_POSITIVE == 0.5  # half the annotators (RCF's convention)
    assert mt.TASK_KEYS == ("image", "labels", "boundaries", "depth", "normals", "valid")
    assert mt.TASK_METRICS == {"seg": ("miou", "pixel_acc"), "boundary": ("ods", "ois", "ap"),
                               "depth": ("d1", "d2", "d3", "abs_rel", "rmse"),
                               "normals": ("mean", "median", "a11", "a22", "a30")}


def test_trivial_predictions_use_only_valid_pixels():
    t = mt.trivial_predictions(_train(), 3, (1, 3), num_classes=3)
    # valid labels 0, 1, 1 -> majority 1 (all pixels would say 2)
    assert t["seg"].dtype == torch.int64 and t["seg"].shape == (3, 1, 3) and bool((t["seg"] == 1).all())
    # boundary rate over all pixels: 2 of 6
    assert t["boundary"].shape == (3, 1, 3) and torch.allclose(t["boundary"], torch.full((3, 1, 3), 1 / 3))
    # valid and positive depths: 1 and 5 (the valid 0 is missing depth) -> 3
    assert t["depth"].shape == (3, 1, 1, 3) and torch.allclose(t["depth"], torch.full((3, 1, 1, 3), 3.0))
    # per-pixel mean over images of the valid positive depths; pixel 1 has none -> the global mean
    assert t["depth_map"].shape == (3, 1, 1, 3)
    assert t["depth_map"][0, 0, 0].tolist() == [1.0, 3.0, 5.0]
    # valid normals (1,0,0), (0,1,0), (0,1,0) -> (1,2,0)/sqrt(5)
    n = torch.tensor([1.0, 2.0, 0.0]) / math.sqrt(5)
    assert t["normals"].shape == (3, 3, 1, 3)
    torch.testing.assert_close(t["normals"][2, :, 0, 1], n)


def test_trivial_predictions_without_valid_use_every_pixel():
    train = _train()
    del train["valid"]
    t = mt.trivial_predictions(train, 1, (1, 3), num_classes=4)
    assert bool((t["seg"] == 2).all())  # labels 0 x1, 1 x2, 2 x3
    assert abs(float(t["depth"][0, 0, 0, 0]) - 4.5) < 1e-6  # positive depths 1, 9, 3, 5
    assert t["depth_map"][0, 0, 0].tolist() == [2.0, 9.0, 5.0]
    with pytest.raises(ValueError, match="`train\\['labels'\\]`"):
        mt.trivial_predictions({"labels": torch.zeros(2, 2, dtype=torch.long)}, 1, (2, 2), 2)


def test_task_metrics_ignore_invalid_pixels():
    data, _ = mt.load_task_data("synthetic", "val", 2, size=16)
    valid = torch.ones_like(data["valid"])
    valid[:, :4] = False
    data = dict(data, valid=valid)
    seg = data["labels"].clone()
    seg[:, :4] = (seg[:, :4] + 1) % 6  # wrong only where invalid
    depth = data["depth"].clone()
    depth[:, :, :4] *= 2
    normals = data["normals"].clone()
    normals[:, :, :4] = -normals[:, :, :4]
    pred = {"seg": seg, "depth": depth, "normals": normals}
    m = mt.task_metrics(pred, data, num_classes=6)
    assert set(m) == {"seg", "depth", "normals"}
    assert m["seg"]["miou"] == 1 and m["seg"]["pixel_acc"] == 1
    assert m["seg"]["per_class_iou"].shape == (6,)
    assert m["depth"]["abs_rel"] == 0 and m["depth"]["d1"] == 1
    assert m["normals"]["mean"] < 1e-2
    # without the mask the same predictions are wrong
    del data["valid"]
    m = mt.task_metrics(pred, data, num_classes=6)
    assert m["seg"]["pixel_acc"] < 1 and m["depth"]["abs_rel"] > 0 and m["normals"]["mean"] > 10


def test_task_metrics_boundary_tolerance_default_is_one_pixel():
    gt = torch.zeros(1, 12, 12)
    gt[0, :, 5] = 1
    pred = torch.zeros(1, 12, 12)
    pred[0, :, 7] = 1  # two pixels off
    data = {"boundaries": gt}
    assert mt.task_metrics({"boundary": pred}, data, 2)["boundary"]["ods"] == 0
    assert mt.task_metrics({"boundary": pred}, data, 2, boundary_tolerance=2.0)["boundary"]["ods"] == 1
    pred1 = torch.zeros(1, 12, 12)
    pred1[0, :, 6] = 1  # one pixel off: within the default
    assert mt.task_metrics({"boundary": pred1}, data, 2)["boundary"]["ods"] == 1
    # ground truth above 0.5 is a boundary, a soft 0.5 is not: a prediction on the 0.5 column only
    # is 4 px from the one true boundary
    soft = torch.zeros(1, 12, 12)
    soft[0, :, 5], soft[0, :, 9] = 0.6, 0.5
    on_half = torch.zeros(1, 12, 12)
    on_half[0, :, 9] = 1
    assert mt.task_metrics({"boundary": on_half}, {"boundaries": soft}, 2)["boundary"]["ods"] == 0


def test_label_boundaries_without_ignore_label_and_at_the_borders():
    labels = torch.tensor([[[0, 255], [0, 0]]])
    assert mt.label_boundaries(labels, ignore_index=None).tolist() == [[[True, True], [False, False]]]
    assert mt.label_boundaries(labels).tolist() == [[[False, False], [False, False]]]
    # another ignore label
    assert mt.label_boundaries(torch.tensor([[[0, 7]]]), ignore_index=7).tolist() == [[[False, False]]]
    # the last row has only right neighbours, the last column only lower ones
    labels = torch.tensor([[[0, 0, 0], [0, 0, 0], [1, 2, 2]]])
    assert mt.label_boundaries(labels).tolist() == [[[False] * 3, [True] * 3, [True, False, False]]]
    labels = torch.tensor([[[0, 0, 1], [0, 0, 2], [0, 0, 2]]])
    assert mt.label_boundaries(labels).tolist() == [[[False, True, True], [False, True, False], [False, True, False]]]
