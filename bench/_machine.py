"""What every benchmark records about the machine it ran on, and how it writes its bench/results/*.json."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

_LIBRARIES = ("numpy", "torch", "opencv-python-headless", "onnxruntime", "spikingjelly", "rosbags")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what the platform module says."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(**extra) -> dict:
    """Platform, CPU, core count, load, library versions, torch threads and CUDA device, plus ``extra``."""
    info = {
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    for name in _LIBRARIES:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    torch = sys.modules.get("torch")  # only when the benchmark itself uses torch
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    info.update(extra)
    return info


def write_report(report: dict, path, ok: bool) -> None:
    """Write a benchmark's JSON report (creating its folder) and say where, with the overall verdict."""
    import json
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'PASS' if ok else 'FAIL'}: wrote {path}")
