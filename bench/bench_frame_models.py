"""Benchmark: frame-path models per face - DAN (onnxruntime vs torch), the light CNN, age/gender.

CPU, 2 threads (torch.set_num_threads(2), onnxruntime intra-op 2 with its default spinning), one face: the
end-to-end latency of
``ExpressionModel.predict`` / ``AgeGenderModel.predict`` on a 128x128 RGB crop (preprocessing included), for
each model and backend, plus DAN per face at batch 8. Targets: DAN via onnxruntime <= 20 ms per face on CPU;
every model <= 5 ms per face on a GPU (measured only when CUDA exists; otherwise "not measured").

DAN uses the official architecture (19.7 M parameters, 224x224) with random weights and trained-like
BatchNorm statistics - the speed does not depend on the values. Its onnxruntime graph is the runtime's export
(``models/dan.inference_logits``: attention branches and heads fused, BatchNorms folded, the stride-1 3x3
convs of layer2-4 as Winograd F(4x4 / 2x2, 3x3)); for comparison the same run also measures the earlier export
(only the attention branches fused, ``fuse_for_inference``) and the earlier per-pixel float normalisation
("before" rows, measured alternately with the current ones in two rounds; both give the same outputs within
float rounding, the normalisation bit for bit). The light and age/gender models are the
synthetic demo weights when present, else random ones of the same configuration. Each model and backend is
measured in its own phase (a pause, warm-up runs, then the timed repeats): interleaving torch and onnxruntime
calls made each slow the other, since torch's OpenMP workers keep spinning for a while after a call and
onnxruntime's do the same, so the two pools fought over the 2 cores. Best and median wall times are reported,
pass uses the best run (the machine is shared). Writes bench/results/frame_models.json.

Usage: .venv/bin/python bench/bench_frame_models.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from _machine import describe_machine
from fer_perception.models.age_gender import AgeGenderConfig, AgeGenderNet
from fer_perception.models.dan import DAN
from fer_perception.models.frame_checkpoint import save_frame_checkpoint
from fer_perception.models.light_fer import LightFER, LightFerConfig
from fer_perception.runtime.frame_models import DEMO_WEIGHTS, AgeGenderModel, ExpressionModel
from fer_perception.runtime.onnx_backend import OnnxModel

THREADS = 2
TARGET_DAN_ONNX_CPU_MS = 20.0
TARGET_GPU_MS = 5.0
OUT = Path(__file__).resolve().parent / "results" / "frame_models.json"


def machine() -> dict:
    return describe_machine(threads=THREADS)


def trained_like_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def checkpoints(tmp: str) -> dict:
    torch.manual_seed(0)
    dan_path = os.path.join(tmp, "affecnet8_bench.pth")
    dan = trained_like_bn(DAN(8))
    with torch.no_grad():  # logits of a trained model's size (tens), so the agreement columns mean something
        dan.fc.weight.mul_(0.001)
    torch.save({"iter": 0, "model_state_dict": dan.state_dict(), "optimizer_state_dict": {}}, dan_path)
    paths = {"dan": dan_path}
    for kind in ("light", "agegender"):
        if os.path.isfile(DEMO_WEIGHTS[kind]):
            paths[kind] = DEMO_WEIGHTS[kind]
            continue
        if kind == "light":
            cfg = LightFerConfig(n_classes=7)
            m = trained_like_bn(LightFER(cfg))
        else:
            cfg = AgeGenderConfig()
            m = trained_like_bn(AgeGenderNet(cfg))
        paths[kind] = os.path.join(tmp, f"{kind}.pt")
        save_frame_checkpoint(paths[kind], m, kind=kind, config=cfg.to_dict(), classes=[str(i) for i in range(7)]
                              if kind == "light" else ("male", "female"), preprocess=cfg.preprocess())
    return paths


def export_before(dan_checkpoint: str, tmp: str) -> str:
    """The earlier DAN export (attention branches fused, nothing else) as a self-describing ONNX file."""
    from fer_perception.models.dan import DANLogits, fuse_for_inference
    from fer_perception.runtime.frame_models import load_torch_model
    from fer_perception.runtime.onnx_backend import export_onnx

    loaded = load_torch_model("dan", dan_checkpoint)
    path = os.path.join(tmp, "dan_before.onnx")
    return export_onnx(DANLogits(fuse_for_inference(loaded.module.dan)).eval(), (1, 3, 224, 224), path,
                       output_names=loaded.output_names, metadata=loaded.onnx_metadata())


def preprocess_before(pre, crops) -> np.ndarray:
    """The earlier normalisation (four float passes over the image) after the same resize, for comparison."""
    from PIL import Image

    s = pre.size
    out = np.stack([np.asarray(Image.fromarray(c).resize((s, s), Image.BILINEAR)) for c in crops])
    x = out.astype(np.float32).transpose(0, 3, 1, 2) * np.float32(1.0 / 255.0)
    mean = np.asarray(pre.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(pre.std, np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def phased(fns: Dict[str, Callable[[], object]], reps: int, sync: Optional[Callable[[], None]] = None,
           warmup: int = 5, settle_s: float = 0.3) -> Dict[str, dict]:
    """Time each callable in its own phase: pause, ``warmup`` untimed calls, then ``reps`` timed ones.

    The pause lets the thread pools of the previous phase (torch's OpenMP workers spin for a while after a
    call, onnxruntime's likewise) go idle before the next backend runs, so no phase pays for another's pool.
    """
    out = {}
    for name, fn in fns.items():
        time.sleep(settle_s)
        for _ in range(warmup):
            fn()
        if sync:
            sync()
        walls = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            walls.append((time.perf_counter() - t0) * 1e3)
        out[name] = {"best_ms": min(walls), "median_ms": statistics.median(walls), "reps": reps}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    faces8 = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(8)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = checkpoints(tmp)
        models = {
            "dan torch": ExpressionModel("dan", paths["dan"], backend="torch", device="cpu"),
            "dan onnxruntime": ExpressionModel("dan", paths["dan"], backend="onnx", device="cpu"),
            "light torch": ExpressionModel("light", paths["light"], backend="torch", device="cpu"),
            "light onnxruntime": ExpressionModel("light", paths["light"], backend="onnx", device="cpu"),
            "agegender torch": AgeGenderModel(paths["agegender"], backend="torch", device="cpu"),
            "agegender onnxruntime": AgeGenderModel(paths["agegender"], backend="onnx", device="cpu"),
        }
        for m in models.values():  # onnxruntime sessions: 2 intra-op threads like torch, spinning (own phase)
            if m._onnx is not None:  # noqa: SLF001 - benchmark reaches into the session on purpose
                m._onnx = OnnxModel(m._onnx.path, device="cpu", threads=THREADS, spin=True)  # noqa: SLF001
        before = ExpressionModel("dan", export_before(paths["dan"], tmp), backend="onnx", device="cpu")
        before._onnx = OnnxModel(before._onnx.path, device="cpu", threads=THREADS, spin=True)  # noqa: SLF001
        agree = float(np.abs(models["dan torch"].predict([face]) - models["dan onnxruntime"].predict([face])).max())
        agree_before = float(np.abs(before.predict([face]) - models["dan onnxruntime"].predict([face])).max())
        x_face = models["dan torch"].preprocess([face])
        logit_diff = float(np.abs(models["dan torch"].run_batch(x_face)[0]
                                  - models["dan onnxruntime"].run_batch(x_face)[0]).max())
        timings = phased({k: (lambda m=m: m.predict([face])) for k, m in models.items()}, args.repeats)
        # the new and the earlier DAN graph, and preprocessing, alternately in two rounds (best of both)
        pre = models["dan torch"].preprocess
        pairs = {"dan onnxruntime": lambda: models["dan onnxruntime"].predict([face]),
                 "dan onnxruntime, before (branch fusion only)": lambda: before.predict([face]),
                 "dan preprocessing only": lambda: pre([face]),
                 "dan preprocessing, before (per-pixel float)": lambda: preprocess_before(pre, [face])}
        for _ in range(2):
            for k, v in phased(pairs, args.repeats).items():
                old = timings.get(k)
                if old is None or v["best_ms"] < old["best_ms"]:
                    timings[k] = dict(v, reps=v["reps"] + (old["reps"] if old else 0))
        b8 = phased({"dan onnxruntime batch 8": lambda: models["dan onnxruntime"].predict(faces8)},
                    max(3, args.repeats // 3), warmup=2)
        for k, v in timings.items():
            row = {"name": f"cpu 1 face, {k}", **v, "per_face_best_ms": v["best_ms"]}
            if k == "dan onnxruntime":
                row.update(target_ms=TARGET_DAN_ONNX_CPU_MS, pass_=v["best_ms"] <= TARGET_DAN_ONNX_CPU_MS,
                           max_abs_prob_diff_vs_torch=agree, max_abs_prob_diff_vs_before=agree_before,
                           max_abs_logit_diff_vs_torch=logit_diff)
            results.append(row)
        v = b8["dan onnxruntime batch 8"]
        results.append({"name": "cpu 8 faces, dan onnxruntime", **v, "per_face_best_ms": v["best_ms"] / 8})
        if torch.cuda.is_available():
            gpu = {k: ExpressionModel(k, paths[k], backend="torch", device="cuda") for k in ("dan", "light")}
            gpu["agegender"] = AgeGenderModel(paths["agegender"], backend="torch", device="cuda")
            gt = phased({k: (lambda m=m: m.predict([face])) for k, m in gpu.items()}, args.repeats,
                        sync=torch.cuda.synchronize)
            for k, v in gt.items():
                results.append({"name": f"cuda 1 face, {k} torch", **v, "per_face_best_ms": v["best_ms"],
                                "target_ms": TARGET_GPU_MS, "pass_": v["best_ms"] <= TARGET_GPU_MS})
        else:
            results.append({"name": "cuda 1 face, all models", "status": "not measured (no CUDA on this machine)",
                            "target_ms": TARGET_GPU_MS})
    info = machine()
    for r in results:
        if "pass_" in r:
            r["pass"] = bool(r.pop("pass_"))
    report = {
        "benchmark": "frame_models", "machine": info,
        "method": "wall-clock of predict() on one 128x128 RGB face (preprocessing included), each model and "
                  "backend in its own phase (pause, warm-up, repeats), "
                  f"{THREADS} CPU threads; best and median; pass uses the best run",
        "targets": {"dan_onnxruntime_cpu_ms_per_face": TARGET_DAN_ONNX_CPU_MS,
                    "gpu_ms_per_face_all_models": TARGET_GPU_MS},
        "results": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    print(f"machine: {info['cpu']} x{info['cpu_count']}, {THREADS} threads, load {info['load_avg_1min']:.1f}, "
          f"cuda {info['cuda']}")
    print(f"{'benchmark':<56} {'best ms':>9} {'median ms':>10} {'per face':>9} {'target':>7} {'pass':>5}")
    for r in results:
        if "best_ms" not in r:
            print(f"{r['name']:<56} {r['status']}")
            continue
        print(f"{r['name']:<56} {r['best_ms']:9.2f} {r['median_ms']:10.2f} {r['per_face_best_ms']:9.2f} "
              f"{r.get('target_ms', ''):>7} {str(r.get('pass', '')):>5}")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
