import pytest
import torch
import torch.nn.functional as F

from fakes import make_bsds_folder, make_nyu_files
from pixelbook.data import BSDS500
from pixelbook.multitask import (BSDS_POSITIVE, TASK_KEYS, label_boundaries, load_boundary_data, load_task_data,
                                 predict_dataset, task_metrics, trivial_predictions)
from pixelbook.models import PixelNet


class TestLabelBoundaries:
    def test_marks_pixels_whose_right_or_lower_neighbour_differs(self):
        labels = torch.tensor([[[0, 0, 1], [0, 0, 1], [2, 2, 2]]])
        expected = torch.tensor([[[0, 1, 0], [1, 1, 1], [0, 0, 0]]], dtype=torch.bool)
        assert torch.equal(label_boundaries(labels), expected)

    def test_ignore_label_makes_no_boundary(self):
        labels = torch.tensor([[[0, 255], [0, 0]]])
        assert not label_boundaries(labels)[0, 0, 0]


class TestLoadBoundaryData:
    def test_shrinking_keeps_one_pixel_boundaries_at_full_strength(self, tmp_path):
        """The docstring's promise: max pooling, so a 1-px line is not averaged away (area weighting
        would halve it at a 2x shrink)."""
        root = make_bsds_folder(tmp_path)
        data = load_boundary_data("train", size=(6, 8), root=root, progress=False)
        originals = [s["boundaries"] for s in BSDS500(root, split="train")]
        assert data["image"].shape == (2, 3, 6, 8) and data["boundary_mean"].shape == (2, 6, 8)
        for mean, original in zip(data["boundary_mean"], originals):
            assert float(mean.max()) == float(original.max()) > 0
            assert torch.equal(mean, original.reshape(6, 2, 8, 2).amax((1, 3)))  # each 2 x 2 cell's largest mean
        assert torch.equal(data["boundaries"], data["boundary_mean"] >= BSDS_POSITIVE)
        assert torch.equal(data["valid"], data["boundaries"] | (data["boundary_mean"] == 0))

    def test_portrait_images_are_transposed(self, tmp_path):
        data = load_boundary_data("val", size=(6, 8), root=make_bsds_folder(tmp_path), progress=False)
        assert data["image"].shape == (1, 3, 6, 8)  # the 16 x 12 (portrait) image, as 12 x 16


class TestLoadTaskData:
    def test_synthetic_has_every_key_and_class_names(self):
        data, classes = load_task_data("synthetic", "train", 3, size=16)
        assert set(data) == set(TASK_KEYS) and len(classes) == 6
        assert data["image"].shape == (3, 3, 16, 16) and data["labels"].max() < len(classes)

    def test_train_and_val_scenes_differ(self):
        a, _ = load_task_data("synthetic", "train", 2, size=16)
        b, _ = load_task_data("synthetic", "val", 2, size=16)
        assert not torch.equal(a["image"], b["image"])

    def test_nyuv2_on_fake_files_resizes_and_derives_boundaries(self, tmp_path):
        make_nyu_files(tmp_path)
        data, classes = load_task_data("nyuv2", "train", None, size=(8, 10), root=tmp_path, progress=False)
        assert len(classes) == 40 and data["image"].shape == (3, 3, 8, 10)
        assert torch.allclose(data["normals"].norm(dim=1)[data["valid"]], torch.ones(1), atol=1e-5)
        assert torch.equal(data["boundaries"], label_boundaries(data["labels"]))
        val, _ = load_task_data("nyuv2", "val", 1, size=8, root=tmp_path, progress=False)
        assert len(val["image"]) == 1

    def test_bad_arguments_are_errors(self, tmp_path):
        with pytest.raises(ValueError, match="`dataset`"):
            load_task_data("kitti", "train", 2)
        with pytest.raises(ValueError, match="`n`"):
            load_task_data("synthetic", "train", None)
        with pytest.raises(FileNotFoundError, match="`root`"):
            load_task_data("nyuv2", "train", 2, root=tmp_path)


class TestTrivialAndMetrics:
    def test_trivial_predictions_are_the_training_statistics(self):
        train = {"labels": torch.tensor([[[0, 1], [1, 1]]]), "boundaries": torch.tensor([[[1, 0], [0, 0]]]).bool(),
                 "depth": torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]]),
                 "normals": F.normalize(torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2), dim=1)}
        t = trivial_predictions(train, 2, (2, 2), num_classes=3)
        assert torch.all(t["seg"] == 1) and torch.allclose(t["boundary"], torch.full((2, 2, 2), 0.25))
        assert torch.allclose(t["depth"], torch.full((2, 1, 2, 2), 3.0))
        assert torch.equal(t["depth_map"][0], train["depth"][0]) and torch.allclose(t["normals"][:, 2], torch.ones(2, 2, 2))

    def test_perfect_predictions_score_perfectly(self):
        data, _ = load_task_data("synthetic", "val", 2, size=32)
        pred = {"seg": data["labels"], "boundary": data["boundaries"].float(), "depth": data["depth"], "normals": data["normals"]}
        m = task_metrics(pred, data, num_classes=6)
        assert m["seg"]["miou"] == 1 and m["seg"]["pixel_acc"] == 1 and m["boundary"]["ods"] == 1
        assert m["depth"]["d1"] == 1 and m["depth"]["abs_rel"] == 0 and m["normals"]["mean"] < 1e-2

    def test_predict_dataset_concatenates_batches(self):
        data, _ = load_task_data("synthetic", "val", 5, size=16)
        pred = predict_dataset(PixelNet(6), data, batch_size=2)
        assert pred["seg"].shape == (5, 16, 16) and pred["depth"].shape == (5, 1, 16, 16)
