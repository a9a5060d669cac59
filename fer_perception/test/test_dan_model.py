"""DAN and ResNet: official key names/shapes, strict loading of official-format checkpoints, class orders,
forward semantics and the training losses."""

from __future__ import annotations

import os

import pytest
import torch

from fer_perception import labels as L
from fer_perception.errors import CheckpointError, ConfigError
from fer_perception.models.dan import DAN, AffinityLoss, PartitionLoss, classes_for, load_dan
from fer_perception.models.resnet import resnet18, resnet34
from model_helpers import trained_like


REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "reference",
                         "dan_affectnet8_state_dict.txt")

OFFICIAL_NAMES = {
    "affecnet8_epoch5_acc0.6209.pth": (8, L.AFFECTNET8_CLASSES),
    "affecnet7_epoch6_acc0.6569.pth": (7, L.AFFECTNET7_CLASSES),
    "rafdb_epoch21_acc0.897_bacc0.8275.pth": (7, L.RAFDB_CLASSES),
}


def _parse_reference(path):
    out = []
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        name, shape = line.split(" ", 1)
        out.append((name, tuple(int(v) for v in shape.strip("()").replace(" ", "").split(",") if v)))
    return out


@pytest.fixture(scope="module")
def dan8():
    torch.manual_seed(0)
    return DAN(num_class=8, num_head=4)


def _official_file(tmp_path, name, model):
    path = tmp_path / name
    torch.save({"iter": 5, "model_state_dict": model.state_dict(),
                "optimizer_state_dict": {"state": {}, "param_groups": []}}, path)
    return path


def test_dan_keys_and_shapes_match_official_manifest(dan8):
    ref = _parse_reference(REFERENCE)
    mine = [(k, tuple(v.shape)) for k, v in dan8.state_dict().items()]
    assert len(ref) == 275
    assert mine == ref


def test_dan_parameter_count_matches_paper(dan8):
    n = sum(p.numel() for p in dan8.parameters())
    assert 19.6e6 < n < 19.8e6  # docs/facts.md#dan: 19.7 M


def test_resnet_uses_torchvision_key_names_and_sizes():
    r18 = resnet18()
    keys = list(r18.state_dict())
    assert keys[:2] == ["conv1.weight", "bn1.weight"]
    for k in ("layer1.0.conv1.weight", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var",
              "layer4.1.bn2.num_batches_tracked", "fc.weight", "fc.bias"):
        assert k in keys
    assert "layer1.0.downsample.0.weight" not in keys
    # torchvision's published parameter counts
    assert sum(p.numel() for p in r18.parameters()) == 11_689_512
    assert sum(p.numel() for p in resnet34().parameters()) == 21_797_672
    assert r18(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


def test_resnet_rejects_bad_depth():
    from fer_perception.models.resnet import resnet

    with pytest.raises(ConfigError, match="depth"):
        resnet(50)


def test_dan_forward_returns_logits_features_heads():
    torch.manual_seed(0)
    m = DAN(num_class=7, num_head=4).eval()
    with torch.no_grad():
        logits, feats, heads = m(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7)
    assert feats.shape == (2, 512, 2, 2)
    assert heads.shape == (2, 4, 512)
    # heads are log-softmaxed across the head axis: exp sums to 1 over heads
    assert torch.allclose(heads.exp().sum(dim=1), torch.ones(2, 512), atol=1e-5)
    # logits = bn(fc(sum of heads))
    expect = m.bn(m.fc(heads.sum(dim=1)))
    assert torch.allclose(logits, expect, atol=1e-5)


def test_single_head_dan_skips_log_softmax():
    torch.manual_seed(0)
    m = DAN(num_class=7, num_head=1).eval()
    with torch.no_grad():
        _, feats, heads = m(torch.randn(1, 3, 64, 64))
        raw = m.cat_head0(feats)
    assert torch.allclose(heads[:, 0], raw)


@pytest.mark.parametrize("name", sorted(OFFICIAL_NAMES))
def test_official_checkpoint_format_loads_strictly_with_class_order(tmp_path, name):
    n, classes = OFFICIAL_NAMES[name]
    torch.manual_seed(1)
    src = DAN(num_class=n).eval()
    path = _official_file(tmp_path, name, src)
    model, names, info = load_dan(path)
    assert names == classes
    assert info["format"] == "official" and info["iter"] == 5
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x)[0], src(x)[0], atol=1e-5)


