"""Benchmark: the frame path's image handling at 640x480 with one face (2 threads).

Targets: annotation of one face < 3 ms; Haar detection + tracking + annotation < 33 ms per frame (keeps up
with a 30 fps camera). Also reported: image decoding (raw encodings, JPEG), crops, the event view.
Frames come from the synthetic face generator (a 640x480 scene, one moving face). Each case runs on a cycle
of frames; best and median wall times and CPU time are reported; a target is met when the best run is
within it (the machine is shared: the best run is the least disturbed). Writes bench/results/faces.json.

Usage: .venv/bin/python bench/bench_faces.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from _machine import describe_machine
from fer_perception.annotate import FaceAnnotation, annotate_events, annotate_frame
from fer_perception.events.batch import EventBatch
from fer_perception.faces.crop import crop_face, nose_centred_square
from fer_perception.faces.detect import HaarFaceDetector
from fer_perception.faces.track import FaceTracker
from fer_perception.images import decode_compressed, encode_compressed, image_from_ros, image_to_ros_fields
from fer_perception.labels import FERDVS_CLASSES, RAFDB_CLASSES
from fer_perception.results import DemographicsResult, EmotionResult, Roi
from fer_perception.synth.faces import SyntheticFaceConfig, render_clip

THREADS = 2
TARGET_ANNOTATE_MS = 3.0
TARGET_FRAME_MS = 33.0


def machine() -> dict:
    return describe_machine(threads=THREADS)


def timeit(fn, reps: int) -> dict:
    fn(0)  # warm-up
    walls = []
    c0 = time.process_time()
    for i in range(reps):
        t0 = time.perf_counter()
        fn(i)
        walls.append(time.perf_counter() - t0)
    return {
        "best_ms": min(walls) * 1e3,
        "median_ms": float(np.median(walls)) * 1e3,
        "cpu_ms": (time.process_time() - c0) / reps * 1e3,
        "reps": reps,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--out", default="bench/results/faces.json")
    args = ap.parse_args(argv)
    reps = 20 if args.quick else 100
    cv2.setNumThreads(THREADS)

    clip = render_clip("happy", seed=2, config=SyntheticFaceConfig.scene(n_frames=30))
    frames = clip.frames
    n = len(frames)
    stamps = (clip.times_s * 1e9).astype(np.int64)
    det = HaarFaceDetector()
    det_full = HaarFaceDetector(max_width=0)
    first = det.detect(frames[0])[0]
    box = first.box
    probs = np.array([0.02, 0.02, 0.02, 0.8, 0.04, 0.05, 0.05])
    emo = EmotionResult(0, "camera", "face_1", Roi.from_xywh(box), "frames", "dan", list(RAFDB_CLASSES), probs)
    demo = DemographicsResult(0, "camera", "face_1", Roi.from_xywh(box), "age_gender", 31.0, 4.0, "female", 0.9)
    ev = {"labels": list(FERDVS_CLASSES), "probabilities": [0.6, 0.1, 0.1, 0.1, 0.05, 0.05]}
    bgr_fields = [dict(image_to_ros_fields(f[:, :, ::-1].copy()), encoding="bgr8") for f in frames[:4]]
    yuyv = np.zeros((480, 640, 2), np.uint8)
    yuyv[:, :, 0] = cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY)
    yuyv[:, :, 1] = 128
    yuyv_bytes = yuyv.tobytes()
    _, jpeg = encode_compressed(frames[0], "jpeg", 90)
    rng = np.random.default_rng(0)
    m = 20_000
    batch = EventBatch.from_arrays(rng.integers(0, 346, m), rng.integers(0, 260, m), np.arange(m),
                                   rng.integers(0, 2, m), 346, 260)

    def pipeline_case():
        tracker = FaceTracker()

        def step(i):
            k = i % n
            dets = det.detect(frames[k])
            tracks = tracker.update(dets, int(stamps[k]) + (i // n) * int(1e9))
            faces = [FaceAnnotation(t.box, t.face_id, emo, demo) for t in tracks]
            annotate_frame(frames[k], faces)
        return step

    tracker = FaceTracker()
    dets_per_frame = [det.detect(f) for f in frames]

    cases = [
        ("image_from_ros bgr8 640x480",
         lambda i: image_from_ros(**{k: v for k, v in bgr_fields[i % 4].items() if k != "is_bigendian"}), None),
        ("image_from_ros yuyv 640x480", lambda i: image_from_ros("yuyv", 480, 640, 1280, yuyv_bytes), None),
        ("decode_compressed jpeg 640x480", lambda i: decode_compressed("jpeg", jpeg), None),
        ("Haar detect 640x480 (max_width 320)", lambda i: det.detect(frames[i % n]), None),
        ("Haar detect 640x480 (full resolution)", lambda i: det_full.detect(frames[i % n]), None),
        ("FaceTracker.update, 1 face", lambda i: tracker.update(dets_per_frame[i % n], i * 33_333_333), None),
        ("crop_face 224x224", lambda i: crop_face(frames[i % n], box, size=224), None),
        ("crop_face 224x224 aligned (10 deg)", lambda i: crop_face(
            frames[i % n], box, size=224, align=True,
            landmarks=np.array([[box[0] + 0.3 * box[2], box[1] + 0.4 * box[3]],
                                [box[0] + 0.7 * box[2], box[1] + 0.47 * box[3]], [0, 0], [0, 0], [0, 0]])), None),
        ("nose_centred_square", lambda i: nose_centred_square(box), None),
        ("annotate_frame 640x480, 1 face", lambda i: annotate_frame(
            frames[i % n], [FaceAnnotation(box, "face_1", emo, demo, ev)], header="frames 30 Hz"), TARGET_ANNOTATE_MS),
        ("annotate_events 346x260 (x2), 20k events, 1 face", lambda i: annotate_events(
            batch, [FaceAnnotation((120, 60, 120, 120), "face_1", event_emotion=ev)]), None),
        ("detect + track + annotate per frame", pipeline_case(), TARGET_FRAME_MS),
    ]
    results = []
    for name, fn, target in cases:
        r = timeit(fn, reps)
        r["name"] = name
        r["target_ms"] = target
        r["pass"] = (r["best_ms"] <= target) if target else None
        results.append(r)

    print(f"{'case':52s} {'best ms':>9s} {'median ms':>10s} {'cpu ms':>8s} {'target':>8s} {'pass':>5s}")
    for r in results:
        tgt = f"{r['target_ms']:.0f}" if r["target_ms"] else "-"
        ok = "" if r["pass"] is None else ("yes" if r["pass"] else "NO")
        print(f"{r['name']:52s} {r['best_ms']:9.3f} {r['median_ms']:10.3f} {r['cpu_ms']:8.3f} {tgt:>8s} {ok:>5s}")
    report = {
        "benchmark": "faces",
        "machine": machine(),
        "method": f"wall-clock per call over {reps} repetitions (best and median), cv2.setNumThreads({THREADS}); "
                  "pass = best run within target (the machine is shared; cpu_ms shows the work)",
        "targets": {"annotate_frame_ms": TARGET_ANNOTATE_MS, "detect_track_annotate_ms": TARGET_FRAME_MS},
        "results": results,
        "pass": all(r["pass"] for r in results if r["pass"] is not None),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}; all targets met: {report['pass']}")
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
