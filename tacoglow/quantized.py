"""Int8 convolutions for CPU inference (`HiFiGAN.infer(precision="int8")`): oneDNN's quantized kernels with
int8 weights and 8-bit activations, int32 accumulation and float32 results.

Weights are quantized once, symmetrically per output channel (scale max|w_c| / 63), and prepacked in oneDNN's
layout. Activations are quantized per call, per tensor, asymmetrically over [min(x, 0), max(x, 0)] (255 steps,
so nothing clips: the scale follows each input, no calibration). The result comes back dequantized in float32,
so there is no output scale to choose either. Without native int8 dot products (AVX-512 VNNI, AMX) the kernels
still use AVX2's 8-bit multiply-adds, about 1.7 times the float32 convolution rate on wide layers.

Not on AMX. Where the CPU has AMX (Intel Xeon since Sapphire Rapids), oneDNN picks its AMX kernels for these
long 1-D convolutions, and they are a trap: building the primitive for each new input length took 25-50 s per
sentence, and every such primitive stayed in oneDNN's cache with 0.2-0.9 GB of its own (HiFi-GAN V1 on one
5-second sentence: 9.5 GB; two such processes ran out of 24 GB). Capped below AMX, the same CPU runs them on
AVX-512 VNNI: 0.7 s for that sentence's first call, 0.4 s for the next of the same length, and each new
length keeps 0.1-0.2 GB in the cache.
oneDNN reads its cap from the environment once, before its first primitive, so the command line's
`synthesize` and `serve` set it first thing (:func:`avoid_amx`); elsewhere, on an AMX CPU without the cap,
int8 is not available and voices that ask for it run in fp32.
"""
from __future__ import annotations

import functools
import math
import os
import warnings

import torch
from torch import Tensor

__all__ = ["Int8Conv", "int8_conv_available", "int8_unavailable_reason", "avoid_amx", "cpu_has_amx",
           "cpu_flags", "int8_instruction_sets", "AMX_FREE_ISA"]

# Weight codes lie in [-63, 63], 7 bits: without VNNI, x86's 8-bit multiply-add (vpmaddubsw) sums pairs of
# uint8 x int8 products in int16, which 8-bit weights overflow (2 * 255 * 127 > 32767) and 7-bit ones cannot.
# Measured: 3-8% output error with 8-bit weights on small generators, 1% with 7-bit; V1 2.5% either way.
WEIGHT_MAX = 63


# The highest instruction set oneDNN knows below AMX (its ONEDNN_MAX_CPU_ISA names; DNNL_ is the older prefix).
AMX_FREE_ISA = "AVX512_CORE_FP16"
_ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")  # the first one set wins, as in oneDNN
_BELOW_AMX = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
              "AVX512_CORE_BF16", "AVX512_CORE_FP16"}


# Linux's names of the CPU's 8-bit dot-product instructions, and how reports name them.
_INT8_FLAGS = (("avx2", "AVX2"), ("avx_vnni", "AVX-VNNI"), ("avx512_vnni", "AVX-512 VNNI"), ("amx_int8", "AMX"))


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The first CPU's feature flags as Linux reports them; empty where there is no such file (other systems)."""
    try:
        with open(path, encoding="ascii", errors="replace") as info:
            return next((frozenset(line.split(":", 1)[1].split()) for line in info
                         if line.startswith("flags") and ":" in line), frozenset())
    except OSError:
        return frozenset()


@functools.cache
def cpu_has_amx() -> bool:
    """Whether the CPU has AMX's int8 tiles, as Linux reports them (elsewhere: assumed not)."""
    return "amx_int8" in cpu_flags()


def int8_instruction_sets(flags: frozenset[str] | None = None) -> list[str]:
    """The CPU's 8-bit multiply-add instruction sets by name ("AVX2", "AVX-512 VNNI", "AMX"), for reports: int8
    speed, and the recognisers' int8 results, differ between them."""
    flags = cpu_flags() if flags is None else flags
    return [name for flag, name in _INT8_FLAGS if flag in flags]


def _isa_cap() -> str:
    return next((os.environ[name] for name in _ISA_VARIABLES if os.environ.get(name)), "").upper()


def _on_amx() -> bool:
    """Whether oneDNN would pick AMX here: the CPU has it and the environment names no cap below it."""
    return cpu_has_amx() and _isa_cap() not in _BELOW_AMX