def test_module_prefix_is_stripped(tmp_path):
    src = DAN(num_class=8)
    state = {"module." + k: v for k, v in src.state_dict().items()}
    path = tmp_path / "affecnet8_wrapped.pth"
    torch.save({"iter": 1, "model_state_dict": state, "optimizer_state_dict": {}}, path)
    _, names, _ = load_dan(path)
    assert names == L.AFFECTNET8_CLASSES


def test_missing_and_misshapen_keys_are_named(tmp_path):
    state = DAN(num_class=7).state_dict()
    del state["cat_head2.ca.attention.3.bias"]
    state["cat_head0.sa.conv1x1.0.weight"] = torch.zeros(128, 512, 1, 1)
    path = tmp_path / "rafdb_broken.pth"
    torch.save({"iter": 1, "model_state_dict": state, "optimizer_state_dict": {}}, path)
    with pytest.raises(CheckpointError) as err:
        load_dan(path)
    msg = str(err.value)
    assert "cat_head2.ca.attention.3.bias" in msg and "cat_head0.sa.conv1x1.0.weight" in msg


def test_not_a_dan_file_and_missing_file(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"something": 1}, path)
    with pytest.raises(CheckpointError, match="not a DAN checkpoint"):
        load_dan(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_dan(tmp_path / "absent.pth")


def test_class_order_needs_a_hint_for_ambiguous_7_class_files(tmp_path):
    path = _official_file(tmp_path, "my_dan.pth", DAN(num_class=7))
    with pytest.raises(ConfigError, match="class order"):
        load_dan(path)
    _, names, _ = load_dan(path, classes="affectnet7")
    assert names == L.AFFECTNET7_CLASSES
    assert classes_for("x.pth", 7, "RAF-DB".replace("-", "")) == L.RAFDB_CLASSES
    with pytest.raises(ConfigError, match="unknown DAN class set"):
        classes_for("x.pth", 7, "fer2013")
    with pytest.raises(ConfigError, match="8 names"):
        classes_for("x.pth", 7, "affectnet8")


def test_affinity_loss_is_zero_at_centres_and_grows_with_distance():
    loss = AffinityLoss(num_class=3, feat_dim=4)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]))
    y = torch.tensor([0, 2])
    at_centres = loss.centers[y].detach().clone()
    assert float(loss(at_centres, y)) < 1e-9
    var_sum = float(loss.centers.var(dim=0).sum())
    off = at_centres + torch.tensor([[0.0, 0, 0, 1.0], [0.0, 0, 0, 2.0]])
    assert float(loss(off, y)) == pytest.approx((1.0 + 4.0) / 2 / var_sum, rel=1e-5)
    # a feature map (B, C, H, W) is average-pooled first
    fmap = off[:, :, None, None].expand(2, 4, 3, 3)
    assert float(loss(fmap, y)) == pytest.approx(float(loss(off, y)), rel=1e-6)


def test_partition_loss_rewards_diverse_heads():
    p = PartitionLoss()
    same = torch.ones(2, 4, 8) + 0.01 * torch.randn(2, 4, 8)
    diverse = torch.randn(2, 4, 8) * 3
    assert float(p(diverse)) < float(p(same))
    assert float(p(torch.randn(2, 1, 8))) == 0.0
    h = torch.randn(3, 4, 5)
    assert float(p(h)) == pytest.approx(float(torch.log(1 + 4 / h.var(dim=1).mean())), rel=1e-6)


def test_backbone_weights_map_into_dan_features(tmp_path):
    from fer_perception.train.dan import load_backbone_weights

    torch.manual_seed(3)
    r = resnet18()
    path = tmp_path / "resnet18_msceleb.pth"
    torch.save({"state_dict": r.state_dict()}, path)
    dan = DAN(num_class=7)
    load_backbone_weights(dan, str(path))
    assert torch.equal(dan.features[0].weight, r.conv1.weight)
    assert torch.equal(dan.features[7][1].bn2.running_mean, r.layer4[1].bn2.running_mean)
    bad = {k: v for k, v in r.state_dict().items() if not k.startswith("layer3.1")}
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="6.1.conv1.weight"):
        load_backbone_weights(dan, str(path))


