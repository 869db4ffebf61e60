"""pixelbook.filterflow (Ch. 7): the two-stream net, PFF, the direct CNN, envelope and PCA energy."""

import pytest
import torch

import pixelbook as pb
from pixelbook.filterflow import (
    DirectCNN,
    PredictiveFilterFlow,
    TwoStreamNet,
    filter_pca_energy,
    local_envelope,
)
from pixelbook.models import count_parameters

SMALL = dict(width=8, fullres_width=4, levels=2)


class TestTwoStreamNet:
    def test_shapes_and_resolution(self):
        net = TwoStreamNet(3, 25, **SMALL)
        assert net(torch.rand(2, 3, 24, 32)).shape == (2, 25, 24, 32)

    def test_receptive_field_is_larger_than_the_fullres_stream(self):
        # the deep stream sees far: a change at one corner moves the output at the other (a large
        # change, so that it wins the max-pooling that a small one might lose); the full-resolution
        # stream and the fusion conv alone (4 convs: 9 x 9) could not see 8 pixels away
        torch.manual_seed(0)
        net = TwoStreamNet(1, 1, width=4, fullres_width=2, levels=3).eval()
        torch.nn.init.normal_(net.head.weight)
        x = torch.rand(1, 1, 32, 32)
        y = x.clone()
        y[0, 0, 4, 4] = 10.0
        with torch.no_grad():
            change = (net(y) - net(x))[0, 0].abs()
        assert bool((change[12:, 12:] > 1e-6).any())

    def test_size_not_divisible_is_an_error(self):
        with pytest.raises(ValueError, match="`x`: expected H and W divisible by 2\\*\\*levels = 4"):
            TwoStreamNet(3, 3, **SMALL)(torch.rand(1, 3, 18, 16))

    def test_bad_hyperparameters(self):
        with pytest.raises(ValueError, match="`width`: expected an integer in \\[1, inf\\], got 0"):
            TwoStreamNet(3, 3, width=0)
        with pytest.raises(TypeError, match="`levels`: expected an integer"):
            TwoStreamNet(3, 3, levels=True)


class TestPredictiveFilterFlow:
    def test_softmax_filters_are_distributions_and_output_stays_in_the_envelope(self):
        torch.manual_seed(0)
        model = PredictiveFilterFlow(3, kernel_size=5, **SMALL)
        torch.nn.init.normal_(model.net.head.weight, std=1.0)  # away from the initial identity
        x = torch.rand(2, 3, 16, 16)
        res = model.eval()(x)
        f = res["filters"]
        assert f.shape == (2, 25, 16, 16) and f.min() >= 0
        torch.testing.assert_close(f.sum(1), torch.ones(2, 16, 16))
        low, high = local_envelope(x, 5)
        assert torch.all(res["out"] <= high + 1e-6) and torch.all(res["out"] >= low - 1e-6)
        torch.testing.assert_close(res["out"], pb.ops.apply_filter_flow(x, f, impl="reference"))

    def test_initial_free_form_model_is_the_identity(self):
        model = PredictiveFilterFlow(3, kernel_size=7, normalize="none", **SMALL).eval()
        x = torch.rand(1, 3, 16, 16)
        torch.testing.assert_close(model(x)["out"], x)
        torch.testing.assert_close(pb.ops.expected_flow(model(x)["filters"]), torch.zeros(1, 2, 16, 16))

    @pytest.mark.parametrize("weight", [0.5, 0.9, 0.99])
    def test_initial_softmax_model_puts_identity_weight_on_the_centre(self, weight):
        model = PredictiveFilterFlow(3, kernel_size=5, identity_weight=weight, **SMALL).eval()
        x = torch.rand(1, 3, 8, 8)
        f = model(x)["filters"]
        torch.testing.assert_close(f[:, 12], torch.full((1, 8, 8), weight))
        torch.testing.assert_close(f[:, 0], torch.full((1, 8, 8), (1 - weight) / 24))

    def test_trains_towards_a_known_shift(self):
        # trained on "output = input read one pixel to the right", the filters become that one-hot
        # and their expected flow (+1, 0) (the initial flow is 0; ~60 Adam steps reach 0.99)
        torch.manual_seed(1)
        model = PredictiveFilterFlow(1, kernel_size=3, **SMALL)
        x = torch.rand(8, 1, 16, 16)
        target = torch.roll(x, shifts=-1, dims=-1)  # target[y, x] = x[y, x + 1]
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        for _ in range(80):
            res = model(x)
            loss = (res["out"] - target)[..., 1:-1, 1:-1].abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        flow = pb.ops.expected_flow(res["filters"].detach())
        assert float(flow[:, 0, 2:-2, 2:-2].mean()) > 0.9 and float(flow[:, 1].abs().mean()) < 0.1

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`kernel_size`: expected an odd integer"):
            PredictiveFilterFlow(3, kernel_size=4)
        with pytest.raises(ValueError, match="`normalize`: expected one of"):
            PredictiveFilterFlow(3, normalize="sigmoid")
        with pytest.raises(ValueError, match="`identity_weight`: expected a finite number in \\(0, 1\\)"):
            PredictiveFilterFlow(3, identity_weight=1.0)
        with pytest.raises(TypeError, match="`x`: expected a floating-point tensor"):
            PredictiveFilterFlow(3, kernel_size=3, **SMALL)(torch.ones(1, 3, 8, 8, dtype=torch.long))


