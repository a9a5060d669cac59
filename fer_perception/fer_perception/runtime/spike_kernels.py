"""Compiled (numba) CPU kernels for the spiking layers: one pass per layer instead of a dozen tensor ops.

Eager PyTorch runs an IF neuron over T steps as three tensor ops per step, plus a cast of the spikes to
``uint8`` for the int8 digit convolutions, plus the SEW ADD: on the full-size network about 400 small ops and
a few milliseconds per window. :func:`fire` does all of it in one pass over the conv output, and can read the
three digit partial sums of :class:`~fer_perception.runtime.digit_conv.DigitConv` (``parts=3``) so that they
are added up inside the same pass.

Arithmetic is that of the tensor ops it replaces, in fp32 and in the same order: the digit partials summed
least significant first, ``h = v + x``, spike ``h >= threshold``, hard reset to 0 (tested bit for bit).

Every tensor here is channels-last: ``(N, C, H, W)`` with ``C`` the innermost dimension in memory, so a
kernel's inner loop runs over contiguous channels and vectorises. The kernels run on one thread, release the
GIL and are cached on disk by numba (compiled once per machine, about a second per kernel).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional, Tuple

import numpy as np
import torch

__all__ = ["available", "fire", "warm_up"]


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether numba is installed (it is a dependency; without it the runtime falls back to tensor ops)."""
    try:
        import numba  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or a numba broken against this NumPy
        return False
    return True


@lru_cache(maxsize=1)
def _kernels():
    """Compile (or load from numba's cache) the kernels; imported lazily so that numba stays optional."""
    from numba import njit

    try:  # compiled once per machine and cached on disk, where numba finds a writable cache folder
        return _compile(njit, cache=True)
    except RuntimeError:  # "cannot cache function ...: no locator available": compile per process instead
        return _compile(njit, cache=False)


def _compile(njit, cache: bool):
    opts = dict(cache=cache, nogil=True, boundscheck=False)

    @njit(**opts)
    def fire_kernel(y, channels, v, out, add, has_add, threshold):  # pragma: no cover - compiled
        # flat arrays. y: (T, M, P*C) conv output (P = 1) or digit partials (P = 3, most significant first);
        # v: (M, C) membrane potentials, updated; out: (T, M, C) uint8 spikes, plus add (T, M, C) when has_add
        rows = v.size // channels
        parts = y.size // out.size
        steps = out.size // v.size
        zero = np.float32(0.0)
        thr = np.float32(threshold)
        one = np.uint8(1)
        for t in range(steps):
            for m in range(rows):
                yb = (t * rows + m) * parts * channels
                ob = (t * rows + m) * channels
                vb = m * channels
                if parts == 3 and has_add:
                    for c in range(channels):
                        h = v[vb + c] + ((y[yb + 2 * channels + c] + y[yb + channels + c]) + y[yb + c])
                        s = h >= thr
                        a = add[ob + c]
                        out[ob + c] = a + one if s else a
                        v[vb + c] = zero if s else h
                elif parts == 3:
                    for c in range(channels):
                        h = v[vb + c] + ((y[yb + 2 * channels + c] + y[yb + channels + c]) + y[yb + c])
                        s = h >= thr
                        out[ob + c] = one if s else np.uint8(0)
                        v[vb + c] = zero if s else h
                elif has_add:
                    for c in range(channels):
                        h = v[vb + c] + y[yb + c]
                        s = h >= thr
                        a = add[ob + c]
                        out[ob + c] = a + one if s else a
                        v[vb + c] = zero if s else h
                else:
                    for c in range(channels):
                        h = v[vb + c] + y[yb + c]
                        s = h >= thr
                        out[ob + c] = one if s else np.uint8(0)
                        v[vb + c] = zero if s else h

    return fire_kernel


def _nhwc(x: torch.Tensor) -> np.ndarray:
    """numpy view ``(N, H, W, C)`` of a channels-last ``(N, C, H, W)`` CPU tensor (no copy)."""
    view = x.permute(0, 2, 3, 1)
    if not view.is_contiguous():
        raise ValueError(f"expected a channels-last tensor, got shape {tuple(x.shape)} strides {x.stride()}")
    return view.numpy()


def fire(y: torch.Tensor, steps: int, channels: int, v: Optional[torch.Tensor] = None,
         add: Optional[torch.Tensor] = None, out_dtype: torch.dtype = torch.uint8,
         threshold: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """IF neurons over ``steps`` steps of a channels-last conv output; returns ``(spikes, v)``.

    ``y`` is ``(steps*B, P*C, H, W)`` float32 channels-last: a conv output (``P = 1``) or the digit partial sums
    of a :class:`DigitConv` (``P = 3``, summed here least significant first). ``v`` is the membrane potential
    ``(B*H*W, C)`` float32 before the first step (zeros when None); it is updated in place and returned.
    ``spikes`` is ``(steps*B, C, H, W)`` channels-last in ``out_dtype``, plus ``add`` (same shape, the SEW ADD's
    other branch) when given.
    """
    t_b, width, height, wide = y.shape[0], y.shape[1], y.shape[2], y.shape[3]
    if y.dtype != torch.float32 or width % channels or width // channels not in (1, 3) or t_b % steps:
        raise ValueError(f"fire: bad input {tuple(y.shape)} {y.dtype} for {channels} channels, {steps} steps")
    batch = t_b // steps
    rows = batch * height * wide
    flat_y = _nhwc(y).reshape(-1)
    if v is None:
        v = torch.zeros(rows, channels, dtype=torch.float32)
    elif v.shape != (rows, channels) or v.dtype != torch.float32 or not v.is_contiguous():
        raise ValueError(f"fire: state {tuple(v.shape)} {v.dtype} does not fit ({rows}, {channels}) float32")
    out = torch.empty(t_b, channels, height, wide, dtype=out_dtype, memory_format=torch.channels_last)
    flat_out = _nhwc(out).reshape(-1)
    if add is not None:
        if add.shape != out.shape or add.dtype != out_dtype:
            raise ValueError(f"fire: add {tuple(add.shape)} {add.dtype} does not match {tuple(out.shape)} {out_dtype}")
        flat_add = _nhwc(add).reshape(-1)
    else:
        flat_add = flat_out[:1]  # never read; keeps the kernel's signature (and its compiled version) the same
    fire_kernel = _kernels()
    fire_kernel(flat_y, channels, v.numpy().reshape(-1), flat_out, flat_add, add is not None, threshold)
    return out, v


def warm_up() -> None:
    """Compile (or load) the kernels for the runtime's dtypes now rather than on the first window."""
    y = torch.zeros(2, 3, 2, 2).contiguous(memory_format=torch.channels_last)
    spikes, _ = fire(y, 2, 1)
    fire(y, 2, 1, add=spikes)
    fire(y[:, :1].contiguous(memory_format=torch.channels_last), 2, 1)