def test_fused_spatial_attention_equals_the_three_branches():
    from fer_perception.models.dan import FusedSpatialAttention, SpatialAttention

    torch.manual_seed(0)
    sa = trained_like(SpatialAttention(), bias_scale=0.1)
    fused = FusedSpatialAttention.from_spatial_attention(sa)
    x = torch.randn(3, 512, 7, 7)
    with torch.no_grad():
        ref, got = sa(x), fused(x)
    # equal up to float32 rounding: within 1e-5 of the output's scale (summation order differs)
    assert (ref - got).abs().max() < 1e-5 * ref.abs().max()
    assert len(list(fused.modules())) == 4  # 1x1 conv, one 3x3 conv, ReLU: no BatchNorm left


def test_fuse_for_inference_keeps_outputs_and_leaves_the_model_alone():
    from fer_perception.models.dan import FusedSpatialAttention, fuse_for_inference

    torch.manual_seed(0)
    m = trained_like(DAN(num_class=8, num_head=4), bias_scale=0.1)
    with torch.no_grad():
        m.fc.weight.mul_(0.0002)  # logits of order 1-10
    keys = {k: v.clone() for k, v in m.state_dict().items()}
    fused = fuse_for_inference(m)
    assert all(isinstance(getattr(fused, f"cat_head{i}").sa, FusedSpatialAttention) for i in range(4))
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        ref, got = m(x), fused(x)
    for r, g in zip(ref, got):  # logits, feature map, heads: within 1e-5 of each output's scale
        assert (r - g).abs().max() < 1e-5 * max(1.0, float(r.abs().max()))
    assert ref[0].abs().max() < 10 and (ref[0] - got[0]).abs().max() < 1e-5
    # the training model and its official state_dict layout are untouched
    assert list(m.state_dict()) == list(keys) and all(torch.equal(m.state_dict()[k], v) for k, v in keys.items())
    assert isinstance(m.cat_head0.sa.conv_1x3, torch.nn.Sequential)
    result = DAN(num_class=8, num_head=4).load_state_dict(m.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("num_head", [4, 1])
def test_inference_logits_equals_the_official_model(num_head):
    """Heads batched (one 1x1 conv, one grouped 3x3 conv, pooling as a matmul), BatchNorms folded: same logits."""
    from fer_perception.models.dan import FusedHeads, inference_logits

    torch.manual_seed(0)
    m = trained_like(DAN(num_class=7, num_head=num_head), bias_scale=0.1)
    with torch.no_grad():
        m.fc.weight.mul_(0.0002)  # logits of order 1-10
        for i in range(num_head):  # a channel attention whose gates differ from 0.5 (trained DAN heads do)
            getattr(m, f"cat_head{i}").ca.attention[3].bias.normal_(0.0, 1.0)
    keys = {k: v.clone() for k, v in m.state_dict().items()}
    fast = inference_logits(m)
    assert isinstance(fast.heads, FusedHeads) and fast.heads.conv.groups == num_head
    from fer_perception.models.winograd import WinogradConv3x3

    wino = [mod for mod in fast.modules() if isinstance(mod, WinogradConv3x3)]
    assert sorted(w.tile for w in wino) == [2] * 6 + [4] * 3  # layer2 F(4x4), layer3 and layer4 F(2x2)
    batchnorms = [mod for mod in fast.modules() if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    assert len(batchnorms) == 1 + 4  # only the stem and layer1 keep theirs (the ONNX export folds them)
    plain = inference_logits(m, winograd={})
    assert not [mod for mod in plain.modules() if isinstance(mod, WinogradConv3x3)]
    x = torch.randn(3, 3, 112, 112)  # layer2 14x14 (F(4x4) pads to 16), layer3 7x7, layer4 4x4
    with torch.no_grad():
        ref, got, got_plain = m(x)[0], fast(x), plain(x)
        ref64 = copy_double(m)(x.double())[0]
    assert 0.5 < float(ref.abs().max()) < 50
    scale = float(ref.abs().max())  # within 1e-5 of the logits' scale, like the other fused forms
    assert (ref - got).abs().max() < 1e-5 * scale and (ref - got_plain).abs().max() < 1e-5 * scale
    # no worse than the official graph's own float32 rounding (vs float64)
    assert (got.double() - ref64).abs().max() <= 3 * (ref.double() - ref64).abs().max() + 1e-6
    for bad in ({5: 2}, {2: 3}):
        with pytest.raises(ConfigError, match="stages 1..4 to output tiles 2 or 4"):
            inference_logits(m, winograd=bad)
    assert all(torch.equal(m.state_dict()[k], v) for k, v in keys.items())  # the source model is untouched
    assert isinstance(m.cat_head0.sa.conv_1x3, torch.nn.Sequential)


def copy_double(model):
    import copy

    return copy.deepcopy(model).double().eval()
