"""CPU kernels shared by the models' generation paths: functions of tensors, plus `cached`, the one
parameter-keyed cache (stored on the module) of the weights they prepare once."""
from __future__ import annotations

import itertools
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

_ACTIVATIONS = {"none": lambda x: x, "relu": F.relu, "tanh": torch.tanh}


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


def onednn_conv_available() -> bool:
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise_"))


def conv_weight(weight: Tensor) -> Tensor:
    """A Conv1d weight (C_out, C_in, k) in the layout `conv` takes: (C_out, C_in, 1, k), channels-last."""
    return weight.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)


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
