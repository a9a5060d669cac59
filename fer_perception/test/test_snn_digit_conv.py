"""int8 digit convolutions: fp32 accuracy on spike inputs, and the SNN runtime that uses them on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_perception.models.spiking_fer import CNNBaseline, SpikingFER
from fer_perception.runtime import digit_conv, snn_fused
from fer_perception.runtime.digit_conv import DigitConv, weight_digits
from fer_perception.runtime.snn import SnnRunner, StreamingSnn
from fer_perception.runtime.snn_fused import FusedSpikingFER, LayerStats, max_pool_3x3_s2
from model_helpers import spike_frames, trained_like


needs_int8 = pytest.mark.skipif(not digit_conv.available(), reason="no oneDNN int8 convolution in this torch")


@pytest.fixture(scope="module")
def small_snn():
    torch.manual_seed(0)
    return trained_like(SpikingFER(n_classes=6, timesteps=6, width=0.25, input_size=64))


@pytest.fixture
def digits_everywhere(monkeypatch):
    """Every spike-reading conv as int8 digits, also the narrow test network's (normally too small to gain)."""
    monkeypatch.setattr(snn_fused, "DIGITS_MIN_IN_CHANNELS", 1)
    monkeypatch.setattr(snn_fused, "DIGITS_MIN_MACS", 0)


def test_int8_dot_product_detection_reads_the_cpu_flags():
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    expected = any(f in flags.split() for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
    assert digit_conv.has_int8_dot_product() == expected


def test_weight_digits_reconstruct_the_weight_to_fp32_precision():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 8, 3, 3, generator=g) * torch.logspace(-4, 1, 16).view(-1, 1, 1, 1)
    w[3] = 0.0  # a dead channel
    q, scales = weight_digits(w)
    assert q.dtype == torch.int8 and q.shape == (48, 8, 3, 3) and scales.shape == (48,)
    assert int(q.abs().max()) <= 127
    rebuilt = sum(scales[i * 16:(i + 1) * 16].double().view(-1, 1, 1, 1) * q[i * 16:(i + 1) * 16].double()
                  for i in range(3))
    amax = w.abs().amax(dim=(1, 2, 3)).double().view(-1, 1, 1, 1)
    # residual (< 2**-24 of a channel's largest weight) plus fp32 scales: within fp32's own step of that weight
    assert bool(((rebuilt - w.double()).abs() <= amax * 2.0 ** -22 + 1e-30).all())
    assert bool((q[3::16] == 0).all())
    one_digit, _ = weight_digits(w, 1)
    assert one_digit.shape == (16, 8, 3, 3)
    with pytest.raises(ValueError, match="C_out, C_in"):
        weight_digits(torch.zeros(3, 3))


@needs_int8
@pytest.mark.parametrize("cin,cout,size,k,stride,pad,batch", [
    (16, 32, 16, 3, 1, 1, 6), (16, 32, 16, 3, 2, 1, 12), (32, 64, 8, 1, 1, 0, 6), (8, 16, 9, 3, 1, 1, 1)])
def test_digit_conv_is_as_accurate_as_fp32_on_spike_inputs(cin, cout, size, k, stride, pad, batch):
    g = torch.Generator().manual_seed(cin + cout)
    # spikes and SEW sums: 0..3, sparse
    x = ((torch.rand(batch, cin, size, size, generator=g) < 0.2).float()
         * torch.randint(1, 4, (batch, cin, size, size), generator=g).float())
    w = torch.randn(cout, cin, k, k, generator=g) * 0.1
    b = torch.randn(cout, generator=g)
    exact = F.conv2d(x.double(), w.double(), b.double(), stride, pad)
    fp32 = F.conv2d(x, w, b, stride, pad)
    conv = DigitConv(w, b, stride, pad)
    got = conv(x.to(torch.uint8).contiguous(memory_format=torch.channels_last))
    assert got.dtype == torch.float32 and got.shape == fp32.shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    err_fp32 = float((fp32.double() - exact).abs().max())
    err_int8 = float((got.double() - exact).abs().max())
    assert err_int8 <= 4 * err_fp32 + 1e-6 * float(exact.abs().max()), (err_int8, err_fp32)
    # other layouts and batch sizes (packed anew) give the same numbers
    again = conv(x.to(torch.uint8))
    assert torch.equal(again.contiguous(), got.contiguous())
    assert torch.allclose(conv(x[:1].to(torch.uint8)), got[:1])
    # no bias
    nobias = DigitConv(w, None, stride, pad)(x.to(torch.uint8))
    assert torch.allclose(nobias, F.conv2d(x, w, None, stride, pad), atol=1e-5, rtol=1e-5)


