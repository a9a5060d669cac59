"""Compiled spike kernels (numba): bit-exact with the tensor-op IF neurons, and the int8 runtime built on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_perception.models.spiking_fer import SpikingFER
from fer_perception.runtime import digit_conv, snn_fused, spike_kernels
from fer_perception.runtime.digit_conv import DigitConv, combine
from fer_perception.runtime.snn_fused import FusedSpikingFER, LayerStats, if_steps
from model_helpers import spike_frames, trained_like

needs_kernels = pytest.mark.skipif(not spike_kernels.available(), reason="numba is not installed")
needs_int8 = pytest.mark.skipif(not digit_conv.available(), reason="no oneDNN int8 convolution in this torch")
CL = torch.channels_last


def _conv_output(steps, batch, parts, channels, size, seed):
    """Channels-last float32 'conv output' with many values at and around the threshold (1.0)."""
    g = torch.Generator().manual_seed(seed)
    blocks = [torch.randn(steps * batch, channels, size, size, generator=g) * 0.6 + 0.3 for _ in range(parts)]
    blocks[0].view(-1)[::7] = 1.0  # exactly at threshold
    blocks[0].view(-1)[1::11] = 0.5  # two steps of 0.5 reach the threshold exactly
    if parts == 3:  # digit partials: the lower ones are tiny, as in DigitConv
        blocks[1] *= 1e-3
        blocks[2] *= 1e-6
    y = torch.cat(blocks, dim=1)
    return y.contiguous(memory_format=CL)


def _reference(y, steps, channels, add, dtype=torch.uint8):
    """The tensor-op path: digits combined like DigitConv, IF by if_steps, spikes in ``dtype``, SEW ADD; the
    state flattened in ``y``'s memory order."""
    x = combine(y, y.shape[1] // channels) if y.shape[1] != channels else y.clone()
    batch = y.shape[0] // steps
    v_out = if_steps(x.view(steps, batch, *x.shape[1:]))
    spikes = x.to(dtype)
    if add is not None:
        spikes = spikes + add
    if y.is_contiguous():
        return spikes, v_out.reshape(-1)
    return spikes, v_out.permute(0, 2, 3, 1).reshape(-1)


@needs_kernels
@pytest.mark.parametrize("parts,layout,dtype", [(3, CL, torch.uint8), (1, CL, torch.uint8),
                                                (1, torch.contiguous_format, torch.float32),
                                                (1, torch.contiguous_format, torch.uint8), (3, CL, torch.float32)])
@pytest.mark.parametrize("with_add", [False, True])
@pytest.mark.parametrize("steps,batch,channels,size", [(6, 1, 8, 5), (3, 2, 16, 4), (1, 3, 4, 7)])
def test_fire_is_bit_exact_with_the_tensor_ops(parts, layout, dtype, with_add, steps, batch, channels, size):
    y = _conv_output(steps, batch, parts, channels, size, seed=steps + channels).contiguous(memory_format=layout)
    g = torch.Generator().manual_seed(5)
    add = (torch.randint(0, 3, (steps * batch, channels, size, size), generator=g).to(dtype)
           .contiguous(memory_format=layout) if with_add else None)
    spikes, v = spike_kernels.fire(y, steps, channels, add=add, out_dtype=dtype)
    ref_spikes, ref_v = _reference(y, steps, channels, add, dtype)
    assert spikes.dtype == dtype and spikes.is_contiguous(memory_format=layout)
    assert spikes.shape == (steps * batch, channels, size, size)
    assert torch.equal(spikes, ref_spikes)
    assert torch.equal(v, ref_v)  # the same fp32 membrane potentials, bit for bit
    fired = int((spikes - (add if add is not None else 0)).sum())
    assert 0 < fired < spikes.numel()  # it fired, not always


@needs_kernels
def test_fire_continues_from_a_state_like_one_long_window():
    y = _conv_output(6, 2, 3, 8, 4, seed=1)
    whole, v_whole = spike_kernels.fire(y, 6, 8)
    first, v = spike_kernels.fire(y[:6].contiguous(memory_format=CL), 3, 8)
    second, v2 = spike_kernels.fire(y[6:].contiguous(memory_format=CL), 3, 8, v)
    assert v2 is v  # updated in place
    assert torch.equal(torch.cat([first, second]), whole) and torch.equal(v2, v_whole)


@needs_kernels
def test_fire_names_bad_inputs():
    y = _conv_output(2, 1, 1, 4, 3, seed=0)
    with pytest.raises(ValueError, match="channels-last"):  # digit partials come channels-last
        spike_kernels.fire(torch.cat([y, y, y], 1).contiguous(), 2, 4)
    with pytest.raises(ValueError, match="bad input"):
        spike_kernels.fire(y.double(), 2, 4)
    with pytest.raises(ValueError, match="bad input"):
        spike_kernels.fire(y, 2, 3)  # 4 channels are not 1 or 3 blocks of 3
    with pytest.raises(ValueError, match="bad input"):
        spike_kernels.fire(y, 3, 4)  # 2 rows are not a whole number of 3 steps
    with pytest.raises(ValueError, match="state"):
        spike_kernels.fire(y, 2, 4, torch.zeros(5, 4))
    with pytest.raises(ValueError, match="channels-last"):  # add laid out unlike the conv output
        spike_kernels.fire(y, 2, 4, add=torch.zeros(2, 4, 3, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="contiguous"):
        spike_kernels.fire(y.contiguous(), 2, 4, add=torch.zeros(2, 4, 3, 3, dtype=torch.uint8).contiguous(
            memory_format=CL))
    with pytest.raises(ValueError, match="does not match"):
        spike_kernels.fire(y, 2, 4, add=torch.zeros(2, 4, 3, 2, dtype=torch.uint8).contiguous(memory_format=CL))
    with pytest.raises(ValueError, match="uint8 or float32"):
        spike_kernels.fire(y, 2, 4, out_dtype=torch.int32)


@needs_int8
def test_digit_partials_sum_to_the_convolution():
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(8, 4, 3, 3, generator=g), torch.randn(8, generator=g)
    conv = DigitConv(w, b, 1, 1)
    x = (torch.rand(2, 4, 6, 6, generator=g) < 0.3).to(torch.uint8).contiguous(memory_format=CL)
    parts = conv.partials(x)
    assert parts.shape == (2, 24, 6, 6) and parts.is_contiguous(memory_format=CL)
    assert torch.equal(combine(parts), conv(x))
    no_bias = DigitConv(w, None, 1, 1).partials(x)
    assert torch.allclose(parts[:, :8] - no_bias[:, :8], b.view(1, -1, 1, 1).expand(2, 8, 6, 6), atol=1e-5)
    assert torch.equal(parts[:, 8:], no_bias[:, 8:])  # the bias rides on the most significant block only
    assert float(parts[:, 16:].abs().max()) < 1e-3 * float(parts[:, :8].abs().max())


@pytest.fixture
def digits_everywhere(monkeypatch):
    monkeypatch.setattr(snn_fused, "DIGITS_MIN_IN_CHANNELS", 1)
    monkeypatch.setattr(snn_fused, "DIGITS_MIN_MACS", 0)


@needs_kernels
@pytest.mark.parametrize("int8,tensor_ops_above", [(True, None), (False, None), (False, 0)])
def test_runtime_gives_the_same_bits_with_and_without_the_kernels(digits_everywhere, monkeypatch, int8,
                                                                  tensor_ops_above):
    """int8 (uint8 channels-last spikes) and fp32 (float contiguous spikes; large layers through tensor ops)."""
    if int8 and not digit_conv.available():
        pytest.skip("no oneDNN int8 convolution in this torch")
    if tensor_ops_above is not None:  # every fp32 layer "large": the kernel path's tensor-op branch
        monkeypatch.setattr(snn_fused, "KERNEL_MAX_FP32_VALUES", tensor_ops_above)
    torch.manual_seed(0)
    model = trained_like(SpikingFER(n_classes=6, timesteps=6, width=0.25, input_size=64))
    x = spike_frames(2, seed=4).permute(1, 0, 2, 3, 4).contiguous()
    net = FusedSpikingFER(model).eval().set_int8(int8)
    assert net.int8 == int8 and net.spike_kernels
    results = {}
    for kernels in (True, False):
        net.use_kernels = kernels
        st = LayerStats(2)
        with torch.inference_mode():
            logits = net(x.clone(), st)
            plain = net(x.clone())  # no statistics: the SEW ADD fused into the IF pass
            state = {}
            for t in range(6):
                net.step(x[t], state)
            streamed = net.readout(state, 6)
        results[kernels] = (logits, plain, streamed, st.finalize())
    (a, a_plain, a_stream, sa), (b, b_plain, b_stream, sb) = results[True], results[False]
    assert torch.equal(a, b) and torch.equal(a_plain, b_plain) and torch.equal(a_plain, b)
    assert torch.equal(a_stream, b_stream)
    assert torch.allclose(a_stream, a, rtol=1e-5, atol=1e-5 * float(a.abs().max()))
    assert set(sa.spikes) == set(sb.spikes) and set(sa.sops) == set(sb.sops)
    for name in sb.spikes:
        assert np.array_equal(sa.spikes[name], sb.spikes[name]), name
    for name in sb.sops:
        assert np.array_equal(sa.sops[name], sb.sops[name]), name


@needs_int8
def test_int8_runtime_falls_back_to_tensor_ops_without_numba(digits_everywhere, monkeypatch):
    monkeypatch.setattr(spike_kernels, "available", lambda: False)
    torch.manual_seed(0)
    model = trained_like(SpikingFER(n_classes=6, timesteps=6, width=0.25, input_size=64))
    net = FusedSpikingFER(model).eval().set_int8(True)
    assert net.int8 and not net.spike_kernels
    x = spike_frames(1, seed=6).permute(1, 0, 2, 3, 4).contiguous()
    with torch.inference_mode():
        got, ref = net(x.clone()), model(x.clone())
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
