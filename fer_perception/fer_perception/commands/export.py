"""`fer-perception export`: write a model as ONNX (dynamic batch axis) for onnxruntime or TensorRT.

Frame models (``dan``, ``light``, ``agegender``) carry their class names, preprocessing and config in the
ONNX metadata, so ``ExpressionModel(kind, "model.onnx", backend="onnx")`` needs nothing else. ``snn``
exports a Spiking-FER checkpoint (through the pure-torch fused form of ``runtime/snn_fused.py``, since
SpikingJelly's neurons are custom ops without ONNX symbolics) or its CNN baseline, with the time steps
unrolled: input ``(B, T, C, S, S)`` event frames, output logits. After writing, the file is run with
onnxruntime on a random batch and compared with torch (``--no-verify`` skips it). For the SNN the comparison
is reported, not enforced: a membrane potential within float rounding of the threshold fires in one runtime
and not the other, and the spike flip propagates, so logits can differ by more than 1e-4 on some inputs.
"""

from __future__ import annotations

import argparse
import os

NAME = "export"
HELP = "export a model (dan, light, agegender, snn) to ONNX with a dynamic batch axis"
DESCRIPTION = __doc__
EPILOG = """examples:
  fer-perception export dan --checkpoint rafdb_epoch21_acc0.897_bacc0.8275.pth -o dan_rafdb.onnx
  fer-perception export dan --checkpoint my_dan.pth --classes affectnet7 -o dan.onnx
  fer-perception export light -o light_demo.onnx            (the synthetic demo weights)
  fer-perception export agegender --checkpoint age_gender.pt -o age_gender.onnx
  fer-perception export snn --checkpoint spiking_fer.pt -o snn.onnx
"""
KINDS = ("dan", "light", "agegender", "snn")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=KINDS, help="which model")
    p.add_argument("--checkpoint", help="checkpoint file (default: the demo weights for light/agegender/snn)")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument("--classes", help="DAN class set when the file name does not tell: rafdb, affectnet7, affectnet8")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset [17]")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-torch comparison")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference allowed in verification [1e-4]")


def export_frame_model(kind: str, checkpoint, output: str, classes=None, opset: int = 17):
    """Export a frame model; returns the :class:`~fer_perception.runtime.frame_models.LoadedModel`."""
    from fer_perception.runtime.frame_models import load_torch_model
    from fer_perception.runtime.onnx_backend import export_onnx

    loaded = load_torch_model(kind, checkpoint, classes)
    p = loaded.preprocess
    export_onnx(loaded.export_module(), (1, p.channels, p.size, p.size), output, output_names=loaded.output_names,
                metadata=loaded.onnx_metadata(), opset=opset)
    return loaded


