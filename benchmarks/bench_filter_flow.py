"""Time and peak memory of the three filter-flow implementations, side by side in one run.

    python benchmarks/bench_filter_flow.py                  # CPU, and CUDA when available
    python benchmarks/bench_filter_flow.py --device cuda --batch 8 --repeats 20

Cases: k = 5, 11, 17 (the thesis' deblurring filter is 17 × 17 [KONG, §6.4.2]) on 256² RGB images,
random softmax filters. Implementations: ``reference`` (F.unfold, the thesis' im2col), ``lean``
(shifted in-place accumulation, custom backward) and ``triton`` (CUDA only: on the CPU the Triton
interpreter is for tests, its timings mean nothing).

Each implementation is measured twice: ``forward`` under ``torch.no_grad()`` (inference) and
``train``, one forward + backward with both inputs requiring gradients. Time is the median over
``--repeats`` runs after one warm-up. Peak memory is the most memory allocated above the inputs
during one run: on CUDA the caching allocator's peak (``torch.cuda.max_memory_allocated``); on the
CPU the peak of torch's own allocation counter, read from the profiler's memory events (exact
bytes, unlike the process's resident set). The ``train`` peak includes the two gradients, which
every implementation must return: the filters' gradient alone is ``k²/C`` times the image.

The ratios (reference / lean, reference / triton) come from the same run on the same machine. The
memory target (lean forward memory at least ``k²/2`` times below the reference's) is checked and
printed for every ``k``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pixelbook.ops import filter_flow as ff  # noqa: E402

KS = (5, 11, 17)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(batch, channels, size, k, device, grad):
    g = torch.Generator().manual_seed(k)
    image = torch.rand(batch, channels, size, size, generator=g).to(device)
    filters = torch.softmax(torch.randn(batch, k * k, size, size, generator=g), dim=1).to(device)
    return image.requires_grad_(grad), filters.requires_grad_(grad)


def _run(fn, image, filters, dilation, train):
    if train:
        out = fn(image, filters, dilation)
        out.backward(torch.ones_like(out))
        image.grad = filters.grad = None  # the gradients count in the peak; drop them before the next run
    else:
        with torch.no_grad():
            fn(image, filters, dilation)


def _peak_cpu(fn, image, filters, dilation, train):
    from torch.profiler import ProfilerActivity, profile

    sys.stderr.flush()
    saved_stderr = os.dup(2)
    try:  # the profiler's C++ side prints start/stop lines on stderr: silence them
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                _run(fn, image, filters, dilation, train)
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    # "Total Allocated" counts from 0 at the start of profiling: its maximum is the peak above the inputs
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e["args"].get("Device Type", 0) == 0]
    return max([0] + totals)


def _peak_cuda(fn, image, filters, dilation, train):
    device = image.device
    _sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    _run(fn, image, filters, dilation, train)
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def measure(fn, image, filters, dilation, train, repeats):
    device = image.device
    _run(fn, image, filters, dilation, train)  # warm-up (Triton compiles here)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        _run(fn, image, filters, dilation, train)
        _sync(device)
        times.append(time.perf_counter() - t0)
    gc.collect()
    peak = (_peak_cuda if device.type == "cuda" else _peak_cpu)(fn, image, filters, dilation, train)
    return statistics.median(times), peak


def bench(device, batch, channels, size, repeats, dilation):
    impls = {"reference": ff._apply_filter_flow_reference, "lean": ff._apply_filter_flow_lean}
    if device.type == "cuda" and ff._triton_available():
        impls["triton"] = ff._apply_filter_flow_triton
    print(f"\n== {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads: image ({batch}, {channels}, {size}, {size}), "
          f"dilation {dilation}, median of {repeats} ==")
    if device.type == "cpu" and hasattr(os, "getloadavg"):
        # other processes on the same cores slow many-small-op code (the lean path) most: say so
        print(f"load average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if "triton" not in impls:
        print("triton: not measured here (needs CUDA; the interpreter is for tests)")
    print(f"{'k':>3} {'mode':>7} {'impl':>10} {'time ms':>9} {'peak MiB':>9} {'t ref/x':>8} {'mem ref/x':>10}")
    ok = True
    for k in KS:
        for mode in ("forward", "train"):
            image, filters = _inputs(batch, channels, size, k, device, mode == "train")
            rows = {name: measure(fn, image, filters, dilation, mode == "train", repeats) for name, fn in impls.items()}
            t_ref, m_ref = rows["reference"]
            for name, (t, m) in rows.items():
                print(f"{k:>3} {mode:>7} {name:>10} {t * 1e3:9.1f} {m / 2**20:9.1f} {t_ref / t:8.2f} "
                      f"{m_ref / max(m, 1):10.1f}")
            if mode == "forward":
                ratio, target = m_ref / max(rows["lean"][1], 1), k * k / 2
                met = ratio >= target
                ok &= met
                print(f"    lean forward memory {ratio:.1f}x below reference; target k²/2 = {target:.1f}x: "
                      f"{'met' if met else 'NOT MET'}")
            del image, filters
            gc.collect()
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--dilation", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    devices = []
    if args.device in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device in ("all", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if args.device == "cuda" and not devices:
        sys.exit("no CUDA device available")
    ok = all([bench(d, args.batch, args.channels, args.size, args.repeats, args.dilation) for d in devices])
    print("\nmemory target met on every device and k" if ok else "\nmemory target NOT met somewhere (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
