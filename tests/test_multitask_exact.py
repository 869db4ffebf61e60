"""pixelbook.multitask against hand-computed cases: the trivial baselines on a tiny training set
with invalid pixels, the ``valid`` mask in ``task_metrics``, the documented boundary tolerance and
constants, ``label_boundaries`` without an ignore label. Complements tests/test_multitask.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pixelbook import multitask as mt


def _train():
    """Two 1 x 3 images. Valid: image 0 pixel 0, image 1 pixels 1 and 2."""
    return {
        "labels": torch.tensor([[[0, 2, 2]], [[2, 1, 1]]]),
        "valid": torch.tensor([[[True, False, False]], [[False, True, True]]]),
        "boundaries": torch.tensor([[[1.0, 0.5, 0.0]], [[0.0, 0.0, 1.0]]]),  # a soft 0.5 is not a boundary
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
    assert mt.label_boundaries(labels).dtype == torch.bool  # a mask, like load_boundary_data's
    assert mt.label_boundaries(labels, ignore_index=None).tolist() == [[[True, True], [False, False]]]
    assert mt.label_boundaries(labels).tolist() == [[[False, False], [False, False]]]
    # another ignore label
    assert mt.label_boundaries(torch.tensor([[[0, 7]]]), ignore_index=7).tolist() == [[[False, False]]]
    # the last row has only right neighbours, the last column only lower ones
    labels = torch.tensor([[[0, 0, 0], [0, 0, 0], [1, 2, 2]]])
    assert mt.label_boundaries(labels).tolist() == [[[False] * 3, [True] * 3, [True, False, False]]]
    labels = torch.tensor([[[0, 0, 1], [0, 0, 2], [0, 0, 2]]])
    assert mt.label_boundaries(labels).tolist() == [[[False, True, True], [False, True, False], [False, True, False]]]


# ------------------------------------------------------------------------------------------------
# loading and resizing
# ------------------------------------------------------------------------------------------------


def _ramp_sample(h=8, w=8):
    """An NYUv2-style sample whose image is w^2 along the width (a curved ramp: the weights of the
    resampling show in the values)."""
    g = torch.Generator().manual_seed(0)
    col = torch.arange(w, dtype=torch.float32) ** 2
    valid = torch.rand(h, w, generator=g) > 0.3
    return {"image": col.expand(3, h, w).clone(), "labels40": torch.randint(0, 40, (h, w), generator=g),
            "depth": torch.rand(1, h, w, generator=g) + 1, "normals": torch.randn(3, h, w, generator=g),
            "valid": valid, "normals_valid": torch.rand(h, w, generator=g) > 0.3}


def test_resize_sample_bilinear_antialiased_image_and_nearest_rest():
    s = _ramp_sample()
    out = mt._resize_sample(s, (4, 4))
    # antialiased bilinear at a 2x shrink is the triangle filter (1, 3, 3, 1)/8 around 2j + 0.5
    # (align_corners=False); plain bilinear would give the mean of the two middle pixels
    x = s["image"][0, 0]
    for j in (1, 2):
        expected = float(x[2 * j - 1] + 3 * x[2 * j] + 3 * x[2 * j + 1] + x[2 * j + 2]) / 8
        assert abs(float(out["image"][0, 0, j]) - expected) < 1e-4
    # everything else: nearest, i.e. every other pixel from the first
    assert torch.equal(out["labels"], s["labels40"][::2, ::2]) and out["labels"].dtype == torch.int64
    assert torch.equal(out["depth"], s["depth"][:, ::2, ::2])
    assert torch.equal(out["valid"], s["valid"][::2, ::2] & s["normals_valid"][::2, ::2])
    torch.testing.assert_close(out["normals"], F.normalize(s["normals"][:, ::2, ::2], dim=0))
    del s["normals_valid"]  # normals without their own mask: only the depth mask counts
    assert torch.equal(mt._resize_sample(s, (4, 4))["valid"], s["valid"][::2, ::2])


class _FakeBSDS:
    """Stands in for pixelbook.data.BSDS500: records its arguments, serves given samples."""

    def __init__(self, root, split="train", download=False):
        _FakeBSDS.calls.append({"root": root, "split": split, "download": download})

    def __len__(self):
        return len(_FakeBSDS.samples)

    def __getitem__(self, i):
        return _FakeBSDS.samples[i]


def test_load_boundary_data_orientation_thresholds_count_and_progress(monkeypatch, capsys):
    import pixelbook.data

    g = torch.Generator().manual_seed(1)
    land_b = torch.tensor([[0.0, 0.25, 0.5, 1.0] * 2] * 4)  # 4 x 8
    port_b = torch.rand(8, 4, generator=g).round()
    square_b = torch.rand(8, 8, generator=g).round()
    _FakeBSDS.samples = [
        {"image": torch.rand(3, 4, 8, generator=g), "boundaries": land_b},
        {"image": torch.rand(3, 8, 4, generator=g), "boundaries": port_b},
        {"image": torch.rand(3, 8, 8, generator=g), "boundaries": square_b},
    ]
    _FakeBSDS.calls = []
    monkeypatch.setattr(pixelbook.data, "BSDS500", _FakeBSDS)
    data = mt.load_boundary_data("val", size=(4, 8), root="somewhere", download=True)
    assert _FakeBSDS.calls == [{"root": "somewhere", "split": "val", "download": True}]
    assert "BSDS500 val" in capsys.readouterr().err  # progress bar by default
    assert data["image"].shape == (3, 3, 4, 8)
    # landscape: unchanged (same size); portrait: transposed; square: kept upright, max-pooled 2 x 1
    torch.testing.assert_close(data["image"][0], _FakeBSDS.samples[0]["image"])
    torch.testing.assert_close(data["image"][1], _FakeBSDS.samples[1]["image"].transpose(1, 2))
    assert torch.equal(data["boundary_mean"][1], port_b.T)
    assert torch.equal(data["boundary_mean"][2], square_b.reshape(4, 2, 8).amax(1))
    # the square image shrinks 2x in H: antialiased bilinear = the (1, 3, 3, 1)/8 filter around 2i + 0.5
    sq = _FakeBSDS.samples[2]["image"]
    for i in (1, 2):
        torch.testing.assert_close(data["image"][2, :, i], (sq[:, 2 * i - 1] + 3 * sq[:, 2 * i] + 3 * sq[:, 2 * i + 1]
                                                            + sq[:, 2 * i + 2]) / 8)
    # a mean of exactly BSDS_POSITIVE is positive; strictly between 0 and it is ignored
    assert data["boundaries"][0, 0].tolist() == [False, False, True, True] * 2
    assert data["valid"][0, 0].tolist() == [True, False, True, True] * 2
    few = mt.load_boundary_data("train", size=(4, 8), n=2, progress=False)
    assert len(few["image"]) == 2 and capsys.readouterr().err == ""
    assert _FakeBSDS.calls[-1] == {"root": None, "split": "train", "download": False}


class _FakeNYU:
    def __init__(self, root=None, split="train", *, download=False, verify=True):
        _FakeNYU.calls.append({"root": root, "split": split, "download": download, "verify": verify})

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return _ramp_sample(4, 4)

    classes = tuple(f"c{i}" for i in range(40))


def test_load_task_data_asks_the_registry_as_documented(monkeypatch, capsys):
    import pixelbook.data

    _FakeNYU.calls = []
    monkeypatch.setattr(pixelbook.data, "NYUv2Labeled", _FakeNYU)
    data, classes = mt.load_task_data("nyuv2", "val", 2, size=4)
    # the val split is NYUv2's test split; these files have no checksum (verify off); no download
    # unless asked; a progress bar by default
    call = _FakeNYU.calls[-1]
    assert call["split"] == "test" and not call["verify"] and not call["download"] and call["root"] is None
    assert "NYUv2 val" in capsys.readouterr().err
    assert len(data["image"]) == 2 and len(classes) == 40
    # invalid pixels carry the ignore label
    assert torch.equal(data["labels"] == 255, ~data["valid"])
    mt.load_task_data("nyuv2", "train", None, size=4, download=True, progress=False)
    assert _FakeNYU.calls[-1]["split"] == "train" and _FakeNYU.calls[-1]["download"] is True
    assert capsys.readouterr().err == ""


def test_load_task_data_on_fake_files_splits_and_seeds(tmp_path):
    from fakes import make_nyu_files

    make_nyu_files(tmp_path)  # splits: train 1, 3, 4; test 2, 5
    assert len(mt.load_task_data("nyuv2", "val", None, size=4, root=tmp_path, progress=False)[0]["image"]) == 2
    assert len(mt.load_task_data("nyuv2", "train", None, size=4, root=tmp_path, progress=False)[0]["image"]) == 3
    a, _ = mt.load_task_data("synthetic", "train", 2, size=16, seed=0)
    b, _ = mt.load_task_data("synthetic", "train", 2, size=16, seed=1)
    assert not torch.equal(a["image"], b["image"])


def test_load_task_data_defaults():
    data, _ = mt.load_task_data("synthetic", "val", 1)  # size 64, seed 0
    assert data["image"].shape == (1, 3, 64, 64)
    assert torch.equal(data["image"], mt.load_task_data("synthetic", "val", 1, size=64, seed=0)[0]["image"])


def test_load_task_data_errors():
    with pytest.raises(ValueError, match="^`n`: expected the number of synthetic scenes, got None$"):
        mt.load_task_data("synthetic", "train", None)
    with pytest.raises(ValueError, match="^`split`: expected one of"):
        mt.load_task_data("synthetic", "test", 2)
    with pytest.raises(ValueError, match=r"^`labels`: expected shape \(N, H, W\)"):
        mt.label_boundaries(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^`train\['labels'\]`: expected shape \(N, H, W\)"):
        mt.trivial_predictions({"labels": torch.zeros(2, 2, dtype=torch.long)}, 1, (2, 2), 2)


class _CountingModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.sizes = []

    def predict(self, image):
        self.sizes.append(len(image))
        return {"seg": image[:, 0].long(), "depth": image[:, :1] + self.w}


def test_predict_dataset_batches_and_device():
    image = torch.rand(5, 3, 4, 4)
    model = _CountingModel()
    out = mt.predict_dataset(model, {"image": image}, batch_size=2)
    assert model.sizes == [2, 2, 1]
    torch.testing.assert_close(out["depth"], image[:, :1])
    assert torch.equal(out["seg"], image[:, 0].long())
    model.sizes = []
    assert mt.predict_dataset(model, {"image": torch.rand(33, 3, 2, 2)})["depth"].shape == (33, 1, 2, 2)
    assert model.sizes == [32, 1]  # default batch_size 32


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_predict_dataset_passes_the_device_on():
    with pytest.raises(ValueError, match="`device`"):
        mt.predict_dataset(_CountingModel(), {"image": torch.rand(1, 3, 4, 4)}, device="cuda")
