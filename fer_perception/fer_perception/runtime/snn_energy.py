"""Analytical energy estimate of one Spiking-FER window, SNN vs CNN baseline (the paper's method).

Both numbers are the usual 45 nm CMOS operation-count estimate used by the Spiking-FER paper:

- **SNN**: every spike that reaches a synapse costs one accumulate (AC, ``E_AC = 0.9 pJ``). The synaptic
  operations (SOPs) of a layer are ``sum over its input values x of x * fan_out``, where an input value is a
  spike count (binary spikes, SEW-ADD sums of spikes, or the binary event frames for the first conv, whose
  input is also binary and so counts as ACs), and ``fan_out`` is the number of synapses leaving that input
  position: ``C_out x`` (number of output positions whose receptive field holds it; ``k^2/s^2`` away from the
  borders, computed exactly at the borders). The pooled features reach ``encoder.fc`` (512 synapses per
  spike). The readout ``fc`` multiplies real-valued membrane potentials once per window: those are MACs
  (``E_MAC = 4.6 pJ``). ``E_SNN = SOPs * 0.9 pJ + MACs_readout * 4.6 pJ``.
- **CNN**: ``E_CNN = MACs * 4.6 pJ`` with the MACs of :class:`CNNBaseline` (every conv and the fc, dense)
  for the same window size.

Neuron updates, BN (folded into the convs at inference), pooling and memory traffic are not counted, as in
the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Dict

import numpy as np

__all__ = [
    "E_AC_PJ",
    "E_MAC_PJ",
    "EnergyEstimate",
    "conv_out_size",
    "fanout_map",
    "cnn_baseline_macs",
]

#: Energy of one 32-bit float accumulate (45 nm), picojoules.
E_AC_PJ = 0.9
#: Energy of one 32-bit float multiply-accumulate (45 nm), picojoules.
E_MAC_PJ = 4.6


def conv_out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output side length of a convolution or pooling window."""
    return (size + 2 * padding - kernel) // stride + 1


@lru_cache(maxsize=256)
def _fanout_1d(size: int, kernel: int, stride: int, padding: int) -> np.ndarray:
    out = conv_out_size(size, kernel, stride, padding)
    counts = np.zeros(size, dtype=np.float64)
    for o in range(out):
        lo = o * stride - padding
        counts[max(lo, 0):min(lo + kernel, size)] += 1
    counts.setflags(write=False)
    return counts


def fanout_map(height: int, width: int, kernel: int, stride: int, padding: int) -> np.ndarray:
    """``(H, W)``: how many output positions of a conv each input position feeds (times ``C_out`` = fan-out)."""
    return np.outer(_fanout_1d(height, kernel, stride, padding), _fanout_1d(width, kernel, stride, padding))


@lru_cache(maxsize=64)
def cnn_baseline_macs(n_classes: int = 6, timesteps: int = 6, width: float = 1.0, input_size: int = 128,
                      in_channels: int = 2) -> int:
    """MACs of one :class:`CNNBaseline` forward (one window, one face): every conv (dense) and the fc."""
    from ..models.spiking_fer import channel_widths

    c1, c2, c3, c4 = channel_widths(width)
    macs = 0
    size = input_size

    def conv(cin: int, cout: int, k: int, s: int, p: int) -> None:
        nonlocal macs, size
        size = conv_out_size(size, k, s, p)
        macs += cout * size * size * cin * k * k

    conv(in_channels * timesteps, c1, 7, 2, 3)
    size = conv_out_size(size, 3, 2, 1)  # max pool
    cin = c1
    for cout, stride in ((c1, 1), (c2, 2), (c3, 2), (c4, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            conv(cin, cout, 3, s, 1)
            conv(cout, cout, 3, 1, 1)
            if s != 1 or cin != cout:
                macs += cout * size * size * cin  # 1x1 downsample at the block's output size
            cin = cout
    macs += c4 * n_classes
    return int(macs)


@dataclass
class EnergyEstimate:
    """Energy of one window per face: SNN (from its actual spikes) and the CNN baseline (dense MACs)."""

    snn_sops: np.ndarray  #: (B,) synaptic operations (accumulates) of the SNN per face
    snn_macs: int  #: MACs the SNN still does per face (the readout on membrane potentials)
    cnn_macs: int  #: MACs of the CNN baseline per face for the same window size
    sops_per_layer: Dict[str, np.ndarray]  #: (B,) SOPs into each synaptic layer (conv1, layerX.Y.convZ, ...)
    e_ac_pj: float = E_AC_PJ
    e_mac_pj: float = E_MAC_PJ

    @property
    def snn_joules(self) -> np.ndarray:
        """(B,) estimated SNN energy per window, joules."""
        return (self.snn_sops * self.e_ac_pj + self.snn_macs * self.e_mac_pj) * 1e-12

    @property
    def cnn_joules(self) -> float:
        """Estimated CNN-baseline energy per window, joules."""
        return self.cnn_macs * self.e_mac_pj * 1e-12

    @property
    def ratio(self) -> np.ndarray:
        """(B,) how many times less energy the SNN needs than the CNN (``E_CNN / E_SNN``)."""
        return self.cnn_joules / np.maximum(self.snn_joules, 1e-30)

    def to_dict(self) -> Dict[str, object]:
        """Plain-data summary (lists), for JSON reports."""
        return {
            "snn_sops": self.snn_sops.tolist(),
            "snn_macs": self.snn_macs,
            "snn_joules": self.snn_joules.tolist(),
            "cnn_macs": self.cnn_macs,
            "cnn_joules": self.cnn_joules,
            "ratio": self.ratio.tolist(),
            "e_ac_pj": self.e_ac_pj,
            "e_mac_pj": self.e_mac_pj,
        }
