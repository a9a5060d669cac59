"""Benchmark: Spiking-FER window inference, plain SpikingJelly forward vs our runtime, same run, same input.

CPU (2 threads): batch-1 latency of one window (6, 2, 128, 128) for the plain SpikingJelly multi-step forward
and for ``SnnRunner.predict(stats=False)`` (fused graph, int8 digit convolutions; logits, what the plain
forward computes), plus with firing rates and energy and with fp32 convolutions; the outputs are checked
equal (allclose, same argmax; the int8 and fp32 runtimes also give the same spikes); target: ours >= 2x
faster. Also: throughput at batch 8, the single-step streaming latency per frame (what a live node pays after
a window closes), bfloat16 (``half=True``, approximate, behind the fp32 agreement check), the energy estimate
of the window, and conv-only floors (the convolutions alone, fp32 and as int8 digits).
CUDA, when available (unchanged script): batch-1 latency (target <= 3 ms; CUDA graphs, and eager for
comparison) and windows/s at batch 256 (target >= 1,000); otherwise reported as not measured.

Runs are interleaved (plain, ours, plain, ours, ...) so that load from other processes hits both alike; best
and median wall times (and best CPU times) are reported, pass uses the best runs (the least disturbed; the
machine is shared). A 1-thread pair is also measured: it suffers least from a loaded machine.
The model is a width-1 SpikingFER with seeded, trained-like BatchNorm statistics (every layer fires at
10-20%); the input is binary frames with 8% of pixels active, like 2,500 events on 128x128.
Writes bench/results/snn.json.

Usage: .venv/bin/python bench/bench_snn.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _machine import describe_machine
from fer_perception.models.spiking_fer import SpikingFER
from fer_perception.runtime.snn import SnnRunner, StreamingSnn

THREADS = 2
TARGET_SPEEDUP = 2.0
TARGET_GPU_LATENCY_MS = 3.0
TARGET_GPU_WINDOWS_S = 1000.0
T, S = 6, 128


def machine() -> dict:
    return describe_machine(threads=THREADS)


def trained_like(seed: int = 0, **kwargs) -> SpikingFER:
    torch.manual_seed(seed)
    model = SpikingFER(**kwargs)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def frames(batch: int, seed: int = 0, density: float = 0.08, size: int = S) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, T, 2, size, size, generator=g) < density).float()


def interleaved(fns: dict, reps: int, sync=None) -> dict:
    """Best/median wall ms of each function, run in turn ``reps`` times after one warm-up each."""
    for fn in fns.values():
        fn()
    walls = {k: [] for k in fns}
    cpus = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            walls[name].append((time.perf_counter() - t0) * 1e3)
            cpus[name].append((time.process_time() - c0) * 1e3)
    return {k: {"best_ms": min(v), "median_ms": statistics.median(v), "best_cpu_ms": min(cpus[k]), "reps": reps}
            for k, v in walls.items()}


def conv_floor_ms(model: SpikingFER, x_tb: torch.Tensor, reps: int) -> dict:
    """Time of the network's convolutions alone (BN folded), on the inputs they get for ``x_tb``.

    ``fp32``: every conv as one fp32 ``F.conv2d`` (NCHW); ``int8_digits``: the convs as the int8 runtime runs
    them (stem fp32 channels-last, the others as int8 digit convolutions on uint8 spikes, their partial sums
    left for the IF kernel to add up).
    """
    import torch.nn.functional as F

    from fer_perception.runtime import digit_conv
    from fer_perception.runtime.snn_fused import FusedConv, FusedSpikingFER

    fused = FusedSpikingFER(model)
    if digit_conv.available():
        fused.set_int8(True)
    captured = []  # (conv, its input, how the runtime calls it)
    hooks = [m.register_forward_pre_hook(lambda mod, inp: captured.append((mod, inp[0].clone(), "forward")))
             for m in fused.modules() if isinstance(m, FusedConv)]
    real_spike_conv = FusedConv.spike_conv

    def recording_spike_conv(conv, x):  # the int8 runtime's path (compiled kernels) calls spike_conv, not forward
        captured.append((conv, x.clone(), "spike_conv"))
        return real_spike_conv(conv, x)

    FusedConv.spike_conv = recording_spike_conv
    try:
        with torch.inference_mode():
            fused(x_tb.clone())
    finally:
        FusedConv.spike_conv = real_spike_conv
        for h in hooks:
            h.remove()
    calls = [(conv, inp, getattr(conv, name)) for conv, inp, name in captured]
    nchw = [(conv, inp.float().contiguous()) for conv, inp, _ in captured]

    def run_fp32():
        for conv, inp in nchw:
            F.conv2d(inp, conv.weight, conv.bias, conv.stride, conv.padding)

    def run_as_runtime():
        for _, inp, fn in calls:
            fn(inp)

    fns = {"fp32": run_fp32}
    if fused.int8:
        fns["int8_digits"] = run_as_runtime
    with torch.inference_mode():
        return {k: v["best_ms"] for k, v in interleaved(fns, reps).items()}


def main(argv) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "snn.json"))
    args = ap.parse_args(argv)
    reps = args.repeats or (5 if args.quick else 20)
    torch.set_num_threads(THREADS)
    info = machine()
    results = []

    model = trained_like()
    x1 = frames(1)
    x1_tb = x1.permute(1, 0, 2, 3, 4).contiguous()
    runner = SnnRunner(model, device="cpu", half=False)  # int8 digit convolutions when available (auto)
    runner32 = SnnRunner(model, device="cpu", half=False, int8=False)
    with torch.inference_mode():
        ref = model(x1_tb)
    out = runner.predict(x1)
    diff = float(np.abs(out.logits - ref.numpy()).max())
    same = bool(np.allclose(out.logits, ref.numpy(), rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
                and np.array_equal(out.logits.argmax(1), ref.numpy().argmax(1)))

    def plain():
        with torch.inference_mode():
            model(x1_tb)

    bf = SnnRunner(model, device="cpu", half=True)
    cases = {
        "plain": plain,
        "ours": lambda: runner.predict(x1, stats=False),  # logits, what the plain forward computes
        "ours_stats": lambda: runner.predict(x1),
        "ours_fp32": lambda: runner32.predict(x1, stats=False),
    }
    if bf.half:
        cases["bf16"] = lambda: bf.predict(x1, stats=False)
    lat = interleaved(cases, reps)
    speed_best = lat["plain"]["best_ms"] / lat["ours"]["best_ms"]
    speed_med = lat["plain"]["median_ms"] / lat["ours"]["median_ms"]
    results.append({"name": "cpu batch-1 window, plain SpikingJelly forward", **lat["plain"]})
    results.append({"name": "cpu batch-1 window, SnnRunner.predict(stats=False) (logits, like plain)", **lat["ours"],
                    "speedup_best": speed_best, "speedup_median": speed_med, "target_speedup": TARGET_SPEEDUP,
                    "outputs_equal": same, "max_abs_logit_diff": diff, "int8_digits": runner.int8,
                    "int8_rejected": runner.int8_rejected,
                    "pass": bool(same and speed_best >= TARGET_SPEEDUP)})
    results.append({"name": "cpu batch-1 window, SnnRunner.predict (also firing rates + energy)", **lat["ours_stats"],
                    "speedup_best": lat["plain"]["best_ms"] / lat["ours_stats"]["best_ms"]})
    out32 = runner32.predict(x1)
    same32 = bool(np.allclose(out32.logits, ref.numpy(), rtol=1e-4, atol=1e-4 * float(ref.abs().max())))
    same_spikes = all(np.array_equal(out.firing_rates[k], out32.firing_rates[k]) for k in out32.firing_rates)
    results.append({"name": "cpu batch-1 window, fp32 convolutions (int8=False), stats=False",
                    **lat["ours_fp32"], "speedup_best": lat["plain"]["best_ms"] / lat["ours_fp32"]["best_ms"],
                    "outputs_equal": same32, "same_spikes_as_int8": same_spikes})
    # one thread: CPU time is the work itself, least sensitive to other processes on a shared machine
    torch.set_num_threads(1)
    one = interleaved({"plain": plain, "ours": lambda: runner.predict(x1, stats=False)}, max(3, reps // 2))
    torch.set_num_threads(THREADS)
    results.append({"name": "cpu batch-1 window, 1 thread, plain SpikingJelly forward", **one["plain"]})
    results.append({"name": "cpu batch-1 window, 1 thread, SnnRunner.predict(stats=False)", **one["ours"],
                    "speedup_best": one["plain"]["best_ms"] / one["ours"]["best_ms"],
                    "speedup_cpu": one["plain"]["best_cpu_ms"] / one["ours"]["best_cpu_ms"]})
    floor = conv_floor_ms(model, x1_tb, max(3, reps // 2))
    results.append({"name": "cpu dense convolutions alone, fp32 (floor of an fp32 rewrite)", "best_ms": floor["fp32"],
                    "max_speedup_over_plain": lat["plain"]["best_ms"] / floor["fp32"]})
    if "int8_digits" in floor:
        results.append({"name": "cpu convolutions alone as int8 digits (floor of the int8 runtime)",
                        "best_ms": floor["int8_digits"],
                        "max_speedup_over_plain": lat["plain"]["best_ms"] / floor["int8_digits"]})

    # the CPU demo size (width 0.25, 64x64: what the packaged synthetic demo weights use)
    small = trained_like(width=0.25, input_size=64)
    xs = frames(1, size=64)
    xs_tb = xs.permute(1, 0, 2, 3, 4).contiguous()
    small_runner = SnnRunner(small, device="cpu", half=False)

    def plain_small():
        with torch.inference_mode():
            small(xs_tb)

    sm = interleaved({"plain": plain_small, "ours": lambda: small_runner.predict(xs, stats=False)}, reps)
    with torch.inference_mode():
        ref_s = small(xs_tb).numpy()
    got_s = small_runner.predict(xs).logits
    same_s = bool(np.allclose(got_s, ref_s, rtol=1e-4, atol=1e-4 * float(np.abs(ref_s).max()))
                  and np.array_equal(got_s.argmax(1), ref_s.argmax(1)))
    results.append({"name": "cpu demo size (width 0.25, 64x64), plain SpikingJelly forward", **sm["plain"]})
    results.append({"name": "cpu demo size (width 0.25, 64x64), SnnRunner.predict", **sm["ours"],
                    "speedup_best": sm["plain"]["best_ms"] / sm["ours"]["best_ms"],
                    "speedup_median": sm["plain"]["median_ms"] / sm["ours"]["median_ms"],
                    "outputs_equal": same_s})

    # streaming: one frame per call
    stream = StreamingSnn(runner)
    frame_walls = []
    for rep in range(max(2, reps // 4)):
        for t in range(T):
            t0 = time.perf_counter()
            stream.push(x1[:, t])
            frame_walls.append((time.perf_counter() - t0) * 1e3)
    results.append({"name": "cpu streaming, one frame (single step, state kept)", "best_ms": min(frame_walls),
                    "median_ms": statistics.median(frame_walls), "reps": len(frame_walls)})

    # batched throughput
    b = 8
    xb = frames(b, seed=1)
    xb_tb = xb.permute(1, 0, 2, 3, 4).contiguous()

    def plain_b():
        with torch.inference_mode():
            model(xb_tb)

    thr = interleaved({"plain": plain_b, "ours": lambda: runner.predict(xb, stats=False)}, max(2, reps // 4))
    for k, label in (("plain", "plain SpikingJelly"), ("ours", "SnnRunner.predict")):
        results.append({"name": f"cpu batch-{b} windows, {label}", **thr[k],
                        "windows_per_s": b / thr[k]["best_ms"] * 1e3})

    # bfloat16 (approximate, behind the agreement check)
    row = {"name": "cpu batch-1 window, bfloat16 convs (half=True, approximate)", "accepted": bf.half,
           "rejected_reason": bf.half_rejected, "warmup_max_prob_diff": bf.half_max_diff}
    if bf.half:
        t_bf = lat["bf16"]
        p_bf = bf.predict(x1).probabilities
        row.update(t_bf)
        row.update({"speedup_best": lat["plain"]["best_ms"] / t_bf["best_ms"],
                    "same_argmax": bool(np.array_equal(p_bf.argmax(1), out.probabilities.argmax(1))),
                    "max_prob_diff": float(np.abs(p_bf - out.probabilities).max())})
    results.append(row)

    energy = out.energy
    energy_row = {"name": "energy estimate of the benchmark window (45 nm: AC 0.9 pJ, MAC 4.6 pJ)",
                  "snn_sops": float(energy.snn_sops[0]), "snn_readout_macs": energy.snn_macs,
                  "snn_uJ": float(energy.snn_joules[0] * 1e6), "cnn_macs": energy.cnn_macs,
                  "cnn_uJ": energy.cnn_joules * 1e6, "cnn_over_snn": float(energy.ratio[0]),
                  "mean_firing_rate": float(out.mean_firing_rate[0])}
    results.append(energy_row)

    # CUDA
    if torch.cuda.is_available():
        gpu = SnnRunner(model, device="cuda")
        gpu_eager = SnnRunner(model, device="cuda", cuda_graphs=False)
        sync = torch.cuda.synchronize
        g = interleaved({"g": lambda: gpu.predict(x1, stats=False), "e": lambda: gpu_eager.predict(x1, stats=False)},
                        max(reps, 20), sync)
        g1 = g["g"]
        results.append({"name": "cuda batch-1 window, SnnRunner.predict(stats=False)", **g1, "half": gpu.half,
                        "cuda_graphs": gpu.cuda_graphs, "cuda_graphs_rejected": gpu.cuda_graphs_rejected,
                        "target_ms": TARGET_GPU_LATENCY_MS, "pass": g1["best_ms"] <= TARGET_GPU_LATENCY_MS})
        results.append({"name": "cuda batch-1 window, eager (cuda_graphs=False)", **g["e"], "half": gpu_eager.half})
        nb = 256
        xg = frames(nb, seed=2)
        gb = interleaved({"g": lambda: gpu.predict(xg, stats=False)}, 5, sync)["g"]
        wps = nb / gb["best_ms"] * 1e3
        results.append({"name": f"cuda batch-{nb} windows, SnnRunner.predict(stats=False)", **gb,
                        "windows_per_s": wps, "target_windows_per_s": TARGET_GPU_WINDOWS_S,
                        "pass": wps >= TARGET_GPU_WINDOWS_S})
    else:
        results.append({"name": "cuda batch-1 window", "status": "not measured (no CUDA device)",
                        "target_ms": TARGET_GPU_LATENCY_MS, "pass": None})
        results.append({"name": "cuda batched windows/s", "status": "not measured (no CUDA device)",
                        "target_windows_per_s": TARGET_GPU_WINDOWS_S, "pass": None})

    info["load_avg_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report = {
        "benchmark": "snn",
        "machine": info,
        "method": ("wall-clock per call, plain and ours interleaved in the same run on the same input, "
                   f"torch.set_num_threads({THREADS}); best and median; pass = best-run speedup >= target "
                   "with outputs allclose and the same argmax"),
        "targets": {"cpu_speedup": TARGET_SPEEDUP, "cuda_batch1_ms": TARGET_GPU_LATENCY_MS,
                    "cuda_windows_per_s": TARGET_GPU_WINDOWS_S},
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))

    print(f"machine: {info['cpu']}, {info['cpu_count']} CPUs, {THREADS} threads, torch {info['torch']}, "
          f"spikingjelly {info['spikingjelly']}, load {info['load_avg_1min']:.1f} -> {info['load_avg_1min_end']:.1f}")
    print(f"{'case':72s} {'best ms':>9s} {'median ms':>10s}  note")
    for r in results:
        note = []
        for key in ("speedup_best", "speedup_median", "speedup_cpu", "max_speedup_over_plain", "windows_per_s",
                    "outputs_equal", "same_spikes_as_int8", "int8_digits", "cuda_graphs", "accepted", "same_argmax",
                    "max_prob_diff", "status", "pass"):
            if key in r and r[key] is not None:
                v = r[key]
                note.append(f"{key}={v:.3g}" if isinstance(v, float) else f"{key}={v}")
        if "snn_uJ" in r:
            note.append(f"SNN {r['snn_uJ']:.1f} uJ ({r['snn_sops'] / 1e6:.0f} M SOPs), CNN {r['cnn_uJ']:.1f} uJ "
                        f"({r['cnn_macs'] / 1e6:.0f} M MACs), x{r['cnn_over_snn']:.1f}, "
                        f"rate {r['mean_firing_rate']:.3f}")
        best = f"{r['best_ms']:9.2f}" if "best_ms" in r else " " * 9
        med = f"{r['median_ms']:10.2f}" if "median_ms" in r else " " * 10
        print(f"{r['name'][:72]:72s} {best} {med}  {' '.join(note)}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
