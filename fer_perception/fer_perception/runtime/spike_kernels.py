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

__all__ = ["available", "fire"]


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
    def fire_kernel(y, channels, v, out, add, has_add, threshold, one, nil):  # pragma: no cover - compiled
        # flat arrays. y: (T, M, P*C) conv output (P = 1) or digit partials (P = 3, most significant first);
        # v: (M, C) membrane potentials, updated; out: (T, M, C) spikes (one / nil, of out's dtype: uint8 or
        # float32), plus add (T, M, C) when has_add
        rows = v.size // channels
        parts = y.size // out.size
        steps = out.size // v.size
        zero = np.float32(0.0)
        thr = np.float32(threshold)
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
                        out[ob + c] = one if s else nil
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
                        out[ob + c] = one if s else nil
                        v[vb + c] = zero if s else h

    return fire_kernel


_SPIKE_DTYPES = {torch.uint8: (np.uint8(1), np.uint8(0)), torch.float32: (np.float32(1.0), np.float32(0.0))}


def _nhwc(x: torch.Tensor) -> np.ndarray:
    """numpy view ``(N, H, W, C)`` of a channels-last ``(N, C, H, W)`` CPU tensor (no copy)."""
    view = x.permute(0, 2, 3, 1)
    if not view.is_contiguous():
        raise ValueError(f"expected a channels-last tensor, got shape {tuple(x.shape)} strides {x.stride()}")
    return view.numpy()


def fire(y: torch.Tensor, steps: int, channels: int, v: Optional[torch.Tensor] = None,
         add: Optional[torch.Tensor] = None, out_dtype: torch.dtype = torch.uint8,
         threshold: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """IF neurons over ``steps`` steps of a conv output; returns ``(spikes, v)``.

    ``y`` is ``(steps*B, P*C, H, W)`` float32: a conv output (``P = 1``), channels-last or contiguous, or the
    digit partial sums of a :class:`DigitConv` (``P = 3``, channels-last, summed here least significant first).
    ``v`` is the membrane potential before the first step, flat (``B*C*H*W`` float32, in ``y``'s memory order;
    zeros when None); it is updated in place and returned. ``spikes`` is ``(steps*B, C, H, W)`` in ``out_dtype``
    (uint8 for the int8 digit convolutions, float32 for fp32 ones) and ``y``'s memory layout, plus ``add`` (same
    shape, dtype and layout: the SEW ADD's other branch) when given.
    """
    t_b, width, height, wide = y.shape
    if y.dtype != torch.float32 or width % channels or width // channels not in (1, 3) or t_b % steps:
        raise ValueError(f"fire: bad input {tuple(y.shape)} {y.dtype} for {channels} channels, {steps} steps")
    if out_dtype not in _SPIKE_DTYPES:
        raise ValueError(f"fire: spikes are uint8 or float32, not {out_dtype}")
    neurons = t_b // steps * channels * height * wide
    if width == channels and y.is_contiguous():  # one value per neuron in NCHW order: elementwise, any "rows"
        flat_y = y.numpy().reshape(-1)
        out = torch.empty(y.shape, dtype=out_dtype)
        flat_out = out.numpy().reshape(-1)
        row = neurons
    else:
        flat_y = _nhwc(y).reshape(-1)
        out = torch.empty(t_b, channels, height, wide, dtype=out_dtype, memory_format=torch.channels_last)
        flat_out = _nhwc(out).reshape(-1)
        row = channels
    if v is None:
        v = torch.zeros(neurons, dtype=torch.float32)
    elif v.shape != (neurons,) or v.dtype != torch.float32 or not v.is_contiguous():
        raise ValueError(f"fire: state {tuple(v.shape)} {v.dtype} does not fit ({neurons},) float32")
    if add is not None:
        if add.shape != out.shape or add.dtype != out_dtype:
            raise ValueError(f"fire: add {tuple(add.shape)} {add.dtype} does not match {tuple(out.shape)} {out_dtype}")
        if row == neurons and not add.is_contiguous():
            raise ValueError(f"fire: add must be contiguous like the conv output, got strides {add.stride()}")
        flat_add = add.numpy().reshape(-1) if row == neurons else _nhwc(add).reshape(-1)
    else:
        flat_add = flat_out[:1]  # never read; keeps the kernel's signature (and its compiled version) the same
    one, nil = _SPIKE_DTYPES[out_dtype]
    _kernels()(flat_y, row, v.numpy(), flat_out, flat_add, add is not None, threshold, one, nil)
    return out, v
