"""`fer-perception info`: versions, compute device, supported event message types and encodings."""

from __future__ import annotations

import argparse
import importlib
import json
import platform

NAME = "info"
HELP = "show versions, the compute device and the supported event message types"
DESCRIPTION = """\
Print what fer_perception sees on this machine: Python and library versions, whether CUDA is usable, whether
ROS 2 (rclpy) is importable, and which event message types and encodings the decoders handle.
"""
EPILOG = "examples:\n  fer-perception info\n  fer-perception info --json > info.json\n"

_LIBS = ["numpy", "torch", "spikingjelly", "cv2", "rosbags", "onnxruntime", "numba", "h5py", "lightning", "rclpy"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def _version(mod_name: str) -> str:
    try:
        mod = importlib.import_module(mod_name)
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable here"
        return f"not available ({type(exc).__name__})"
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as _v

            version = _v(mod_name)
        except Exception:  # noqa: BLE001
            version = "installed"
    return str(version)


def collect() -> dict:
    from fer_perception import __version__
    from fer_perception.events import decoders

    info = {
        "fer_perception": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": {name: _version(name) for name in _LIBS},
        "event_message_types": list(decoders.SUPPORTED_MESSAGE_TYPES),
        "event_packet_encodings": list(decoders.SUPPORTED_PACKET_ENCODINGS),
    }
    try:
        import torch

        info["cuda_available"] = bool(torch.cuda.is_available())
        info["device"] = torch.cuda.get_device_name(0) if info["cuda_available"] else "cpu"
        info["torch_threads"] = torch.get_num_threads()
        from fer_perception.runtime import digit_conv, spike_kernels

        # the SNN's fp32-accurate int8 digit convolutions: used by default only where both hold
        info["cpu_int8_digits"] = {"onednn_int8_ops": digit_conv.available(),
                                   "int8_dot_product_cpu": digit_conv.has_int8_dot_product(),
                                   "numba_spike_kernels": spike_kernels.available()}
    except ImportError:
        info["cuda_available"] = False
        info["device"] = "cpu (torch not installed)"
    return info


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"fer-perception {info['fer_perception']}", show_header=False)
    t.add_row("python", info["python"])
    t.add_row("platform", info["platform"])
    t.add_row("compute device", info["device"])
    if "cpu_int8_digits" in info:
        d = info["cpu_int8_digits"]
        used = d["onednn_int8_ops"] and d["int8_dot_product_cpu"]
        t.add_row("SNN int8 digit convs (CPU)", "yes" if used else
                  f"no (oneDNN int8 ops: {d['onednn_int8_ops']}, VNNI/AMX CPU: {d['int8_dot_product_cpu']})")
        t.add_row("SNN spike kernels (numba)", "yes" if d["numba_spike_kernels"] else
                  "no: numba is not installed (the int8 runtime then uses slower tensor ops)")
    for name, v in info["libraries"].items():
        t.add_row(name, v)
    t.add_row("event message types", "\n".join(info["event_message_types"]))
    t.add_row("EventPacket encodings", ", ".join(info["event_packet_encodings"]))
    console.print(t)
    return 0