class TestDirectCNN:
    def test_starts_at_the_identity_and_matches_pff_parameters(self):
        cnn = DirectCNN(3, **SMALL).eval()
        x = torch.rand(1, 3, 16, 16)
        torch.testing.assert_close(cnn(x)["out"], x)
        pff = PredictiveFilterFlow(3, kernel_size=9, **SMALL)
        # only the 1×1 head differs: width · (k² - C) weights + (k² - C) biases
        assert count_parameters(pff) - count_parameters(cnn) == (8 + 1) * (81 - 3)


class TestLocalEnvelope:
    def test_hand_computed(self):
        x = torch.tensor([[[[1.0, 5.0, 3.0, 2.0]]]])
        low, high = local_envelope(x, 3)
        assert low.tolist() == [[[[0.0, 0.0, 0.0, 0.0]]]]  # zero padding rows above and below
        assert high.tolist() == [[[[5.0, 5.0, 5.0, 3.0]]]]
        low, high = local_envelope(torch.full((1, 1, 5, 5), 2.0), 3)
        assert low[0, 0, 2, 2] == 2.0 and low[0, 0, 0, 0] == 0.0 and high.max() == 2.0

    def test_bad_kernel_size(self):
        with pytest.raises(ValueError, match="`kernel_size`: expected an odd integer"):
            local_envelope(torch.rand(1, 1, 4, 4), 2)


class TestFilterPcaEnergy:
    def test_rank_two_filters_have_all_energy_in_two_components(self):
        torch.manual_seed(2)
        basis = torch.randn(2, 25)
        coeff = torch.randn(300, 2)
        filters = (coeff @ basis).T.reshape(1, 25, 15, 20)
        energy = filter_pca_energy(filters, 4)
        assert float(energy[0]) < 0.999
        torch.testing.assert_close(energy[1:], torch.ones(3, dtype=torch.float64))

    def test_equals_svd_of_the_pixel_matrix(self):
        torch.manual_seed(3)
        filters = torch.rand(2, 9, 5, 6)
        X = filters.double().permute(0, 2, 3, 1).reshape(-1, 9)
        s2 = torch.linalg.svdvals(X) ** 2
        torch.testing.assert_close(filter_pca_energy(filters, 9), s2.cumsum(0) / s2.sum())
        Xc = X - X.mean(0)
        s2c = torch.linalg.svdvals(Xc) ** 2
        torch.testing.assert_close(filter_pca_energy(filters, 3, centered=True), (s2c.cumsum(0) / s2c.sum())[:3])

    def test_bad_input(self):
        with pytest.raises(ValueError, match="`num_components`: expected at most k\\*k = 9"):
            filter_pca_energy(torch.rand(1, 9, 2, 2), 10)
        with pytest.raises(ValueError, match="all zero"):
            filter_pca_energy(torch.zeros(1, 9, 2, 2), 3)