@needs_int8
def test_digit_conv_wants_uint8():
    conv = DigitConv(torch.randn(4, 2, 3, 3), None, 1, 1)
    with pytest.raises(TypeError, match="uint8"):
        conv(torch.zeros(1, 2, 8, 8))


@needs_int8
def test_fused_int8_gives_the_fp32_spikes_and_logits(small_snn, digits_everywhere):
    x = spike_frames(3, seed=2).permute(1, 0, 2, 3, 4).contiguous()
    fp32 = FusedSpikingFER(small_snn).eval()
    int8 = FusedSpikingFER(small_snn).eval().set_int8(True)
    assert int8.int8 and not fp32.int8
    assert all(conv.digits is not None for conv, _ in int8._spike_convs())
    s32, s8 = LayerStats(3), LayerStats(3)
    with torch.inference_mode():
        ref = fp32(x.clone(), s32)
        got = int8(x.clone(), s8)
        plain = small_snn(x.clone())
    s32.finalize()
    s8.finalize()
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    assert torch.allclose(got, plain, rtol=1e-4, atol=1e-4 * float(plain.abs().max()))
    # the same spikes in every layer, so the same firing rates and synaptic operations
    assert set(s8.spikes) == set(s32.spikes)
    for name in s32.spikes:
        assert np.array_equal(s8.spikes[name], s32.spikes[name]), name
    for name in s32.sops:
        assert np.allclose(s8.sops[name], s32.sops[name]), name
    int8.set_int8(False)
    assert not int8.int8
    with torch.inference_mode():
        assert torch.equal(int8(x.clone()), ref)


@needs_int8
def test_full_size_int8_equals_the_spikingjelly_forward():
    """The full-width network at 128 px (the digits' real use): same logits as SpikingJelly, same spikes as fp32."""
    torch.manual_seed(1)
    model = trained_like(SpikingFER(), seed=1)
    x = spike_frames(2, size=128, seed=1).permute(1, 0, 2, 3, 4).contiguous()
    int8 = FusedSpikingFER(model).set_int8(True)
    assert int8.int8
    s8, s32 = LayerStats(2), LayerStats(2)
    with torch.inference_mode():
        ref = model(x)
        got = int8(x.clone(), s8)
        FusedSpikingFER(model)(x.clone(), s32)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max())), (got, ref)
    assert torch.equal(got.argmax(1), ref.argmax(1))
    s8.finalize()
    s32.finalize()
    for name in s32.spikes:
        assert np.array_equal(s8.spikes[name], s32.spikes[name]), name


@needs_int8
def test_runner_uses_int8_on_the_cpu_by_default_and_streams_the_same(small_snn, digits_everywhere, monkeypatch):
    monkeypatch.setattr(digit_conv, "has_int8_dot_product", lambda: True)  # CI runners may lack VNNI
    auto = SnnRunner(small_snn, device="cpu", warmup=1)
    off = SnnRunner(small_snn, device="cpu", warmup=1, int8=False)
    assert auto.int8 and auto.int8_rejected is None and auto.int8_max_diff is not None
    assert not off.int8 and off.int8_rejected is None
    frames = spike_frames(2, seed=9)
    a, b = auto.predict(frames), off.predict(frames)
    assert np.allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5 * np.abs(b.logits).max())
    for name in b.firing_rates:
        assert np.array_equal(a.firing_rates[name], b.firing_rates[name]), name
    stream = StreamingSnn(auto)
    outs = [stream.push(frames[:, t]) for t in range(6)]
    assert np.allclose(outs[5].logits, a.logits, rtol=1e-5, atol=1e-5 * np.abs(a.logits).max())


