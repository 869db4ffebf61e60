"""Wall-clock of the sparse (gather–GEMM–scatter) gated convolution against the masked dense one.

    python benchmarks/bench_gating.py                  # CPU, and CUDA when available
    python benchmarks/bench_gating.py --repeats 20 --device cpu
    python benchmarks/bench_gating.py --quick          # one small case (smoke test)

FLOPs are not wall-clock [KONG, Ch. 8]: the masked dense path ``mask * conv2d(x)`` does all the
work and throws part of it away; the sparse path (:func:`pixelbook.ops.gated_conv2d`,
``impl="sparse"``) does work proportional to the active pixels, but through a gather, a plain GEMM
and a scatter instead of the library's tuned convolution. This script times both on the same inputs
at mask densities 1.0 / 0.7 / 0.5 / 0.3 / 0.1 (i.i.d. random pixels, seeded), in one run:

* the gated 3×3 convolution alone, inference (no grad) and forward + backward (grad w.r.t. input
  and weight; the mask is a constant);
* a whole PAG bottleneck block in eval mode (``execution="dense"`` vs ``"sparse"``; BN folded into
  the kernels of the sparse path), the unit the chapter's Task B gates.

The two paths are timed *interleaved* (dense, sparse, dense, sparse, ...) after two warm-up runs
each, and each cell is the fastest of ``--repeats`` runs: on a shared machine, other processes only
ever add time, so the minimum is the least disturbed measurement, and interleaving exposes both paths
to the same disturbances. ``ratio`` = dense time / sparse time (> 1: the sparse path is faster). The
last line of each table states the crossover density (linear interpolation of the ratio), the
density below which the sparse path wins here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pixelbook.gating import PAGBottleneck  # noqa: E402
from pixelbook.ops import gated_conv2d  # noqa: E402

DENSITIES = (1.0, 0.7, 0.5, 0.3, 0.1)
# (N, C_in, C_out, H, W, dilation): a 64-channel feature map at 64×64 (Task-B-like, batch 8), and a
# ResNet-50 layer1-sized 3×3 (64 channels at 56×56, batch 1, as at inference on one image).
CONV_CASES = [(8, 64, 64, 64, 64, 1), (1, 64, 64, 56, 56, 1), (8, 64, 64, 64, 64, 4)]
# (N, inplanes, planes, H, W): ResNet-50's layer1 bottleneck at 56×56, one image.
BLOCK_CASES = [(1, 256, 64, 56, 56), (8, 64, 16, 48, 48)]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _min_times(fns, device, repeats):
    """Fastest of ``repeats`` runs of each function, the functions interleaved run by run."""
    for fn in fns:
        for _ in range(2):
            fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _crossover(densities, ratios):
    """The density where the ratio crosses 1 (linear interpolation), or a statement that it does not."""
    pairs = list(zip(densities, ratios))
    for (d0, r0), (d1, r1) in zip(pairs, pairs[1:]):
        if (r0 - 1) * (r1 - 1) <= 0 and r0 != r1:
            return f"sparse faster below density ≈ {d0 + (1 - r0) * (d1 - d0) / (r1 - r0):.2f}"
    if all(r > 1 for r in ratios):
        return "sparse faster at every density measured"
    return f"sparse slower at every density measured (down to {min(densities)})"


def _mask(N, H, W, density, device, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(N, 1, H, W, generator=g) < density).float().to(device)


def bench_conv(device, repeats, cases):
    print(f"\n-- gated 3×3 convolution: dense (mask * conv2d) vs sparse (gather–GEMM–scatter), ms")
    header = (f"{'N x Cin x H x W -> Cout':>24} {'dil':>3} {'density':>7} | {'dense':>7} {'sparse':>7} {'ratio':>6} | "
              f"{'dense fb':>8} {'sparse fb':>9} {'ratio fb':>8} | {'max|diff|':>9}")
    print(header)
    print("-" * len(header))
    for (N, C, Cout, H, W, dil) in cases:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(N, C, H, W, generator=g).to(device)
        w = (torch.randn(Cout, C, 3, 3, generator=g) / (3 * C ** 0.5)).to(device)
        ratios = []
        for i, dens in enumerate(DENSITIES):
            m = _mask(N, H, W, dens, device, seed=i)
            with torch.no_grad():
                diff = float((gated_conv2d(x, w, m, dilation=dil, impl="sparse")
                              - gated_conv2d(x, w, m, dilation=dil, impl="dense")).abs().max())
                t_d, t_s = _min_times([lambda: gated_conv2d(x, w, m, dilation=dil, impl="dense"),
                                       lambda: gated_conv2d(x, w, m, dilation=dil, impl="sparse")], device, repeats)
            xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)

            def fb(impl):
                gated_conv2d(xg, wg, m, dilation=dil, impl=impl).sum().backward()
                xg.grad = wg.grad = None

            tb_d, tb_s = _min_times([lambda: fb("dense"), lambda: fb("sparse")], device, repeats)
            ratios.append(t_d / t_s)
            print(f"{f'{N}x{C}x{H}x{W} -> {Cout}':>24} {dil:>3} {dens:>7.1f} | {1e3 * t_d:7.1f} {1e3 * t_s:7.1f} "
                  f"{t_d / t_s:5.2f}x | {1e3 * tb_d:8.1f} {1e3 * tb_s:9.1f} {tb_d / tb_s:7.2f}x | {diff:9.1e}",
                  flush=True)
        print(f"{'':>24} inference: {_crossover(DENSITIES, ratios)}")


def bench_block(device, repeats, cases):
    print(f"\n-- PAG bottleneck in eval: execution='dense' (G ⊙ F(I)) vs 'sparse' (F only at G = 1), ms")
    header = f"{'N x Cin x H x W (planes)':>26} {'density':>7} | {'dense':>7} {'sparse':>7} {'ratio':>6} | {'max|diff|':>9}"
    print(header)
    print("-" * len(header))
    for (N, Cin, planes, H, W) in cases:
        torch.manual_seed(0)
        block = PAGBottleneck(Cin, planes).to(device).eval()
        x = torch.randn(N, Cin, H, W, generator=torch.Generator().manual_seed(1)).to(device)
        ratios = []
        for i, dens in enumerate(DENSITIES):
            block.force = _mask(N, H, W, dens, device, seed=10 + i)
            def run(execution):
                block.execution = execution
                return block(x)

            with torch.no_grad():
                diff = float((run("sparse") - run("dense")).abs().max())
                t_d, t_s = _min_times([lambda: run("dense"), lambda: run("sparse")], device, repeats)
            ratios.append(t_d / t_s)
            print(f"{f'{N}x{Cin}x{H}x{W} ({planes})':>26} {dens:>7.1f} | {1e3 * t_d:7.1f} {1e3 * t_s:7.1f} "
                  f"{t_d / t_s:5.2f}x | {diff:9.1e}", flush=True)
        print(f"{'':>26} {_crossover(DENSITIES, ratios)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="all", choices=["all", "cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="one small case per table (smoke test)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] if args.device in ("all", "cpu") else []
    if args.device in ("all", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    elif args.device == "cuda":
        raise SystemExit("--device cuda: CUDA is not available here")
    conv_cases = [(2, 16, 16, 24, 24, 1)] if args.quick else CONV_CASES
    block_cases = [(2, 32, 8, 16, 16)] if args.quick else BLOCK_CASES
    for dev in devices:
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
        print(f"\n== {dev} ({name}), torch {torch.__version__}, fastest of {args.repeats} interleaved runs; "
              f"ratio = dense / sparse (> 1: sparse faster); i.i.d. random masks")
        bench_conv(dev, args.repeats, conv_cases)
        bench_block(dev, args.repeats, block_cases)


if __name__ == "__main__":
    main()
