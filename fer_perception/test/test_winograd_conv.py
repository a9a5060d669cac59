"""Winograd F(2x2, 3x3) convolution and the folded ResNet block: equal to the direct maths in torch and in
onnxruntime (dynamic batch), odd sizes, bad convs refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_perception.models.resnet import BasicBlock
from fer_perception.models.fold import fold_conv_bn
from fer_perception.models.winograd import FusedBasicBlock, WinogradConv3x3
from model_helpers import trained_like


@pytest.mark.parametrize("tile,size", [(2, (8, 8)), (2, (7, 7)), (2, (6, 9)), (2, (1, 2)), (4, (8, 8)),
                                       (4, (14, 14)), (4, (5, 11)), (4, (1, 1))])
def test_winograd_equals_direct_conv_within_float_rounding(tile, size):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(24, 40, 3, padding=1)
    x = torch.randn(3, 24, *size)
    wc = WinogradConv3x3.from_conv(conv, tile=tile)
    assert wc.tile == tile and wc.positions == (tile + 2) ** 2
    with torch.no_grad():
        ref64 = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
        direct, got = conv(x), wc(x)
    assert got.shape == direct.shape == (3, 40, *size)
    err_direct = float((direct.double() - ref64).abs().max())
    err_wino = float((got.double() - ref64).abs().max())
    # F(2x2) rounds like the direct conv; F(4x4)'s larger transform entries (up to 8) cost a few bits more
    assert err_wino <= (4 if tile == 2 else 16) * err_direct + 1e-7, (err_wino, err_direct)
    assert err_wino < 1e-5 * float(ref64.abs().max())


@pytest.mark.parametrize("tile", [2, 4])
def test_grouped_winograd_equals_the_grouped_conv(tile):
    torch.manual_seed(4)
    conv = torch.nn.Conv2d(12, 24, 3, padding=1, groups=3)
    wc = WinogradConv3x3.from_conv(conv, tile=tile)
    assert wc.groups == 3 and wc.in_channels == 12 and wc.out_channels == 24
    x = torch.randn(2, 12, 7, 7)
    with torch.no_grad():
        assert (wc(x) - conv(x)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="do not split into 5 groups"):
        WinogradConv3x3(torch.zeros(8, 4, 3, 3), groups=5)


def test_winograd_folds_batchnorm_and_handles_no_bias():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False)
    bn = trained_like(torch.nn.BatchNorm2d(16), bias_scale=0.1)
    x = torch.randn(2, 16, 10, 10)
    with torch.no_grad():
        ref = bn(conv(x))
        assert (WinogradConv3x3.from_conv(conv, bn)(x) - ref).abs().max() < 1e-5
        assert (WinogradConv3x3.from_conv(conv)(x) - conv(x)).abs().max() < 1e-5
    w, b = fold_conv_bn(conv, None)
    assert w.dtype == torch.float64 and torch.equal(b, torch.zeros(16, dtype=torch.float64))


@pytest.mark.parametrize("kwargs", [dict(stride=2, padding=1), dict(padding=0), dict(padding=2, dilation=2)])
def test_winograd_refuses_convs_it_does_not_compute(kwargs):
    with pytest.raises(ValueError, match="stride 1, padding 1"):
        WinogradConv3x3.from_conv(torch.nn.Conv2d(8, 8, 3, **kwargs))
    with pytest.raises(ValueError, match=r"\(C_out, C_in, 3, 3\)"):
        WinogradConv3x3(torch.zeros(8, 8, 5, 5))
    with pytest.raises(ValueError, match="output tile must be one of"):
        WinogradConv3x3(torch.zeros(8, 8, 3, 3), tile=3)


@pytest.mark.parametrize("stride", [1, 2])
def test_fused_basic_block_equals_the_block(stride):
    torch.manual_seed(2)
    down = None
    if stride == 2:
        down = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 1, stride=2, bias=False), torch.nn.BatchNorm2d(32))
    block = trained_like(BasicBlock(16, 32 if stride == 2 else 16, stride, down), bias_scale=0.1)
    fused = FusedBasicBlock.from_block(block, tile=4)
    assert isinstance(fused.conv2, WinogradConv3x3)
    assert isinstance(fused.conv1, WinogradConv3x3) == (stride == 1)  # stride-2 convs stay direct
    assert not [m for m in fused.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    x = torch.randn(2, 16, 14, 14)
    with torch.no_grad():
        ref = block(x)
        assert (fused(x) - ref).abs().max() < 1e-5 * max(1.0, float(ref.abs().max()))
        plain = FusedBasicBlock.from_block(block, tile=0)
        assert not [m for m in plain.modules() if isinstance(m, WinogradConv3x3)]
        assert (plain(x) - ref).abs().max() < 1e-5 * max(1.0, float(ref.abs().max()))


def test_winograd_onnx_export_matches_torch_with_dynamic_batch(tmp_path):
    pytest.importorskip("onnxruntime")
    from fer_perception.runtime.onnx_backend import OnnxModel, export_onnx

    torch.manual_seed(3)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1)
    module = torch.nn.Sequential(WinogradConv3x3.from_conv(conv, tile=4), torch.nn.ReLU()).eval()
    path = export_onnx(module, (1, 32, 14, 14), tmp_path / "w.onnx", output_names=["out"])
    sess = OnnxModel(path, device="cpu", threads=1)
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 32, 14, 14)).astype(np.float32)
        with torch.no_grad():
            ref = torch.relu(conv(torch.from_numpy(x))).numpy()
        got = sess.run(x)[0]
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() < 1e-5
