"""Chapter 7's experiment: Predictive Filter Flow against a direct CNN and the degraded input [KONG, Ch. 6].

Three restoration tasks, each with three arms of equal budget:

- ``input_<task>``: no model, the degraded image itself (the floor every model must beat);
- ``cnn_<task>``: the two-stream network predicting the image (the thesis' "CNN" baseline,
  :class:`pixelbook.filterflow.DirectCNN`, residual output);
- ``pff_<task>``: the same network predicting a ``k × k`` filter per pixel
  (:class:`pixelbook.filterflow.PredictiveFilterFlow`): softmax filters for deblurring, free-form
  filters for JPEG and super-resolution, as in the thesis [KONG, §6.3.1].

Tasks: ``deblur`` — non-uniform motion blur, two linear motions of 1-10 px blended by a smooth
random mask; ``jpeg`` — Pillow JPEG with the quality drawn from {10, 20, 40} per training image (the
thesis' mixed-quality model), tested at each quality; ``sr`` — ×4 bicubic down- and up-sampling.

Data: grey (luminance) 48 × 48 crops of scikit-image photographs; the training pool and the two
test photographs (astronaut, camera) are disjoint. Each seed draws its own training crops and
degradations, its own initial weights and batch order; the test crops are the same for every seed
and arm, so arms are compared seed by seed on the same images. The claims below were written before
the ``medium`` results existed (git history: they were committed first).

At ``full`` scale (cost: :data:`FULL_COST`) the training data are the thesis' — DIV2K's 800 HR images,
plus BSDS500 for deblurring and JPEG — as 64 × 64 luma crops in batches of 56 with Adam at 5e-4; the
deblurring degradation and filters are the thesis' (motions of 1-30 px, 17 × 17 softmax filters); the
test sets are the thesis' where their source is known (:data:`FULL_TEST_SETS`): JPEG on LIVE1 at
quality 10 / 20 / 40 and ×4 SR on Set5, Set14 and Urban100, on whole images with PSNR / SSIM on the
luma channel Y (ITU-R BT.601, as MATLAB's ``rgb2ycbcr``), outputs rounded to 8 bits, SR scored
without a border of 4 pixels (metrics ``jpeg.psnr_q10`` ..., ``sr.psnr_set5`` ...).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..results import Claim
from ..runtime import scaled
from ..training import TrainConfig
from .base import Arm, Experiment

__all__ = ["PFFExperiment", "EXPERIMENT", "TRAIN_IMAGES", "TEST_IMAGES", "FULL_TEST_SETS", "FULL_COST"]

#: scikit-image photographs for training (natural and microscopy photos, text, textures) ...
TRAIN_IMAGES = ("chelsea", "coffee", "rocket", "coins", "brick", "grass", "gravel", "moon",
                "immunohistochemistry", "retina", "hubble_deep_field", "page")
#: ... and the two held out for testing.
TEST_IMAGES = ("astronaut", "camera")

_TASK_ARMS = {
    "deblur": "non-uniform motion blur (two motions of 1-10 px, smooth mask)",
    "jpeg": "JPEG at quality 10/20/40 (mixed in training)",
    "sr": "x4 bicubic down/up-sampling",
}
# ours: filter sizes. Deblurring: 11 × 11 covers the longest blur (10 px), as the thesis' 17 × 17 is
# "largely independent" of its 30-px blurs [KONG, §6.3.1]; JPEG and SR: not stated in the thesis; 7 × 7
# reaches across an 8 × 8 JPEG block boundary from any pixel next to it and over one ×4 low-res pixel.
_KERNEL = {"deblur": 11, "jpeg": 7, "sr": 7}
#: ``full`` scale: the thesis' 17 × 17 softmax filters for deblurring [KONG, §6.4.2]; JPEG and SR sizes
#: are not stated in the thesis (ours, as above).
_FULL_KERNEL = {"deblur": 17, "jpeg": 7, "sr": 7}
#: ``full`` scale test sets [KONG, §6.4, Tables 6.1-6.3] (:data:`pixelbook.data.hr_images.TEST_SETS`):
#: LIVE1 for JPEG, Set5 / Set14 / Urban100 for ×4 SR, whole images, Y channel; SR scores leave out a
#: border of ``scale`` pixels (the convention of SR benchmarks). The blur set of Bahat et al. (Table
#: 6.1) has no source in the notes this book works from, so deblurring is tested on 64 × 64 crops of
#: DIV2K's 100 validation images blurred as in training: not comparable with Table 6.1.
FULL_TEST_SETS = {"deblur": ["div2k_valid_hr"], "jpeg": ["live1"], "sr": ["set5", "set14", "urban100"]}
#: What the full run costs: an ESTIMATE. The thesis: 100K iterations of batch 56 on one Titan X, "each
#: model trained within 2 days" [KONG, §6.3.2] (<= 48 Titan X-hours per model; its network is a
#: ResNet-18 two-stream one). Here: a ~150k-parameter two-stream network, 30 epochs of 32,000 pairs
#: (17,160 steps of 56 crops of 64 x 64); ``torch.utils.flop_counter`` counts 41 GFLOP per training step
#: (PFF deblurring, k = 17; 35-36 for the CNN and the k = 7 models; the filter application itself
#: adds ~1 %), 0.7 PFLOP per arm: minutes of arithmetic at any modern GPU's rate. A step of so small a
#: network is bound by kernel launches rather than FLOPs (assumed ~20 ms: ~6 min per arm), and the
#: data preparation on the CPU (decoding DIV2K's 800 PNGs, degrading 32,000 crops) takes longer
#: still: allow ~0.5 GPU-hour per trained arm, 6 trained arms. Downloads: DIV2K train + valid HR
#: (~3.5 + ~0.4 GB), BSDS500 (BSR_full.tgz, 252 MB), the SR benchmark archive (~250 MB, its README),
#: LIVE release 2 (size not known to us; not counted).
FULL_COST = {"gpu_hours_per_model": 0.5, "models": 6, "paper_titan_x_hours_per_model": 48.0,
             "gflop_per_step": 41.4, "download_gb": 4.4}


def _arms():
    arms = []
    for task, what in _TASK_ARMS.items():
        arms += [Arm(f"input_{task}", f"no model: the degraded input ({what})", {"task": task, "model": None}),
                 Arm(f"cnn_{task}", f"two-stream CNN predicting the image ({what})", {"task": task, "model": "cnn"}),
                 Arm(f"pff_{task}", f"Predictive Filter Flow, {_KERNEL[task]}x{_KERNEL[task]} "
                                    f"{'softmax' if task == 'deblur' else 'free-form'} filters ({what})",
                     {"task": task, "model": "pff"})]
    return tuple(arms)


# The outcomes of the medium run (commit f0fed54, 3 seeds; `expected` records them and is not hashed):
# these claims did NOT hold. PFF's softmax deblurring filters stayed at the identity (-0.02 dB against
# the blurred input, every seed) while the CNN gained +1.66 dB; at JPEG quality 40 PFF gained +0.58,
# +0.63, +0.47 dB (2 of 3 seeds above 0.5); the CNN beat PFF on every task and seed (deblur -1.68 dB,
# JPEG -0.12 dB, SR -0.20 dB for PFF). The committed results are a rerun from commit cebd036 (one
# thread per job; SSIM now follows [WANG04]) with the same verdicts: -0.02/-0.02/-0.00 dB for
# deblurring, +0.61/+0.62/+0.48 dB at JPEG quality 40, PFF - CNN -1.66, -0.10, -0.19 dB (means).
# The chapter reports these numbers and what we checked about why.
_DID_NOT_HOLD = ("pff_beats_input_deblur", "pff_beats_input_jpeg_q40", "pff_beats_cnn_deblur", "pff_beats_cnn_jpeg",
                 "pff_beats_cnn_sr")


def _claims():
    claims = []
    # C1. PFF improves on its input. Both models start at the identity (PFF: identity filters, the CNN:
    # a zero residual), so training moves them only where the L1 loss falls. 0.5 dB (12 % lower RMSE)
    # is about a quarter of the thesis' gains over the degraded input at full scale (JPEG: +2.0 to
    # +2.3 dB on LIVE1, Table 6.2; SR x4: +3.75 dB on Set5, Table 6.3) — what a 100x smaller model and
    # budget should still reach — and is far beyond seed noise here (the test crops are the same for
    # every seed). Every seed (3 of 3).
    paper = {
        "deblur": "no blurry-input column in the thesis; PFF 25.18 dB on moderate blur (Bahat et al., RGB, "
                  "full scale, Table 6.1)",
        "jpeg_q10": "JPEG 27.77 -> PFF 29.82 dB (LIVE1, Y, full scale, Table 6.2)",
        "jpeg_q20": "JPEG 30.07 -> PFF 32.14 dB (LIVE1, Y, full scale, Table 6.2)",
        "jpeg_q40": "JPEG 32.35 -> PFF 34.67 dB (LIVE1, Y, full scale, Table 6.2)",
        "sr": "bicubic 28.42 -> PFF 32.17 dB (Set5 x4, Y, full scale, Table 6.3)",
    }
    metric = {"deblur": "deblur.psnr", "jpeg_q10": "jpeg.psnr_q10", "jpeg_q20": "jpeg.psnr_q20",
              "jpeg_q40": "jpeg.psnr_q40", "sr": "sr.psnr"}
    for key in ("deblur", "jpeg_q10", "jpeg_q20", "jpeg_q40", "sr"):
        task = key.split("_")[0]
        claims.append(Claim(f"pff_beats_input_{key}", f"PFF improves on the degraded input ({key.replace('_', ' ')}) "
                            "by more than 0.5 dB PSNR", metric=metric[key], arm_a=f"pff_{task}",
                            arm_b=f"input_{task}", margin=0.5, k=3, n=3, fmt=".2f", paper=paper[key]))
    # C2. The baseline is a real one: the CNN improves on its input too, by the same margin and reasoning.
    for task in _TASK_ARMS:
        m = "jpeg.psnr" if task == "jpeg" else f"{task}.psnr"
        claims.append(Claim(f"cnn_beats_input_{task}", f"The direct CNN improves on the degraded input ({task}) by "
                            "more than 0.5 dB PSNR", metric=m, arm_a=f"cnn_{task}", arm_b=f"input_{task}",
                            margin=0.5, k=3, n=3, fmt=".2f",
                            paper="CNN 24.29 dB on moderate blur (Table 6.1); JPEG/SR CNN numbers only in a figure "
                                  "(Fig. 6.4)" if task == "deblur" else "CNN 'on par with state of the art' (Fig. 6.4)"
                            if task == "jpeg" else "CNN not in Table 6.3"))
    # C3. The thesis' comparison: PFF beats the same network predicting the image directly. Margin 0
    # (the direction alone), on every seed: with no true difference the chance that three seeds all
    # favour PFF is 1/8. The thesis' margins at full scale: +0.89 dB (moderate blur), +1.25 dB (large).
    for task in _TASK_ARMS:
        m = "jpeg.psnr" if task == "jpeg" else f"{task}.psnr"
        claims.append(Claim(f"pff_beats_cnn_{task}", f"PFF beats the direct CNN of the same size ({task})",
                            metric=m, arm_a=f"pff_{task}", arm_b=f"cnn_{task}", margin=0.0, k=3, n=3, fmt=".2f",
                            paper={"deblur": "25.18 vs 24.29 dB moderate, 22.12 vs 20.87 dB large (Bahat et al., "
                                             "RGB, full scale, Table 6.1)",
                                   "jpeg": "PFF above CNN at every QF (LIVE1, full scale, Fig. 6.4; no table)",
                                   "sr": "no CNN number for SR in the thesis"}[task]))
    return tuple(dataclasses.replace(c, expected=c.id not in _DID_NOT_HOLD) for c in claims)


class PFFExperiment(Experiment):
    chapter = "07_predictive_filter_flow"
    title = "Filter flow: Predictive Filter Flow for deblurring, JPEG and super-resolution"
    arms = _arms()
    # medium: 3 seeds; the claims ask for every seed (3 of 3), see above.
    seeds = {"smoke": (0,), "small": (0,), "medium": (0, 1, 2), "full": (0,)}
    claims = _claims()
    replay_arm = "pff_deblur"
    replay_steps = 10

    # -- configuration --------------------------------------------------------------------------

    def config(self, arm, seed, scale):
        task = arm.params["task"]
        degradation = {
            # ours: 1-10 px motions fit the 11 x 11 filters; the thesis draws 1-30 px for 17 x 17 filters
            "deblur": {"size": 11, "min_length": 1.0, "max_length": 10.0, "cells": 3},
            "jpeg": {"qualities": [10, 20, 40]},  # Table 6.2's qualities, mixed as the thesis' mixed-QF model
            "sr": {"scale": 4},                   # Table 6.3
        }[task]
        full = scale == "full"
        if full and task == "deblur":  # [KONG, §6.4.2]: linear motion kernels of 30 x 30 (odd: 31), 1-30 px
            degradation = {"size": 31, "min_length": 1.0, "max_length": 30.0, "cells": 3}
        data = {
            "task": task,
            "degradation": degradation,
            # smoke/small/medium: scikit-image photographs; full: the thesis' training data — DIV2K's
            # 800 HR images, plus BSDS500 train + test for deblurring and JPEG (see the errata) — and
            # the thesis' test sets (FULL_TEST_SETS)
            "source": "div2k" if full else "skimage",
            "train_images": ["div2k_train_hr"] if full else list(TRAIN_IMAGES),
            "bsds_splits": ["train", "test"] if full and task != "sr" else [],
            "bsds_archive": "bsds500_full",
            "test_images": FULL_TEST_SETS[task] if full else list(TEST_IMAGES),
            "image_side": None if full else 256,  # shorter side of the photographs before cropping
            "patch": scaled(scale, smoke=32, small=48, medium=48, full=64),  # the thesis: 64 [KONG, §6.3.2]
            # ours: medium = 4,000 pairs seen 4 times (1,000 steps of 16), sized to fit 6 trained arms x
            # 3 seeds in 30 min on 2 cores; small = 1,600 pairs twice (200 steps)
            "n_train": scaled(scale, smoke=32, small=1600, medium=4000, full=32000),
            "n_test": scaled(scale, smoke=16, small=128, medium=256, full=512),
            "seed": seed,
            "test_seed": 1000,  # the same test crops for every seed and arm
        }
        evaluation = {"pca_components": 10, "flow_top": 0.2, "flow_bottom": 0.5, "monitor_n": 64,
                      "length_bins": [1.0, 4.0, 7.0, 10.0]}
        if full:
            # JPEG and SR: whole test images (the model is fully convolutional; the thesis applies it to
            # non-overlapping tiles), outputs rounded to 8 bits as saved images are; SR scores leave out
            # a border of `scale` px. Deblurring: the thesis' moderate (<= 16 px) / large split of lengths.
            data.update(test_protocol="crops" if task == "deblur" else "whole", test_roots={})
            evaluation.update(border=degradation.get("scale", 0), quantize=True, monitor_n=8,
                              length_bins=[1.0, 16.0, 30.0])
        if arm.params["model"] is None:
            return self.make_config(arm, seed, scale, train=None, data=data, eval=evaluation)
        pff = arm.params["model"] == "pff"
        model = {"name": arm.params["model"], "in_channels": 1,
                 # ours: the two-stream net at CPU size (~145k parameters); PFF and CNN differ only in the
                 # 1x1 output layer ((width + 1) * (k^2 - 1) parameters, < 1 %)
                 "width": 16, "levels": 2, "blocks": 1, "fullres_width": 8, "fullres_layers": 3}
        if pff:
            model.update(kernel_size=(_FULL_KERNEL if full else _KERNEL)[task],
                         normalize="softmax" if task == "deblur" else "none",
                         identity_weight=0.9)
        train = TrainConfig(
            epochs=scaled(scale, smoke=1, small=2, medium=4, full=30),
            lr=5e-4, optimizer="adam",  # [KONG, §6.3.2]: ADAM, 0.0005, (0.9, 0.999)
            batch_size=scaled(scale, smoke=8, small=16, medium=16, full=56),  # the thesis: 56
            schedule="cosine",  # ours: decays to 0 so that a short run ends converged
            seed=seed)
        return self.make_config(arm, seed, scale, train=train, data=data, model=model, loss={"name": "l1"},
                                eval=evaluation)

    # -- data, model, loss, evaluation ----------------------------------------------------------

    def data(self, config):
        from ..data.degradations import random_crops
        from ..data.images import load_image
        from ..filterflow.restoration import degrade

        d = config.data
        task, params, patch = d["task"], d["degradation"], d["patch"]
        if d["source"] == "skimage":
            train_pool = [load_image(n, size=d["image_side"], gray=True) for n in d["train_images"]]
            test_pool = [load_image(n, size=d["image_side"], gray=True) for n in d["test_images"]]
        else:  # full scale: registry datasets, grey = luma Y (the thesis' JPEG/SR protocol), kept as uint8
            from ..data.bsds import BSDS500
            from ..data.hr_images import HRImages, load_pool

            train_pool = [img for name in d["train_images"] for img in load_pool(HRImages(name=name, download=True), gray=True)]
            for split in d["bsds_splits"]:
                ds = BSDS500(split=split, download=True, archive=d["bsds_archive"],
                             verify=d["bsds_archive"] == "bsds500_full")
                train_pool += load_pool(ds, gray=True)
            if d.get("test_protocol") == "whole":
                test_pool = None
            else:
                test_pool = [img for name in d["test_images"]
                             for img in load_pool(HRImages(name=name, download=True), gray=True)]
        g = torch.Generator().manual_seed(d["seed"])
        clean = _unit(random_crops(train_pool, d["n_train"], patch, generator=g))
        degraded, _ = degrade(task, clean, params, generator=g)
        if d.get("test_protocol") == "whole":
            return {"train": {"input": degraded, "target": clean}, "whole": _whole_test_sets(d)}
        gt = torch.Generator().manual_seed(d["test_seed"])
        test_clean = _unit(random_crops(test_pool, d["n_test"], patch, generator=gt))
        tests = {}
        if task == "jpeg":  # the same crops at each quality
            for q in params["qualities"]:
                tests[f"q{q}"] = (degrade(task, test_clean, {"quality": q})[0], {})
        else:
            tests[""] = degrade(task, test_clean, params, generator=gt)
        return {"train": {"input": degraded, "target": clean}, "test_clean": test_clean, "tests": tests}

    def model(self, config, data):
        from ..filterflow import DirectCNN, PredictiveFilterFlow

        m = dict(config.model)
        name = m.pop("name")
        trunk = {k: m.pop(k) for k in ("width", "levels", "blocks", "fullres_width", "fullres_layers")}
        if name == "cnn":
            return DirectCNN(m["in_channels"], **trunk)
        return PredictiveFilterFlow(m["in_channels"], kernel_size=m["kernel_size"], normalize=m["normalize"],
                                    identity_weight=m["identity_weight"], **trunk)

    def loss(self, config):
        def loss_fn(model, batch):  # the thesis' L1 reconstruction loss [KONG, Eq. 6.3]
            return F.l1_loss(model(batch["input"])["out"], batch["target"])

        return loss_fn

    def evaluate(self, config, model, data):
        if "whole" in data:
            return _evaluate_whole(config, model, data)
        from ..filterflow import filter_pca_energy, local_envelope
        from ..filterflow.restoration import flow_edge_ratio, image_metrics, predict

        task, ev = config.data["task"], config.eval
        clean = data["test_clean"]
        pff = model is not None and config.model["name"] == "pff"
        out, psnrs = {}, []
        for suffix, (inputs, info) in data["tests"].items():
            tag = f"_{suffix}" if suffix else ""
            if model is None:
                pred, filters = inputs, None
            elif pff:
                pred, filters = predict(model, inputs, filters=True)
            else:
                pred, filters = predict(model, inputs), None
            m = image_metrics(pred, clean)
            out[f"{task}.psnr{tag}"] = float(m["psnr"].mean())
            out[f"{task}.ssim{tag}"] = float(m["ssim"].mean())
            psnrs.append(m["psnr"])
            if task == "deblur":
                edges = ev["length_bins"]
                for lo, hi in zip(edges[:-1], edges[1:]):
                    sel = (info["length"] >= lo) & ((info["length"] < hi) | (hi == edges[-1]))
                    out[f"deblur.psnr_len_{lo:g}_{hi:g}"] = float(m["psnr"][sel].mean()) if bool(sel.any()) else float("nan")
            if filters is not None:
                out[f"{task}.pca_top{ev['pca_components']}{tag}"] = float(filter_pca_energy(filters, ev["pca_components"])[-1])
                if task == "deblur":
                    out["deblur.flow_edge_ratio"] = flow_edge_ratio(filters, inputs, ev["flow_top"], ev["flow_bottom"])
                    # the softmax guarantee, measured: how far any output leaves its window's [min, max]
                    low, high = local_envelope(inputs, config.model["kernel_size"])
                    out["deblur.envelope_excess"] = _envelope_excess(model, inputs, low, high)
        if task == "jpeg":
            out["jpeg.psnr"] = float(torch.cat(psnrs).mean())
        return out

    def monitor(self, config, data):
        from ..filterflow.restoration import image_metrics, predict

        n = config.eval["monitor_n"]
        if "whole" in data:  # the first test images of the first set, one at a time (their own sizes)
            pairs = next(iter(data["whole"].values()))[:n]

            def whole(model):
                return {"val_psnr": float(torch.cat([image_metrics(predict(model, x, batch_size=1), y)["psnr"]
                                                     for y, x in pairs]).mean())}

            return whole
        inputs, _ = next(iter(data["tests"].values()))
        inputs, clean = inputs[:n], data["test_clean"][:n]

        def fn(model):
            return {"val_psnr": float(image_metrics(predict(model, inputs), clean)["psnr"].mean())}

        return fn


def _whole_test_sets(d) -> dict:
    """``{suffix: [(clean, degraded), ...]}`` over the whole images of the thesis' test sets (luma Y).

    JPEG: LIVE1 at each quality of ``d["degradation"]["qualities"]`` (suffix ``q10`` ...); SR: each set
    (suffix ``set5`` ...), the images cut to a multiple of the scale before the bicubic down- and
    up-sampling. Each pair is two ``(1, 1, H, W)`` float tensors in [0, 1].
    """
    from ..data.hr_images import RestorationTestSet, load_pool, mod_crop
    from ..filterflow.restoration import degrade

    task, params, roots = d["task"], d["degradation"], d.get("test_roots", {})
    out = {}
    for name in d["test_images"]:
        images = [_unit(img)[None] for img in load_pool(RestorationTestSet(name, roots.get(name), download=True),
                                                         gray=True)]
        if task == "jpeg":
            for q in params["qualities"]:
                out.setdefault(f"q{q}", []).extend((y, degrade(task, y, {"quality": q})[0]) for y in images)
        else:
            images = [mod_crop(y, params["scale"]) for y in images]
            out[name] = [(y, degrade(task, y, params)[0]) for y in images]
    return out


def _evaluate_whole(config, model, data) -> dict:
    """PSNR / SSIM on whole test images (Y), each set and quality separately, as Tables 6.2-6.3 report.

    Outputs are rounded to 8 bits (``eval["quantize"]``) and a border of ``eval["border"]`` pixels is
    left out of both images before scoring (SR: the scale). For PFF, the PCA energy of the filters of
    each set's first image is recorded too.
    """
    from ..filterflow import filter_pca_energy
    from ..filterflow.restoration import image_metrics, predict

    task, ev = config.data["task"], config.eval
    pff = model is not None and config.model["name"] == "pff"
    b = ev["border"]
    out, all_psnr = {}, []
    for suffix, pairs in data["whole"].items():
        psnr, ssim = [], []
        for i, (clean, inputs) in enumerate(pairs):
            filters = None
            if model is None:
                pred = inputs
            elif pff:
                pred, filters = predict(model, inputs, batch_size=1, filters=True)
            else:
                pred = predict(model, inputs, batch_size=1)
            if ev["quantize"]:
                pred = (pred.clamp(0, 1) * 255).round() / 255
            if b:
                pred, clean = pred[..., b:-b, b:-b], clean[..., b:-b, b:-b]
            m = image_metrics(pred, clean)
            psnr.append(m["psnr"])
            ssim.append(m["ssim"])
            if filters is not None and i == 0:
                out[f"{task}.pca_top{ev['pca_components']}_{suffix}"] = float(
                    filter_pca_energy(filters, ev["pca_components"])[-1])
        out[f"{task}.psnr_{suffix}"] = float(torch.cat(psnr).mean())
        out[f"{task}.ssim_{suffix}"] = float(torch.cat(ssim).mean())
        all_psnr += psnr
    if task == "jpeg":
        out["jpeg.psnr"] = float(torch.cat(all_psnr).mean())
    return out


def _unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 crops (full-scale pools) to float in [0, 1]; float crops unchanged."""
    return x.float() / 255 if x.dtype == torch.uint8 else x


@torch.no_grad()
def _envelope_excess(model, inputs, low, high) -> float:
    """Largest amount by which an (unclamped) PFF output leaves its window's [min, max]."""
    model.eval()
    device = next(model.parameters()).device
    excess = 0.0
    for i in range(0, len(inputs), 64):
        out = model(inputs[i:i + 64].to(device))["out"].cpu()
        excess = max(excess, float((out - high[i:i + 64]).clamp_min(0).max()),
                     float((low[i:i + 64] - out).clamp_min(0).max()))
    return excess


EXPERIMENT = PFFExperiment()
