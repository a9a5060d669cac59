"""CUDA graphs of the SNN window forward: replay equals eager (on a CUDA machine); clear refusals elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_perception.models.spiking_fer import SpikingFER
from fer_perception.runtime.snn import SnnRunner
from model_helpers import spike_frames, trained_like

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def small_snn():
    torch.manual_seed(0)
    return trained_like(SpikingFER(n_classes=6, timesteps=6, width=0.25, input_size=64))


def test_cpu_runner_does_not_use_cuda_graphs_and_says_why_when_asked(small_snn):
    auto = SnnRunner(small_snn, device="cpu", warmup=1)
    assert not auto.cuda_graphs and auto.cuda_graphs_rejected is None  # not asked, nothing to say
    asked = SnnRunner(small_snn, device="cpu", warmup=1, cuda_graphs=True)
    assert not asked.cuda_graphs and "CUDA device" in asked.cuda_graphs_rejected


def test_graphed_callable_refuses_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from fer_perception.runtime.cuda_graphs import GraphedCallable

    with pytest.raises(RuntimeError, match="CUDA device"):
        GraphedCallable(lambda x: x)


@needs_cuda
def test_cuda_graph_replay_equals_eager_for_every_batch_size(small_snn):
    graphed = SnnRunner(small_snn, device="cuda", warmup=1)
    eager = SnnRunner(small_snn, device="cuda", warmup=1, cuda_graphs=False)
    assert graphed.cuda_graphs, graphed.cuda_graphs_rejected
    assert not eager.cuda_graphs
    for batch in (1, 3, 1, 5):
        frames = spike_frames(batch, seed=batch)
        a, b = graphed.predict(frames, stats=False), eager.predict(frames, stats=False)
        assert np.allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5 * np.abs(b.logits).max())
    first = graphed.predict(spike_frames(2, seed=1), stats=False).logits.copy()
    graphed.predict(spike_frames(2, seed=2), stats=False)
    assert np.array_equal(graphed.predict(spike_frames(2, seed=1), stats=False).logits, first)  # no stale state
    with_stats = graphed.predict(spike_frames(2, seed=1))  # statistics: the eager path
    assert with_stats.firing_rates and np.allclose(with_stats.logits, first, rtol=1e-4, atol=1e-4)
