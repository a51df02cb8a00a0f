"""CPU kernels shared by the models' generation paths: functions of tensors, `PackedLinear` (a fixed weight
stored for fast products), plus `cached`, the one parameter-keyed cache (stored on the module) of the
weights they prepare once."""
from __future__ import annotations

import itertools
import warnings
from typing import Any, Callable, Generator, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

_ACTIVATIONS = {"none": lambda x: x, "relu": F.relu, "tanh": torch.tanh}
# How a PackedLinear stores its weight. "fp32" reproduces the reference (up to float rounding); the others
# trade a little accuracy for speed: "fp16" and "bf16" keep the weights in 16 bits, "int8" in 8 bits with
# 8-bit activations (benchmarks/inference.py reports the error of each on Tacotron 2's decoder).
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
_R = TypeVar("_R")


def run_to_end(steps: Generator[Any, None, _R]) -> _R:
    """What a generator returns once run through: the whole-utterance form of a streaming call."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def cached(module: torch.nn.Module, name: str, build: Callable[[], Any], extra: tuple = ()) -> Any:
    """build(), kept on ``module`` (attribute ``name``, not a submodule or buffer) until ``extra`` or one of
    its parameters or buffers changes: new storage, dtype or device, or an in-place update through
    autograd-visible tensors such as an optimizer step or ``load_state_dict`` (writes through ``.data``
    bypass version counters and are not seen). Kept out of the state dict; a pickled whole module carries
    it, and the key rebuilds it after loading."""
    key = extra + tuple((t.data_ptr(), t._version, t.dtype, t.device)
                        for t in itertools.chain(module.parameters(), module.buffers()))
    entry = module.__dict__.get(name)
    if entry is None or entry[0] != key:
        entry = (key, build())
        module.__dict__[name] = entry
    return entry[1]


def fbgemm_available() -> bool:
    """Whether this torch build has fbgemm, which the fp16 and int8 products of `PackedLinear` need (x86 CPUs)."""
    return "fbgemm" in torch.backends.quantized.supported_engines


def onednn_conv_available() -> bool:
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise_"))


def conv_weight(weight: Tensor) -> Tensor:
    """A Conv1d weight (C_out, C_in, k) in the layout `conv` takes: (C_out, C_in, 1, k), channels-last."""
    return weight.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)


def fold_batch_norm(conv: torch.nn.Conv1d, bn: torch.nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """A convolution followed by batch norm in eval mode as one convolution for `conv`: batch norm's affine map
    (x - mean) / sqrt(var + eps) * gamma + beta folded into the weight and bias (float rounding apart, the
    same function; one pass over the activations instead of two). Returns the (C_out, C_in, 1, k)
    channels-last weight and the (C_out,) bias, detached."""
    mean, var = bn.running_mean, bn.running_var
    assert mean is not None and var is not None, "batch norm without running statistics"
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(mean)
        return (conv_weight(conv.weight * scale[:, None, None]),
                ((bias - mean) * scale + bn.bias).detach())


def use_fused_convolutions(module: torch.nn.Module, x: Tensor) -> bool:
    """Whether ``module`` runs its folded, fused convolutions on ``x``: generation on CPU in fp32 with oneDNN.
    Not with gradients on (the folded weights are detached and the fused kernel has no backward), nor while
    tracing or compiling, where the portable modules are what an exported graph must record."""
    return (not module.training and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype == torch.float32 and onednn_conv_available() and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling())


def as_conv_input(x: Tensor) -> Tensor:
    """(B, C, L) -> (B, C, 1, L) channels-last (time-major), the layout `conv` reads and writes."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def conv(x: Tensor, weight: Tensor, bias: Tensor | None, dilation: int = 1, out: Tensor | None = None,
         activation: str = "none") -> Tensor:
    """'Same' 1-D convolution of (B, C_in, 1, L) by a (C_out, C_in, 1, k) weight -> (B, C_out, 1, L).

    With `out`, the result is added to `out` in place (one pass instead of a convolution and an addition);
    otherwise `activation` ("none", "relu", "tanh") is applied in the same pass.

    The 1-D convolutions run as 2-D ones with a height of 1 because that is what oneDNN's fused kernels
    accept, on channels-last tensors (time-major, which its kernels run fastest and need for the fused
    addition). On CPU, oneDNN is used for every kernel size: for 1x1 convolutions torch would otherwise
    pick a BLAS GEMM that reaches less than half of oneDNN's rate on some CPUs (see benchmarks/README.md).
    """
    padding = dilation * (weight.size(3) - 1) // 2
    if x.device.type == "cpu" and x.dtype == torch.float32 and onednn_conv_available():
        args = ([0, padding], [1, 1], [1, dilation], 1)
        if out is None:
            return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *args, activation, [], "")
        return torch.ops.mkldnn._convolution_pointwise_.binary(out, x, weight, bias, *args, "add", None, None, [],
                                                                None)
    y = F.conv2d(x, weight, bias, padding=(0, padding), dilation=(1, dilation))
    return _ACTIVATIONS[activation](y) if out is None else out.add_(y)


