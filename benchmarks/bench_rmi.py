"""Time and peak memory of pixelbook's RMI loss against the `rmi-pytorch` package, at equal settings.

    python benchmarks/bench_rmi.py                 # CPU, and CUDA when available
    python benchmarks/bench_rmi.py --device cuda --repeats 20
    python benchmarks/bench_rmi.py --threads 1     # CPU timings on a busy machine

Both losses get the same logits and see the same settings: sigmoid probabilities, kernel = stride =
DF pooling with padding DF // 2 (rmi-pytorch's only choice), R = 3, ξ = 5e-4 added to Σ_P and to M,
unnormalised covariances, λ = 0.5. rmi-pytorch needs a float one-hot target; it is built once,
outside the timed region (in its favour). Its Cholesky path calls ``torch.cholesky``, removed from
current PyTorch, so it runs with ``use_log_trace=False`` (``torch.logdet``). The two BCE terms are
normalised differently (rmi-pytorch: mean over N·C·H·W; ours: sum over classes, mean over pixels),
which costs the same; the value check compares the RMI parts alone (λ = 0), which must agree.

Each row is one forward + backward of the loss on ``requires_grad`` logits: median time over
``--repeats`` runs, and the peak memory above the inputs during one run (CUDA: the allocator's
peak; CPU: the process's peak resident set, reset through ``/proc/self/clear_refs``). The ratios
(theirs / ours) are measured in the same run, so they compare like with like on the same machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pixelbook.rmi import rmi_loss  # noqa: E402

# (N, C, H, W, DF, pool): rmi-pytorch's README case (8 x 21 x 256^2), DF = 4 (the paper) and 2
# (the paper's best, Table 3a), and a VOC-sized crop (513^2, batch 4) on the GPU.
CASES_CPU = [(8, 21, 256, 256, 4, "avg"), (8, 21, 256, 256, 2, "avg"), (8, 21, 256, 256, 4, "max")]
CASES_CUDA = CASES_CPU + [(16, 21, 513, 513, 4, "avg"), (16, 21, 513, 513, 2, "avg")]


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _fixed_mmap_threshold() -> None:
    """Serve every block >= 64 KiB by mmap and return it on free (glibc), so the CPU peak resident
    set measures what a loss allocates, not what the heap kept from earlier runs."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD; a fixed value also stops glibc's dynamic raise
        libc.mallopt(-1, 0)          # M_TRIM_THRESHOLD: give freed heap tops back at once
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _make(case, device):
    """Inputs and the two losses (ours, theirs) for one case; ``theirs0`` is rmi-pytorch with λ = 0."""
    from rmi import RMILoss as ReferenceRMILoss  # the rmi-pytorch package

    N, C, H, W, DF, pool = case
    g = torch.Generator(device="cpu").manual_seed(0)
    logits = torch.randn(N, C, H, W, generator=g).to(device).requires_grad_(True)
    labels = torch.randint(0, C, (N, H, W), generator=g).to(device)
    onehot = F.one_hot(labels, C).permute(0, 3, 1, 2).float().contiguous()
    settings = dict(radius=3, pool=pool, pool_size=DF, pool_padding=DF // 2, xi=5e-4, normalize=False,
                    ignore_index=None)
    ref = ReferenceRMILoss(with_logits=True, radius=3, bce_weight=0.5, pool=pool, stride=DF, use_log_trace=False)
    ref0 = ReferenceRMILoss(with_logits=True, radius=3, bce_weight=0.0, pool=pool, stride=DF, use_log_trace=False)
    fns = {"ours": lambda: rmi_loss(logits, labels, ce_weight=0.5, **settings),
           "theirs": lambda: ref(logits, onehot),
           "ours0": lambda: rmi_loss(logits, labels, ce_weight=0.0, **settings),
           "theirs0": lambda: ref0(logits, onehot)}
    return logits, fns


def measure_time(fn, logits, device, repeats):
    """Median seconds of ``fn().backward()`` after two warm-up runs."""
    for _ in range(2):
        fn().backward()
        logits.grad = None
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn().backward()
        _sync(device)
        times.append(time.perf_counter() - t0)
        logits.grad = None
    return statistics.median(times)


def measure_peak(which, case, device):
    """Peak bytes above the inputs during one ``fn().backward()`` (after one warm-up run).

    CUDA: the caching allocator's peak. CPU: a fresh process with a fixed mmap threshold, whose
    peak resident set is reset through ``/proc/self/clear_refs`` just before the run.
    """
    if device.type == "cpu":
        import json
        import subprocess

        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--_peak-child", which, json.dumps(case),
                              "--threads", str(torch.get_num_threads())], capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    logits, fns = _make(case, device)
    fns[which]().backward()
    logits.grad = None
    gc.collect()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fns[which]().backward()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def _peak_child(which, case):
    _fixed_mmap_threshold()
    logits, fns = _make(case, torch.device("cpu"))
    fns[which]().backward()
    logits.grad = None
    gc.collect()
    if not _reset_peak_rss():  # pragma: no cover - no /proc (macOS)
        print("nan")
        return
    base = _rss_kib("VmRSS")
    fns[which]().backward()
    print((_rss_kib("VmHWM") - base) * 1024)


def run(device: torch.device, repeats: int, cases) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"\n== {device} ({name}), torch {torch.__version__}, median of {repeats}")
    header = (f"{'N x C x H x W':>20} {'DF':>3} {'pool':>4} | {'ours ms':>8} {'theirs ms':>9} {'time ratio':>10} | "
              f"{'ours MiB':>8} {'theirs MiB':>10} {'mem ratio':>9} | {'|RMI diff|':>10}")
    print(header)
    print("-" * len(header))
    MiB = 2 ** 20
    for case in cases:
        N, C, H, W, DF, pool = case
        logits, fns = _make(case, device)
        with torch.no_grad():
            diff = abs(float(fns["ours0"]()) - float(fns["theirs0"]()))
        t_ours = measure_time(fns["ours"], logits, device, repeats)
        t_theirs = measure_time(fns["theirs"], logits, device, repeats)
        del logits, fns
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        m_ours, m_theirs = measure_peak("ours", case, device), measure_peak("theirs", case, device)
        # below ~1 MiB the CPU peak is lost in the heap's slack: no ratio then
        mem_ratio = f"{m_theirs / m_ours:8.2f}x" if min(m_ours, m_theirs) >= MiB else f"{'n/a':>9}"
        print(f"{f'{N}x{C}x{H}x{W}':>20} {DF:>3} {pool:>4} | {1e3 * t_ours:8.1f} {1e3 * t_theirs:9.1f} "
              f"{t_theirs / t_ours:9.2f}x | {m_ours / MiB:8.0f} {m_theirs / MiB:10.0f} {mem_ratio} | "
              f"{diff:10.1e}", flush=True)
    print("ratios > 1: ours is faster / uses less memory (theirs / ours, same run, same inputs)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="all", choices=["all", "cpu", "cuda"],
                        help="all = CPU, then CUDA when available")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="one small case, for a smoke test")
    parser.add_argument("--_peak-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._peak_child:
        import json

        return _peak_child(args._peak_child[0], tuple(json.loads(args._peak_child[1])))
    devices = []
    if args.device in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device in ("all", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    elif args.device == "cuda":
        raise SystemExit("--device cuda: CUDA is not available here")
    for dev in devices:
        cases = [(2, 5, 64, 64, 4, "avg")] if args.quick else (CASES_CUDA if dev.type == "cuda" else CASES_CPU)
        run(dev, args.repeats, cases)


if __name__ == "__main__":
    main()
