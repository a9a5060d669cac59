"""CUDA graphs for fixed-shape inference: one graph launch per window instead of hundreds of kernel launches.

A batch-1 Spiking-FER window is about 400 small kernels (IF updates per step and layer, convolutions, pooling).
On a GPU each eager launch costs the CPU a few microseconds, so the window is launch-bound, not compute-bound.
:class:`GraphedCallable` captures ``fn(x)`` once per input shape (``torch.cuda.CUDAGraph``) and afterwards
only copies the new input into the captured buffer and replays the graph.

The captured function must be free of host synchronisation and of shape-dependent Python branching beyond the
input's shape (the fused SNN's stats-free forward is). Each graph has its own memory pool; the least recently
used graphs are dropped beyond ``max_graphs``. Results are copied out of the graph's output buffer, so they stay
valid after the next replay.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Tuple

import torch

__all__ = ["GraphedCallable"]


class GraphedCallable:
    """``fn(x)`` replayed from a CUDA graph captured per ``(shape, dtype)`` of ``x`` (a CUDA tensor)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], max_graphs: int = 8, warmup: int = 2) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need a CUDA device")
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be >= 1, got {max_graphs}")
        self.fn = fn
        self.max_graphs = int(max_graphs)
        self.warmup = int(warmup)
        self._graphs: "OrderedDict[Tuple, Tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]]" = OrderedDict()
        self.captures = 0  #: graphs captured so far (a new batch size costs one capture)

    def __len__(self) -> int:
        return len(self._graphs)

    def _capture(self, x: torch.Tensor) -> Tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        static_in = x.detach().clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):  # warm-up outside the graph: cuDNN picks its algorithms, caches fill
            for _ in range(self.warmup):
                self.fn(static_in)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.fn(static_in)
        self.captures += 1
        return graph, static_in, static_out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cuda":
            raise ValueError(f"GraphedCallable needs a CUDA tensor, got one on {x.device}")
        key = (tuple(x.shape), x.dtype, x.device)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(x)
            self._graphs[key] = entry
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        graph, static_in, static_out = entry
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()