def test_runner_says_why_int8_is_not_used(small_snn, digits_everywhere, monkeypatch):
    half = SnnRunner(small_snn, device="cpu", warmup=1, half=True, half_tolerance=1.0)
    if half.half:
        assert not half.int8 and half.int8_rejected is None  # auto: half precision wins, nothing asked
    asked = SnnRunner(small_snn, device="cpu", warmup=1, half=True, half_tolerance=1.0, int8=True)
    if asked.half:
        assert not asked.int8 and "half precision" in asked.int8_rejected
    torch.manual_seed(0)
    cnn = SnnRunner(trained_like(CNNBaseline(n_classes=6, timesteps=6, width=0.25, input_size=64)),
                    device="cpu", warmup=1, int8=True)
    assert not cnn.int8 and "fused SNN" in cnn.int8_rejected
    monkeypatch.setattr(digit_conv, "has_int8_dot_product", lambda: False)
    old_cpu = SnnRunner(small_snn, device="cpu", warmup=1)
    assert not old_cpu.int8 and "dot-product" in old_cpu.int8_rejected
    forced = SnnRunner(small_snn, device="cpu", warmup=1, int8=True)
    assert forced.int8 == digit_conv.available()
    monkeypatch.setattr(digit_conv, "available", lambda: False)
    none = SnnRunner(small_snn, device="cpu", warmup=1, int8=True)
    assert not none.int8 and "no oneDNN int8" in none.int8_rejected


@needs_int8
def test_runner_rejects_int8_that_disagrees_with_fp32(small_snn, digits_everywhere, monkeypatch):
    real_init = DigitConv.__init__
    # one digit only: 8-bit weights, visibly off fp32 (what the check is there to catch)
    monkeypatch.setattr(DigitConv, "__init__", lambda self, w, b, stride=1, padding=0, digits=3:
                        real_init(self, w, b, stride, padding, 1))
    runner = SnnRunner(small_snn, device="cpu", warmup=1, int8=True)
    assert not runner.int8 and "disagree with fp32" in runner.int8_rejected


@needs_int8
def test_only_wide_convolutions_use_digits(small_snn):
    torch.manual_seed(0)
    full = FusedSpikingFER(trained_like(SpikingFER(n_classes=7))).set_int8(True)
    used = {(conv.kernel, int(conv.weight.shape[1]), size): conv.digits is not None
            for conv, size in full._spike_convs()}
    assert used[(3, 64, 32)] and used[(3, 512, 4)]  # layer1 and layer4 3x3 convs
    assert used[(1, 64, 32)]  # the layer2 1x1 downsample: 2.1 M multiply-adds per step, just worth it
    demo = FusedSpikingFER(small_snn).set_int8(True)
    assert not demo.int8
    runner = SnnRunner(small_snn, device="cpu", warmup=1, int8=True)
    assert not runner.int8 and "wide enough" in runner.int8_rejected


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape", [(6, 4, 64, 64), (2, 3, 2, 2), (1, 2, 4, 6), (2, 3, 63, 65)])
def test_max_pool_even_sizes_need_no_padding(shape, fmt):
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(shape, generator=g) < 0.3).float() * torch.randint(1, 4, shape, generator=g).float()
    x = x.contiguous(memory_format=fmt)
    assert torch.equal(max_pool_3x3_s2(x), F.max_pool2d(x, 3, 2, 1))