def avoid_amx() -> None:
    """Caps oneDNN below AMX for this process, where the CPU has AMX and the environment names no cap of its own.
    It takes effect only before torch's first oneDNN operation: call it first thing (the command line does)."""
    if cpu_has_amx() and not _isa_cap():
        os.environ["ONEDNN_MAX_CPU_ISA"] = AMX_FREE_ISA


def int8_conv_available() -> bool:
    """Whether int8 convolutions run well here: this torch build has oneDNN's quantized convolutions (x86 CPU
    builds do), and oneDNN is kept off AMX (no AMX, or a cap below it; see :func:`avoid_amx`)."""
    return ("onednn" in torch.backends.quantized.supported_engines
            and hasattr(torch.ops.onednn, "qconv_prepack") and hasattr(torch.ops.onednn, "qconv2d_pointwise")
            and not _on_amx())


def int8_unavailable_reason() -> str:
    """Why :func:`int8_conv_available` is False, and what to do, for an error message."""
    if _on_amx():
        return (f"on this CPU oneDNN would run int8 convolutions on AMX, which takes tens of seconds and gigabytes "
                f"per new input length; set ONEDNN_MAX_CPU_ISA={AMX_FREE_ISA} before the first torch operation "
                f"(`tacoglow synthesize` and `serve` do; ONEDNN_MAX_CPU_ISA is {_isa_cap() or 'unset'} here), "
                "or use 'fp32'")
    return "it needs a CPU build of torch with oneDNN's quantized convolutions; use 'fp32'"


def quantize_activations(x: Tensor) -> tuple[Tensor, float, int]:
    """Channels-last float (B, C, 1, L) -> (uint8 (B, C, 1, L) channels-last, scale, zero point), with
    x ~= scale * (q - zero_point) and the whole range of x representable."""
    flat = x.permute(0, 2, 3, 1).reshape(-1)  # a view when x is channels-last; reductions over it are vectorized
    low, high = torch.aminmax(flat)
    low_, high_ = min(float(low), 0.0), max(float(high), 0.0)
    if not math.isfinite(high_ - low_):
        raise ValueError(f"int8 convolution input has values in [{float(low)}, {float(high)}]: NaN or infinity "
                         "cannot be quantized (check the mel, or use precision 'fp32')")
    scale = max((high_ - low_) / 255.0, 1e-12)
    zero_point = min(255, max(0, round(-low_ / scale)))
    with warnings.catch_warnings():  # quantized tensors are deprecated, but their quantizer is the fast one
        warnings.simplefilter("ignore")
        q = torch.quantize_per_tensor(flat, scale, zero_point, torch.quint8)
    # Its bytes as a plain uint8 tensor, without a copy (`int_repr` copies element by element, ten times slower).
    codes = torch.empty(0, dtype=torch.uint8).set_(q.untyped_storage(), 0, (flat.numel(),), (1,))
    b, c, _, length = x.shape
    return codes.view(b, 1, length, c).permute(0, 3, 1, 2), scale, zero_point


class Int8Conv:
    """A fixed 'same' 1-D convolution in int8: (B, C_in, 1, L) float32 channels-last -> (B, C_out, 1, L)
    float32 channels-last, weight (C_out, C_in, 1, k), bias (C_out,)."""

    def __init__(self, weight: Tensor, bias: Tensor, padding: int, dilation: int, length: int) -> None:
        """length: the input length the weight layout is chosen for (any length works)."""
        if not int8_conv_available():
            raise ValueError(f"precision 'int8' is not available: {int8_unavailable_reason()}")
        weight = weight.detach().float()
        self.scales = weight.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / WEIGHT_MAX  # (C_out,)
        codes = torch.round(weight / self.scales[:, None, None, None]).clamp_(-WEIGHT_MAX, WEIGHT_MAX).to(torch.int8)
        self.zero_points = torch.zeros(weight.size(0), dtype=torch.long)
        self.padding, self.dilation = padding, dilation
        # The input scale given here is only a hint for the layout; each call passes its own.
        self.packed = torch.ops.onednn.qconv_prepack(codes, self.scales, 1.0, 0, [1, 1], [0, padding],
                                                     [1, dilation], 1, [1, weight.size(1), 1, length])
        self.bias = bias.detach().float()

    def __call__(self, x: Tensor) -> Tensor:
        codes, scale, zero_point = quantize_activations(x)
        return torch.ops.onednn.qconv2d_pointwise(
            codes, scale, zero_point, self.packed, self.scales, self.zero_points, self.bias, [1, 1],
            [0, self.padding], [1, self.dilation], 1, 1.0, 0, torch.float32, "none", [], "")