def _onnx_spiking_fer(fused):
    """An exportable form of a :class:`~fer_perception.runtime.snn_fused.FusedSpikingFER` (same maths).

    The fused runtime updates spikes and membrane potentials in place inside its input tensor, which the ONNX
    tracer cannot follow; this wrapper recomputes the IF neurons functionally (``v = v + x_t``, spike
    ``v >= 1``, hard reset to 0) and takes ``(B, T, C, S, S)``.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    def if_neuron(x: torch.Tensor, steps: int) -> torch.Tensor:
        x = x.reshape(steps, -1, *x.shape[1:])
        v = torch.zeros_like(x[0])
        spikes = []
        for t in range(steps):
            v = v + x[t]
            s = (v >= 1.0).to(x.dtype)
            v = v * (1.0 - s)
            spikes.append(s)
        out = torch.stack(spikes)
        return out.reshape(-1, *out.shape[2:])

    class OnnxSpikingFER(nn.Module):
        def __init__(self):
            super().__init__()
            self.fused = fused

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            steps = int(x.shape[1])
            y = x.transpose(0, 1).reshape(-1, *x.shape[2:])
            y = F.max_pool2d(if_neuron(self.fused.stem(y), steps), 3, 2, 1)
            for block in self.fused.blocks:
                out = if_neuron(block.conv2(if_neuron(block.conv1(y), steps)), steps)
                identity = y if block.down is None else if_neuron(block.down(y), steps)
                y = out + identity
            feats = y.mean(dim=(2, 3)).reshape(steps, -1, y.shape[1])
            total = feats[0]
            for t in range(1, steps):
                total = total + feats[t]
            return self.fused._readout(total, steps)  # noqa: SLF001 - the fused model's own readout

    return OnnxSpikingFER().eval()


class _SnnExport:
    """Wraps a Spiking-FER model or its CNN baseline: ``(B, T, C, S, S)`` -> logits."""

    @staticmethod
    def build(model, is_snn: bool):
        import torch
        from torch import nn

        if is_snn:  # SpikingJelly's neurons are custom ops: export the fused pure-torch form (same maths)
            from fer_perception.runtime.snn_fused import FusedSpikingFER

            return _onnx_spiking_fer(FusedSpikingFER(model).eval())

        class Wrapper(nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.model(x.transpose(0, 1))

        return Wrapper().eval()


def export_snn(checkpoint, output: str, opset: int = 17):
    """Export a Spiking-FER / CNN-baseline checkpoint; returns ``(wrapper module, input shape)``."""
    from fer_perception.errors import ConfigError
    from fer_perception.models.checkpoint import load_checkpoint
    from fer_perception.runtime.onnx_backend import export_onnx

    if checkpoint is None:
        checkpoint = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights",
                                  "spiking_fer_synthetic_demo.pt")
    model, meta = load_checkpoint(checkpoint)
    cfg = meta.model_config()
    if not cfg.input_size:
        raise ConfigError(f"{checkpoint}: the checkpoint does not say its input size")
    wrapper = _SnnExport.build(model, cfg.kind == "snn")
    shape = (1, int(cfg.timesteps), int(cfg.in_channels), int(cfg.input_size), int(cfg.input_size))
    try:
        export_onnx(wrapper, shape, output, output_names=("logits",), opset=opset,
                    metadata={"fer_perception_kind": cfg.kind, "classes": list(meta.classes),
                              "input_layout": "B,T,C,S,S"})
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; say why in our terms
        if os.path.exists(output):
            os.remove(output)
        raise ConfigError(
            f"cannot export the {cfg.kind} model to ONNX: {type(exc).__name__}: {str(exc).splitlines()[0]} "
            "(SpikingJelly 2.x neurons run as custom torch ops without ONNX symbolics; run the SNN with the "
            "torch backend, or export the CNN baseline)"
        ) from exc
    return wrapper, shape


def verify(module, output: str, input_shape, batch: int = 3, seed: int = 0) -> float:
    """Max abs difference between torch and onnxruntime outputs on a random batch."""
    import numpy as np
    import torch

    from fer_perception.runtime.onnx_backend import OnnxModel

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch,) + tuple(input_shape[1:])).astype(np.float32)
    if len(input_shape) == 5:  # event frames are binary
        x = (x > 0.8).astype(np.float32)
    with torch.inference_mode():
        ref = module(torch.from_numpy(x))
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = OnnxModel(output, device="cpu").run(x)
    return float(max(np.abs(r.numpy() - g).max() for r, g in zip(ref, got)))


def run(args: argparse.Namespace) -> int:
    from fer_perception.errors import ConfigError

    if args.kind == "snn":
        module, shape = export_snn(args.checkpoint, args.output, args.opset)
    else:
        if args.kind == "dan" and not args.checkpoint:
            raise ConfigError("export dan needs --checkpoint (an official DAN .pth or one of ours)")
        loaded = export_frame_model(args.kind, args.checkpoint, args.output, args.classes, args.opset)
        module, p = loaded.module, loaded.preprocess
        shape = (1, p.channels, p.size, p.size)
    size_mb = os.path.getsize(args.output) / 1e6
    print(f"wrote {args.output} ({size_mb:.1f} MB), input {('batch',) + tuple(shape[1:])}")
    if not args.no_verify:
        diff = verify(module, args.output, shape)
        print(f"onnxruntime vs torch: max abs difference {diff:.2e}")
        if diff > args.tolerance and args.kind == "snn":
            print("note: spiking thresholds amplify float rounding (see --help); the difference is reported only")
        elif diff > args.tolerance:
            from fer_perception.errors import CheckpointError

            raise CheckpointError(f"exported model differs from torch by {diff:.2e} > {args.tolerance:.0e}")
    return 0
