"""Layers the vocoders share: the weight-normalised convolution of WaveGlow's WN and of HiFi-GAN."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class WeightNormConv1d(nn.Module):
    """Conv1d, or ConvTranspose1d when `stride` > 1, whose weight is g * v / ||v|| (Salimans & Kingma,
    2016), the norm over all dimensions but the first.

    Parameters are named and ordered `bias`, `weight_g`, `weight_v` as with torch's legacy `weight_norm`, so
    NVIDIA's and jik876's keys load unchanged; `remove_weight_norm()` folds them into a plain `weight`. The
    convolution is 'same' (output length = input length, times `stride` when transposed).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1,
                 stride: int = 1) -> None:
        super().__init__()
        self.transposed = stride > 1
        self.stride = stride
        self.dilation = dilation
        # Transposed: (k - u) / 2 trimmed from each end; otherwise dilation * (k - 1) / 2 padded.
        self.padding = (kernel_size - stride) // 2 if self.transposed else dilation * (kernel_size - 1) // 2
        # torch's default initialisation (and its use of the RNG), which the references' weights start from:
        # HiFi-GAN's normal(0, 0.01) re-initialisation runs after weight_norm and only overwrites a derived tensor.
        module = nn.ConvTranspose1d if self.transposed else nn.Conv1d
        conv = module(in_channels, out_channels, kernel_size)
        assert conv.bias is not None  # built with bias=True
        self.bias = nn.Parameter(conv.bias.detach())
        self.weight_g = nn.Parameter(self._norm(conv.weight.detach()))
        self.weight_v = nn.Parameter(conv.weight.detach())

    @staticmethod
    def _norm(v: Tensor) -> Tensor:
        return v.norm(2, dim=tuple(range(1, v.dim())), keepdim=True)  # (first, 1, 1)

    @property
    def weight_normed(self) -> bool:
        return "weight_v" in self._parameters

    def compute_weight(self) -> Tensor:
        """(out, in, k), or (in, out, k) when transposed."""
        if not self.weight_normed:
            return self.weight
        return self.weight_v * (self.weight_g / self._norm(self.weight_v))

    def remove_weight_norm(self) -> None:
        if not self.weight_normed:
            return
        weight = self.compute_weight().detach()
        del self.weight_g, self.weight_v
        self.weight = nn.Parameter(weight)

    def forward(self, x: Tensor) -> Tensor:
        if self.transposed:
            return F.conv_transpose1d(x, self.compute_weight(), self.bias, stride=self.stride, padding=self.padding)
        return F.conv1d(x, self.compute_weight(), self.bias, padding=self.padding, dilation=self.dilation)