class TestRestoration:
    def test_degrade_each_task(self):
        from pixelbook.filterflow import restoration as rs

        g = torch.Generator().manual_seed(4)
        x = torch.rand(6, 1, 16, 16, generator=g)
        y, info = rs.degrade("deblur", x, {"size": 7, "min_length": 1.0, "max_length": 6.0, "cells": 3}, g)
        assert y.shape == x.shape and info["length"].shape == (6,) and float(info["length"].max()) <= 6
        y, info = rs.degrade("jpeg", x, {"qualities": [10, 40]}, g)
        assert set(info["quality"].tolist()) <= {10, 40}
        for q in (10, 40):  # each image was compressed at its own quality
            idx = (info["quality"] == q).nonzero().flatten()
            if len(idx):
                torch.testing.assert_close(y[idx], pb.data.degradations.jpeg_compress(x[idx], q))
        y, info = rs.degrade("sr", x, {"scale": 4})
        torch.testing.assert_close(y, pb.data.degradations.bicubic_degrade(x, 4)[0])
        with pytest.raises(ValueError, match="`task`: expected one of"):
            rs.degrade("denoise", x, {})

    def test_predict_batches_equal_one_pass(self):
        from pixelbook.filterflow import restoration as rs

        model = PredictiveFilterFlow(1, kernel_size=3, **SMALL).eval()
        torch.nn.init.normal_(model.net.head.weight, std=0.5)
        x = torch.rand(5, 1, 8, 8)
        out, filters = rs.predict(model, x, batch_size=2, filters=True)
        with torch.no_grad():
            ref = model(x)
        torch.testing.assert_close(out, ref["out"].clamp(0, 1))
        torch.testing.assert_close(filters, ref["filters"])

    def test_flow_edge_ratio_on_hand_made_filters(self):
        from pixelbook.filterflow import restoration as rs

        # a vertical edge in the middle; filters shift by 2 px on the edge columns, identity elsewhere
        image = torch.zeros(1, 1, 10, 10)
        image[..., 5:] = 1.0
        filters = torch.zeros(1, 25, 10, 10)
        filters[:, 12] = 1.0
        filters[:, 12, :, 4:6] = 0.0
        filters[:, 14, :, 4:6] = 1.0  # (dy, dx) = (0, +2)
        assert rs.flow_edge_ratio(filters, image) == float("inf")  # flat pixels have zero flow
        filters[:, 12] = 0.5
        filters[:, 14] = 0.5  # flow 1 px everywhere: no contrast between edges and flat regions
        assert rs.flow_edge_ratio(filters, image) == pytest.approx(1.0)