def onednn_linear_available() -> bool:
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


class PackedLinear:
    """y = x @ weight.T + bias for one fixed weight (out, in), stored for fast products with a few rows:
    x (..., in) -> y (..., out), in x's dtype.

    In fp32, small weights use the plain product (``F.linear``, as the modules do); large ones on CPU are
    pre-blocked for oneDNN, whose skinny products read them about twice as fast as the BLAS
    GEMV. The reduced precisions store the weight in fewer bits: "fp16" (fbgemm, fp32 accumulation),
    "bf16" (oneDNN; inputs rounded to bf16 too), "int8" (fbgemm dynamic quantization: per-row int8
    weights, inputs quantized per call). ``kind`` says which product runs: "plain", "onednn" or the precision.
    """

    _LARGE = 1 << 19  # elements; below this the call overhead matters more than the weight traffic
    _ROWS_HINT = 4  # oneDNN's blocking for "a few rows": as fast at batch 1 as a batch-1 hint, and faster above

    def __init__(self, weight: Tensor, bias: Tensor | None, precision: str = "fp32", portable: bool = False):
        """portable: fp32 plain products only, which tracing and ONNX export can record."""
        self.weight = weight.detach()
        self.bias = None if bias is None else bias.detach()
        self.kind = "plain"
        cpu = weight.device.type == "cpu"
        if precision == "fp32":
            if (cpu and not portable and weight.numel() >= self._LARGE and weight.dtype == torch.float32
                    and onednn_linear_available()):
                try:
                    self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, self._ROWS_HINT)
                    self.kind = "onednn"
                except RuntimeError:  # an unusual build: the plain product is exact too
                    pass
        elif precision == "bf16":
            self.kind, self._bias16 = "bf16", None if self.bias is None else self.bias.bfloat16()
            self._packed, self._onednn = self.weight.bfloat16(), False
            if cpu and onednn_linear_available():
                try:
                    self._packed = torch.ops.mkldnn._reorder_linear_weight(self._packed, self._ROWS_HINT)
                    self._onednn = True
                except RuntimeError:  # oneDNN's bf16 products need AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT
                    pass
        elif precision in ("fp16", "int8"):
            if not cpu or not fbgemm_available():
                raise ValueError(f"precision {precision!r} needs a CPU build of torch with fbgemm; use 'fp32'"
                                 f"{'' if cpu else ' or move the model to the CPU'}")
            weight32 = self.weight.float()
            bias32 = None if self.bias is None else self.bias.float()
            with warnings.catch_warnings():  # quantized tensors are deprecated but still the CPU int8 route
                warnings.simplefilter("ignore")
                if precision == "fp16":
                    self._packed = torch.ops.quantized.linear_prepack_fp16(weight32, bias32)
                else:
                    scales = weight32.abs().amax(dim=1).clamp_min(1e-12) / 127.0
                    zero_points = torch.zeros(weight32.size(0), dtype=torch.long)
                    qweight = torch.quantize_per_channel(weight32, scales.double(), zero_points, 0, torch.qint8)
                    self._packed = torch.ops.quantized.linear_prepack(qweight, bias32)
            self.kind = precision
        else:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")

    def __call__(self, x: Tensor) -> Tensor:
        kind = self.kind
        if kind == "plain":
            return F.linear(x, self.weight, self.bias)
        if kind == "onednn":
            return torch.ops.mkldnn._linear_pointwise(x, self._packed, self.bias, "none", [], "")
        if kind == "bf16":
            if self._onednn:
                y = torch.ops.mkldnn._linear_pointwise(x.bfloat16(), self._packed, self._bias16, "none", [], "")
            else:
                y = F.linear(x.bfloat16(), self._packed, self._bias16)
            return y.to(x.dtype)
        if kind == "fp16":
            return torch.ops.quantized.linear_dynamic_fp16(x.float(), self._packed).to(x.dtype)
        return torch.ops.quantized.linear_dynamic(x.float(), self._packed).to(x.dtype)