class TestExperiment:
    def test_declared_and_every_config_builds(self):
        from pixelbook.experiments.pff import EXPERIMENT as exp
        for arm in exp.arms:
            for scale in exp.seeds:
                cfg = exp.run_config(arm.name, exp.seeds_for(scale)[0], scale)
                assert cfg.data["task"] == arm.params["task"]
        # PFF and CNN of a task differ only in the output layer
        for task in ("deblur", "jpeg", "sr"):
            pff, cnn = (exp.run_config(f"{m}_{task}", 0, "medium") for m in ("pff", "cnn"))
            assert pff.data == cnn.data and pff.train == cnn.train
            assert {k: v for k, v in pff.model.items() if k in cnn.model} == {**cnn.model, "name": "pff"}

    def test_smoke_run_of_every_arm(self):
        from pixelbook.experiments.pff import EXPERIMENT as exp
        for arm in ("input_deblur", "pff_deblur", "cnn_jpeg", "pff_sr"):
            run = exp.run(arm, 0, "smoke", cache=False, progress=False)
            task = arm.split("_")[1]
            key = "jpeg.psnr" if task == "jpeg" else f"{task}.psnr"
            assert key in run.metrics and 10 < run.metrics[key] < 60
        assert run.metrics["sr.pca_top10"] <= 1.0

    def test_full_scale_data_path_on_fake_archives(self, tmp_path, monkeypatch):
        # the full-scale data (DIV2K HR + BSDS500) through the registry, on fake archives with the
        # real layouts; sizes overridden so that the tiny fake images can be cropped
        from fakes import make_bsds_archive, make_div2k_archive

        from pixelbook.data.registry import dataset_dir

        monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))  # these fakes stay out of other tests' cache
        for name, folder in (("div2k_train_hr", "DIV2K_train_HR"), ("div2k_valid_hr", "DIV2K_valid_HR")):
            arc, _ = make_div2k_archive(tmp_path / name, folder)
            (dataset_dir(name) / f"{folder}.zip").write_bytes(arc.read_bytes())
        arc, _ = make_bsds_archive(tmp_path)
        (dataset_dir("bsds500") / "BSR_bsds500.tgz").write_bytes(arc.read_bytes())
        from pixelbook.experiments.pff import EXPERIMENT as exp
        full = exp.run_config("pff_deblur", 0, "full")
        assert full.data["degradation"] == {"size": 31, "min_length": 1.0, "max_length": 30.0, "cells": 3}
        assert full.model["kernel_size"] == 17 and full.data["test_protocol"] == "crops"  # [KONG, §6.4.2]
        cfg = exp.run_config("pff_deblur", 0, "full", {"data": {
            "patch": 8, "n_train": 6, "n_test": 3, "bsds_archive": "bsds500",
            "degradation": {"size": 5, "min_length": 1.0, "max_length": 4.0, "cells": 3}}})  # fits 8 x 8 crops
        assert cfg.data["source"] == "div2k" and cfg.data["bsds_splits"] == ["train", "test"]
        data = exp.data(cfg)
        x, y = data["train"]["input"], data["train"]["target"]
        assert x.shape == y.shape == (6, 1, 8, 8) and y.dtype == torch.float32 and 0 <= float(y.min()) <= float(y.max()) <= 1
        assert data["test_clean"].shape == (3, 1, 8, 8)


    @pytest.mark.parametrize("task, arms", [("jpeg", ("input_jpeg", "pff_jpeg")), ("sr", ("input_sr", "cnn_sr"))])
    def test_full_scale_evaluates_on_the_thesis_test_sets(self, task, arms, tmp_path, monkeypatch):
        """Train on fake DIV2K (+ BSDS500), test on fake LIVE1 / Set5, Set14, Urban100 archives: whole
        images, Y channel, 8-bit outputs, SR scored without a border of `scale` pixels."""
        from fakes import make_bsds_archive, make_div2k_archive, make_live_archive, make_sr_benchmark_archive

        from pixelbook.data.registry import dataset_dir
        from pixelbook.experiments.pff import EXPERIMENT as exp

        monkeypatch.setenv("PIXELBOOK_CACHE", str(tmp_path / "cache"))
        arc, _ = make_div2k_archive(tmp_path / "div2k", "DIV2K_train_HR")
        (dataset_dir("div2k_train_hr") / "DIV2K_train_HR.zip").write_bytes(arc.read_bytes())
        arc, _ = make_bsds_archive(tmp_path)
        (dataset_dir("bsds500") / "BSR_bsds500.tgz").write_bytes(arc.read_bytes())
        make_live_archive(dataset_dir("live_release2") / "databaserelease2.zip")
        make_sr_benchmark_archive(dataset_dir("sr_benchmark") / "benchmark.tar")
        cfg = exp.run_config(f"pff_{task}", 0, "full")
        assert cfg.data["test_images"] == {"jpeg": ["live1"], "sr": ["set5", "set14", "urban100"]}[task]
        assert cfg.data["test_protocol"] == "whole" and cfg.eval["border"] == (4 if task == "sr" else 0)
        small = {"data": {"patch": 8, "n_train": 8, "bsds_archive": "bsds500"}}
        runs = {}
        for arm in arms:
            train = {} if arm.startswith("input") else {"train": {"epochs": 1, "batch_size": 4}}
            runs[arm] = exp.run(arm, 0, "full", "cpu", cache=False, progress=False, **small, **train).metrics
        suffixes = ["q10", "q20", "q40"] if task == "jpeg" else ["set5", "set14", "urban100"]
        for m in runs.values():
            assert all(10 < m[f"{task}.psnr_{s}"] < 60 and -1 <= m[f"{task}.ssim_{s}"] <= 1 for s in suffixes)
        if task == "jpeg":
            base = runs["input_jpeg"]
            assert base["jpeg.psnr_q10"] < base["jpeg.psnr_q20"] < base["jpeg.psnr_q40"]  # less compression
            assert 0 < runs["pff_jpeg"]["jpeg.pca_top10_q10"] <= 1 + 1e-9
            assert base["jpeg.psnr"] == pytest.approx(sum(base[f"jpeg.psnr_{s}"] for s in suffixes) / 3)
        else:  # the bicubic input, scored by hand on Set5 with the same conventions
            from pixelbook.data.hr_images import RestorationTestSet, load_pool, mod_crop
            from pixelbook.data.degradations import bicubic_degrade
            from pixelbook.metrics import psnr_per_image

            ys = [mod_crop(y.float()[None] / 255, 4) for y in load_pool(RestorationTestSet("set5"), gray=True)]
            ref = [psnr_per_image((bicubic_degrade(y, 4)[0] * 255).round()[..., 4:-4, 4:-4] / 255, y[..., 4:-4, 4:-4])
                   for y in ys]
            assert runs["input_sr"]["sr.psnr_set5"] == pytest.approx(float(torch.cat(ref).mean()), abs=1e-9)
