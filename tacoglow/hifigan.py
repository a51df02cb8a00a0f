"""HiFi-GAN (Kong, Kim & Bae, 2020): a GAN-trained convolutional vocoder, mel spectrogram -> waveform.

Block diagram of the generator, one class per box: `conv_pre` (kernel 7) lifts the mel to
`upsample_initial_channel` channels. Each of the stages then applies a leaky ReLU (slope 0.1), a transposed
convolution (`ups.i`, stride `upsample_rates[i]`) that halves the channels, and the multi-receptive-field
fusion: the mean of K residual blocks (`_ResBlock1` or `_ResBlock2`), one per kernel size and dilation list.
A final leaky ReLU, `conv_post` (kernel 7, one channel) and tanh give audio in [-1, 1].

State-dict keys and shapes are those of jik876/hifi-gan's `Generator` (resblocks flat, `resblocks.{i*K+j}`),
weight norm included (`weight_g`/`weight_v`); NVIDIA DeepLearningExamples nests them (`resblocks.{i}.{j}`),
which `tacoglow.checkpoint` flattens.

Inference (`infer`, and `forward` whenever autograd is off) runs the same arithmetic on weights prepared once:
weight norm folded, every convolution a oneDNN kernel on channels-last tensors with its activation, bias and
residual addition fused.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops
from .config import ConfigError, DictConfig
from .layers import WeightNormConv1d
from .quantized import Int8Conv, int8_conv_available, int8_unavailable_reason

__all__ = ["PRECISIONS", "HiFiGAN", "HiFiGANConfig", "HiFiGANDiscriminator", "HiFiGANMel", "discriminator_loss",
           "generator_loss", "feature_matching_loss"]

# The slope of every leaky ReLU inside the network. The one before conv_post is torch's default (0.01) in both
# reference implementations (`F.leaky_relu(x)` without a slope); trained weights depend on it, so it is kept.
LRELU_SLOPE = 0.1
FINAL_LRELU_SLOPE = 0.01

# Arithmetic of `HiFiGAN.infer`. "fp32" reproduces the reference up to float rounding; "bf16" rounds weights and
# activations to bfloat16 (about 1e-2 relative error; faster only on CPUs with native bfloat16, AVX-512 BF16 or AMX).
# "int8" (CPU only) runs the resblock convolutions, nearly all the arithmetic, on int8 weights and 8-bit activations
# (`tacoglow.quantized`; about 1.5 times faster even on AVX2; benchmarks/README.md gives its speed and error).
PRECISIONS = ("fp32", "bf16", "int8")

# Keys of the reference config files (jik876's config.json, NVIDIA's checkpoint "config") that build a generator.
_GENERATOR_KEYS = ("resblock", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
                   "resblock_kernel_sizes", "resblock_dilation_sizes")


@dataclass
class HiFiGANConfig(DictConfig):
    """Generator hyper-parameters; the defaults are V1 (jik876's config_v1.json, NVIDIA's published model).

    Field names are jik876's config.json keys, except `n_mel_channels` (its `num_mels`, named as everywhere
    else in tacoglow). `v1()`, `v2()` and `v3()` give the paper's three generators.
    """

    resblock: str = "1"  # "1": two convolutions per dilation (V1, V2); "2": one (V3)
    upsample_rates: list[int] = field(default_factory=lambda: [8, 8, 2, 2])  # product: samples per mel frame
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16, 4, 4])
    upsample_initial_channel: int = 512  # halved by every upsampling stage
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    n_mel_channels: int = 80

    @classmethod
    def v1(cls) -> HiFiGANConfig:
        """V1: 512 channels, 13.9 M parameters, the best quality (and NVIDIA's published model)."""
        return cls()

    @classmethod
    def v2(cls) -> HiFiGANConfig:
        """V2: V1 with 128 channels (0.9 M parameters)."""
        return cls(upsample_initial_channel=128)

    @classmethod
    def v3(cls) -> HiFiGANConfig:
        """V3: three stages, 256 channels, one convolution per dilation (1.5 M parameters), the fastest."""
        return cls(resblock="2", upsample_rates=[8, 8, 4], upsample_kernel_sizes=[16, 16, 8],
                   upsample_initial_channel=256, resblock_kernel_sizes=[3, 5, 7],
                   resblock_dilation_sizes=[[1, 2], [2, 6], [3, 12]])

    def __post_init__(self) -> None:
        def fail(message: str) -> None:
            raise ConfigError(f"invalid HiFiGANConfig: {message}")

        def positive_ints(name: str, values: Any) -> list[int]:
            if not isinstance(values, (list, tuple)) or not values or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
                fail(f"{name} must be a non-empty list of positive integers, got {values!r}")
            return list(values)

        if self.resblock in (1, 2):  # some configs write the type as a number
            self.resblock = str(self.resblock)
        if self.resblock not in ("1", "2"):
            fail(f"resblock must be '1' or '2', got {self.resblock!r}")
        for name in ("upsample_initial_channel", "n_mel_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                fail(f"{name} must be a positive integer, got {value!r}")
        self.upsample_rates = positive_ints("upsample_rates", self.upsample_rates)
        self.upsample_kernel_sizes = positive_ints("upsample_kernel_sizes", self.upsample_kernel_sizes)
        self.resblock_kernel_sizes = positive_ints("resblock_kernel_sizes", self.resblock_kernel_sizes)
        if not isinstance(self.resblock_dilation_sizes, (list, tuple)):
            fail(f"resblock_dilation_sizes must be a list of lists, got {self.resblock_dilation_sizes!r}")
        self.resblock_dilation_sizes = [positive_ints("resblock_dilation_sizes", d)
                                        for d in self.resblock_dilation_sizes]
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            fail(f"{len(self.upsample_rates)} upsample_rates but {len(self.upsample_kernel_sizes)} "
                 "upsample_kernel_sizes")
        for u, k in zip(self.upsample_rates, self.upsample_kernel_sizes):
            # Padding (k - u) / 2 on both sides makes each stage exactly u times longer.
            if k < u or (k - u) % 2:
                fail(f"upsample kernel {k} with rate {u}: the kernel must be at least the rate and differ from "
                     "it by an even number")
        if self.channels(len(self.upsample_rates) - 1) < 1:
            fail(f"{self.upsample_initial_channel} channels cannot be halved {len(self.upsample_rates)} times")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            fail(f"{len(self.resblock_kernel_sizes)} resblock_kernel_sizes but "
                 f"{len(self.resblock_dilation_sizes)} resblock_dilation_sizes")
        if any(k % 2 == 0 for k in self.resblock_kernel_sizes):
            fail(f"resblock_kernel_sizes must be odd (for 'same' padding), got {self.resblock_kernel_sizes}")
        layers = 3 if self.resblock == "1" else 2  # as many as the reference builds
        if any(len(d) != layers for d in self.resblock_dilation_sizes):
            fail(f"resblock type {self.resblock} takes {layers} dilations per kernel, got "
                 f"{self.resblock_dilation_sizes}")

    @property
    def hop_length(self) -> int:
        """Audio samples per mel frame: the product of the upsampling rates (256 for V1-V3)."""
        return math.prod(self.upsample_rates)

    def channels(self, stage: int) -> int:
        """Channels after upsampling stage `stage` (0-based)."""
        return self.upsample_initial_channel // 2 ** (stage + 1)

    @classmethod
    def from_reference(cls, d: dict[str, Any]) -> HiFiGANConfig:
        """From jik876's config.json or the "config" of NVIDIA's checkpoints: the six generator keys are
        required, `num_mels` is read when present, and the training and audio settings are left out."""
        missing = [k for k in _GENERATOR_KEYS if k not in d]
        if missing:
            raise ConfigError(f"HiFi-GAN config lacks {missing}")
        return cls(**{k: d[k] for k in _GENERATOR_KEYS}, n_mel_channels=d.get("num_mels", 80))

    def to_reference(self) -> dict[str, Any]:
        """The generator keys of jik876's config.json (and NVIDIA's checkpoint "config"), plus `num_mels`."""
        d = self.to_dict()
        return {**{k: d[k] for k in _GENERATOR_KEYS}, "num_mels": self.n_mel_channels}


class _ResBlock1(nn.Module):
    """Per dilation d: x + conv_k(lrelu(conv_{k,d}(lrelu(x)))), where conv_{k,d} (`convs1`) is dilated and
    conv_k (`convs2`) is not. (B, C, L) -> (B, C, L)."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(WeightNormConv1d(channels, channels, kernel_size, d) for d in dilations)
        self.convs2 = nn.ModuleList(WeightNormConv1d(channels, channels, kernel_size) for _ in dilations)

    def layers(self) -> list[list[WeightNormConv1d]]:
        """The convolutions of each residual layer, in order."""
        return [[c1, c2] for c1, c2 in zip(_convs(self.convs1), _convs(self.convs2))]

    def forward(self, x: Tensor) -> Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class _ResBlock2(nn.Module):
    """Per dilation d: x + conv_{k,d}(lrelu(x)). (B, C, L) -> (B, C, L)."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(WeightNormConv1d(channels, channels, kernel_size, d) for d in dilations)

    def layers(self) -> list[list[WeightNormConv1d]]:
        return [[c] for c in _convs(self.convs)]

    def forward(self, x: Tensor) -> Tensor:
        for c in self.convs:
            x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x


class HiFiGAN(nn.Module):
    """HiFi-GAN generator: `(batch, n_mel_channels, frames)` log-mel -> `(batch, 1, frames * hop_length)`
    audio in [-1, 1], loading jik876's and NVIDIA's checkpoints.

    Call `remove_weight_norm()` once before inference (`tacoglow.load_hifigan` does).
    """

    def __init__(self, config: HiFiGANConfig | None = None) -> None:
        super().__init__()
        config = HiFiGANConfig() if config is None else config
        self.config = config
        self.num_kernels = len(config.resblock_kernel_sizes)
        self.conv_pre = WeightNormConv1d(config.n_mel_channels, config.upsample_initial_channel, 7)
        self.ups = nn.ModuleList(
            WeightNormConv1d(config.channels(i - 1) if i else config.upsample_initial_channel, config.channels(i),
                              k, stride=u)
            for i, (u, k) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes)))
        block = _ResBlock1 if config.resblock == "1" else _ResBlock2
        self.resblocks = nn.ModuleList(
            block(config.channels(i), k, d)
            for i in range(len(self.ups))
            for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes))
        self.conv_post = WeightNormConv1d(config.channels(len(self.ups) - 1), 1, 7)

    def forward(self, mel: Tensor) -> Tensor:
        """mel `(batch, n_mel_channels, frames)` -> audio `(batch, 1, frames * hop_length)`.

        With autograd off (`torch.no_grad`, `torch.inference_mode`, or frozen parameters) this runs `infer`;
        otherwise the modules themselves, so that gradients flow.
        """
        if not _needs_autograd(self) and not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            return self.infer(mel)
        self._check(mel)
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))  # (B, C_i, L * u_i)
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x, FINAL_LRELU_SLOPE)))

    @torch.no_grad()
    def infer(self, mel: Tensor, precision: str = "fp32") -> Tensor:
        """`forward` for inference, without autograd: mel `(batch, n_mel_channels, frames)` -> audio
        `(batch, 1, frames * hop_length)` in mel's dtype.

        The same function as the modules compute, up to float rounding (relative error about 1e-7 in fp32);
        `precision="bf16"` computes in bfloat16 instead, `"int8"` the resblocks in int8 (see `PRECISIONS`).
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self._check(mel)
        if precision == "int8" and mel.device.type != "cpu":
            raise ValueError(f"precision 'int8' runs on the CPU (got a mel on {mel.device.type}); use 'fp32'")
        if precision == "int8" and not int8_conv_available():
            raise ValueError(f"precision 'int8' is not available: {int8_unavailable_reason()}")
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        # One set per precision, so that alternating precisions does not rebuild them.
        k: _Kernels = ops.cached(self, f"_kernels_{precision}", lambda: _Kernels(self, dtype, precision == "int8"))
        x = ops.as_conv_input(mel.to(dtype))  # (B, n_mel, 1, T)
        x = _conv(x, *k.pre, activation="leaky_relu", slope=LRELU_SLOPE)
        stages = len(k.ups)
        for i, (w, b, padding, rate) in enumerate(k.ups):
            x = _upsample(x, w, b, padding, rate)  # (B, C_i, 1, T * u_0 ... u_i)
            blocks = k.blocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            x = _fused_mrf(x, blocks, LRELU_SLOPE if i < stages - 1 else FINAL_LRELU_SLOPE)
        x = _conv(x, *k.post, activation="tanh")  # (B, 1, 1, L)
        return x.squeeze(2).to(mel.dtype).contiguous()

    @property
    def receptive_field(self) -> int:
        """Mel frames on each side of a frame that its audio depends on (rounded up): chunks vocoded with this
        much context on each side join into exactly the one-shot audio (`infer_chunks`)."""
        config = self.config
        rate = 1  # samples per mel frame at the current stage
        span = 3.0  # conv_pre, kernel 7, in frames
        per_block = [sum(d * (k - 1) // 2 + ((k - 1) // 2 if config.resblock == "1" else 0) for d in dilations)
                     for k, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes)]
        for u, k in zip(config.upsample_rates, config.upsample_kernel_sizes):
            span += (math.ceil((k - u) / 2 / u) + 1) / rate  # the transposed convolution, in its input samples
            rate *= u
            span += max(per_block) / rate  # the widest resblock of the stage
        return math.ceil(span + 3 / rate)  # conv_post, kernel 7

    def infer_chunks(self, mel: Tensor, chunk_frames: int = 64, first_frames: int | None = None,
                     context: int | None = None, precision: str = "fp32") -> Iterator[Tensor]:
        """`infer` in pieces: yields audio `(batch, 1, n * hop_length)` for consecutive runs of `n` frames
        (`first_frames`, default `chunk_frames`, then each twice the one before, up to `chunk_frames`: played as
        they come from a network a few times faster than real time, each is ready before the audio before it has
        played), each vocoded with `context` frames
        of mel on both sides (default `receptive_field`), so their concatenation equals `infer(mel)` up to
        float rounding while the first audio comes after a short run of the network."""
        self._check(mel)
        return self.infer_stream([mel], chunk_frames, first_frames, context, precision)

    def infer_stream(self, pieces: Iterable[Tensor], chunk_frames: int = 64, first_frames: int | None = None,
                     context: int | None = None, precision: str = "fp32",
                     engine: Callable[[Tensor], Tensor] | None = None) -> Iterator[Tensor]:
        """`infer_chunks` of a mel that arrives in pieces `(batch, n_mel, n)` (a Tacotron 2 still decoding): a
        chunk is vocoded as soon as the mel reaches `context` frames past its end, the rest when the pieces end
        (no frames at all: no audio). `engine`: what vocodes a chunk instead of `infer` (the same function on
        another runtime, e.g. `tacoglow.export.OnnxHiFiGAN.infer`)."""
        run = engine or (lambda chunk_mel: self.infer(chunk_mel, precision))
        if chunk_frames < 1 or (first_frames is not None and first_frames < 1):
            raise ValueError(f"chunk sizes must be at least one frame, got {chunk_frames} and {first_frames}")
        context = self.receptive_field if context is None else context
        hop = self.config.hop_length
        mel: Tensor | None = None  # the frames received from frame `offset` on
        offset, start, size, received = 0, 0, first_frames or chunk_frames, 0

        def chunk(end: int) -> Tensor:  # audio of frames [start, end), from the frames around them
            assert mel is not None
            left, right = max(0, start - context), min(received, end + context)
            audio = run(mel[:, :, left - offset:right - offset])
            return audio[:, :, (start - left) * hop:(end - left) * hop]

        for piece in pieces:
            if piece.dim() == 3 and piece.size(2) == 0:
                continue
            self._check(piece)
            mel = piece if mel is None else torch.cat((mel, piece), 2)
            received += piece.size(2)
            while received >= start + size + context:
                yield chunk(start + size)
                start, size = start + size, min(chunk_frames, 2 * size)
            keep = max(0, start - context) - offset  # frames no later chunk reads
            mel, offset = mel[:, :, keep:], offset + keep
        while start < received:
            end = min(received, start + size)
            yield chunk(end)
            start, size = end, min(chunk_frames, 2 * size)

    def _check(self, mel: Tensor) -> None:
        if mel.dim() != 3 or mel.size(1) != self.config.n_mel_channels or mel.size(2) == 0:
            raise ValueError(f"expected a mel of shape (batch, {self.config.n_mel_channels}, frames > 0), "
                             f"got {tuple(mel.shape)}")

    def __getstate__(self) -> dict[str, Any]:
        # The prepared kernels may hold oneDNN's opaque tensors, which cannot be copied or pickled; they are
        # rebuilt on first use.
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_kernels")}

    def remove_weight_norm(self) -> HiFiGAN:
        """Fold weight norm into plain weights (for inference); returns the model. Idempotent."""
        for module in self.modules():
            if isinstance(module, WeightNormConv1d):
                module.remove_weight_norm()
        return self


# ---- inference kernels ---------------------------------------------------------------------------------------

def _needs_autograd(model: nn.Module) -> bool:
    return torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters())


_TYPICAL_FRAMES = 200  # mel frames of a typical sentence, the input length the weight layouts are chosen for


class _Kernels:
    """A generator's weights for `HiFiGAN.infer`, weight norm folded, in one dtype: per convolution its weight
    (C_out, C_in, 1, k), bias (C_out,), padding and dilation.

    The mean over a stage's K resblocks is a sum here, its 1 / K folded into the weights of the next
    convolution (the next upsampling, or conv_post): the leaky ReLU in between commutes with a positive scale.
    Where oneDNN runs them, the weights are stored in its own blocked layout once (otherwise every call
    reorders them); elsewhere they are channels-last tensors. With `int8`, each resblock convolution's weight
    is an `Int8Conv` instead (its bias inside, the tuple's unused).
    """

    def __init__(self, model: HiFiGAN, dtype: torch.dtype, int8: bool = False) -> None:
        pack = _fused(torch.empty(0, dtype=dtype, device=model.conv_post.bias.device))

        def conv(w: Tensor, b: Tensor, padding: int, dilation: int, length: int,
                 scale: float = 1.0) -> tuple[Tensor, Tensor, int, int]:
            w = (w.detach() * scale).to(dtype).unsqueeze(2)  # (out, in, k) -> (out, in, 1, k)
            if pack:  # blocked for the batch-1 input of a typical sentence (any input shape works)
                try:
                    packed = torch._C._nn.mkldnn_reorder_conv2d_weight(  # type: ignore[call-arg]  # stubs lack input_size
                        w.contiguous().to_mkldnn(), [0, padding], [1, 1], [1, dilation], 1, [1, w.size(1), 1, length])
                    return packed, b.detach().to(dtype), padding, dilation
                except RuntimeError:  # a build without the reorder: oneDNN reorders the plain weight per call
                    pass
            return w.contiguous(memory_format=torch.channels_last), b.detach().to(dtype), padding, dilation

        mean = 1.0 / model.num_kernels
        length = _TYPICAL_FRAMES
        self.pre: tuple[Tensor, Tensor, int, int]
        self.post: tuple[Tensor, Tensor, int, int]
        self.ups: list[tuple[Tensor, Tensor, int, int]] = []  # weight, bias, padding, rate
        self.blocks: list[list[list[tuple[Tensor | Int8Conv, Tensor, int, int]]]] = []

        def block_conv(c: WeightNormConv1d, length: int) -> tuple[Tensor | Int8Conv, Tensor, int, int]:
            if int8:
                w = c.compute_weight().detach().unsqueeze(2)
                return Int8Conv(w, c.bias, c.padding, c.dilation, length), c.bias, c.padding, c.dilation
            return conv(c.compute_weight(), c.bias, c.padding, c.dilation, length)

        with torch.no_grad():
            pre = model.conv_pre
            self.pre = conv(pre.compute_weight(), pre.bias, pre.padding, 1, length)
            resblocks = cast(list[_ResBlock1 | _ResBlock2], list(model.resblocks))
            for i, up in enumerate(_convs(model.ups)):
                # Transposed: (in, out, 1, k) channels-last, for torch's oneDNN deconvolution.
                w = (up.compute_weight().detach() * (mean if i else 1.0)).to(dtype).unsqueeze(2)
                self.ups.append((w.contiguous(memory_format=torch.channels_last), up.bias.detach().to(dtype),
                                 up.padding, up.stride))
                length *= up.stride
                # Per resblock of the stage, per residual layer: its convolutions.
                self.blocks += [[[block_conv(c, length) for c in layer]
                                 for layer in block.layers()]
                                for block in resblocks[i * model.num_kernels:(i + 1) * model.num_kernels]]
            post = model.conv_post
            self.post = conv(post.compute_weight(), post.bias, post.padding, 1, length, mean)


def _convs(modules: nn.ModuleList) -> list[WeightNormConv1d]:
    return cast(list[WeightNormConv1d], list(modules))


def _fused(x: Tensor) -> bool:
    """Whether oneDNN's fused convolutions take `x` (a CPU build with them, and a dtype this CPU computes)."""
    if x.device.type != "cpu" or not ops.onednn_conv_available():
        return False
    return x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _conv(x: Tensor, weight: Tensor | Int8Conv, bias: Tensor, padding: int, dilation: int = 1,
          activation: str = "none", slope: float = 0.0) -> Tensor:
    """'Same' convolution (B, C_in, 1, L) -> (B, C_out, 1, L), then `activation`: "none", "leaky_relu" (with
    `slope`) or "tanh", in one pass where oneDNN is available."""
    if isinstance(weight, Int8Conv):
        y = weight(x)
    elif weight.is_mkldnn or _fused(x):
        scalars = [slope] if activation == "leaky_relu" else []
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, [0, padding], [1, 1], [1, dilation], 1,
                                                       activation, scalars, "")
    else:
        y = F.conv2d(x, weight, bias, padding=(0, padding), dilation=(1, dilation))
    if activation == "leaky_relu":
        return F.leaky_relu_(y, slope)
    return torch.tanh_(y) if activation == "tanh" else y


def _conv_add(x: Tensor, weight: Tensor | Int8Conv, bias: Tensor, padding: int, dilation: int, residual: Tensor,
              in_place: bool = False) -> Tensor:
    """residual + conv(x), in one pass where oneDNN is available; written into `residual` when `in_place`."""
    args: tuple[Any, ...] = ([0, padding], [1, 1], [1, dilation], 1, "add", None, None, [], None)
    if isinstance(weight, Int8Conv):
        y = weight(x)
    elif weight.is_mkldnn or _fused(x):
        if in_place:
            return torch.ops.mkldnn._convolution_pointwise_.binary(residual, x, weight, bias, *args)
        return torch.ops.mkldnn._convolution_pointwise.binary(x, residual, weight, bias, *args)
    else:
        y = F.conv2d(x, weight, bias, padding=(0, padding), dilation=(1, dilation))
    return residual.add_(y) if in_place else y.add_(residual)


def _upsample(x: Tensor, weight: Tensor, bias: Tensor, padding: int, rate: int) -> Tensor:
    """A stage's transposed convolution: (B, C_in, 1, L) -> (B, C_out, 1, L * rate), channels-last."""
    # As an ordinary convolution with the `rate` output phases as channels (which channels-last memory
    # interleaves for free) it needs 3 taps where 2 are used, and measured no faster.
    return F.conv_transpose2d(x, weight, bias, stride=(1, rate), padding=(0, padding))


def _fused_mrf(x: Tensor, blocks: list, slope: float) -> Tensor:
    """A stage's multi-receptive-field fusion, as a sum (the 1 / K is in the next weights), then the leaky
    ReLU that starts the next stage: (B, C, 1, L) -> (B, C, 1, L)."""
    first = F.leaky_relu(x, LRELU_SLOPE)  # every resblock's first layer reads this
    total = None
    for block in blocks:
        h = x
        for n, layer in enumerate(block):
            a = first if n == 0 else F.leaky_relu(h, LRELU_SLOPE)
            for w, b, padding, dilation in layer[:-1]:  # type 1's dilated convolution
                a = _conv(a, w, b, padding, dilation, "leaky_relu", LRELU_SLOPE)
            w, b, padding, dilation = layer[-1]
            if n < len(block) - 1:
                h = _conv_add(a, w, b, padding, dilation, h)  # h + conv(a), a new tensor: h may be x
            elif total is None:
                total = _conv_add(a, w, b, padding, dilation, h)
            else:
                _conv_add(a, w, b, padding, dilation, total.add_(h), in_place=True)
    assert total is not None  # a stage has at least one resblock
    return F.leaky_relu_(total, slope)


# ---- training: discriminators and losses ---------------------------------------------------------------------
# The paper's two discriminators (multi-period, multi-scale) and its three losses. Module and parameter names
# are jik876's (`mpd.discriminators.i.convs.j.weight_g`, ...), so its `do_NNNNNNNN` files load unchanged.


def _normed(conv: nn.Module, spectral: bool = False) -> nn.Module:
    """Weight norm (or spectral norm, Miyato et al., 2018) through torch's hooks, whose parameter names
    (`weight_g`/`weight_v`, `weight_orig`/`weight_u`/`weight_v`) are the reference's."""
    if spectral:
        return nn.utils.spectral_norm(conv)
    with warnings.catch_warnings():  # the hook form is deprecated, but only it keeps the reference's names
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(conv)


def _groups(groups: int, c_in: int, c_out: int) -> int:
    return math.gcd(groups, c_in, c_out)  # the paper's groups; fewer when narrowed channels cannot take them


class _PeriodDiscriminator(nn.Module):
    """Audio (B, 1, T) folded into (B, 1, T / p, p) columns, 2-D convolutions of kernel (5, 1) over each
    column: (scores (B, N), feature maps)."""

    def __init__(self, period: int, divisor: int = 1) -> None:
        super().__init__()
        self.period = period
        widths = [1] + [c // divisor for c in (32, 128, 512, 1024, 1024)]
        self.convs = nn.ModuleList(
            _normed(nn.Conv2d(c_in, c_out, (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0)))
            for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])))
        self.conv_post = _normed(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, t = x.shape
        if t % self.period:  # reflect-pad the end to whole periods
            x = F.pad(x, (0, self.period - t % self.period), "reflect")
        return _scores_and_features(self.convs, self.conv_post, x.view(b, c, -1, self.period))


def _scores_and_features(convs: nn.ModuleList, conv_post: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """A discriminator's layers, leaky ReLU after each but the last: its scores, flattened to (B, N), and every
    layer's output (for the feature-matching loss)."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        features.append(x)
    x = conv_post(x)
    features.append(x)
    return x.flatten(1), features


class _ScaleDiscriminator(nn.Module):
    """Strided, grouped 1-D convolutions over audio (B, 1, T): (scores (B, N), feature maps)."""

    # (out channels, kernel, stride, groups) per layer, the paper's
    LAYERS = ((128, 15, 1, 1), (128, 41, 2, 4), (256, 41, 2, 16), (512, 41, 4, 16), (1024, 41, 4, 16),
              (1024, 41, 1, 16), (1024, 5, 1, 1))

    def __init__(self, spectral: bool = False, divisor: int = 1) -> None:
        super().__init__()
        convs, c_in = [], 1
        for c_out, k, stride, groups in self.LAYERS:
            c_out //= divisor
            convs.append(_normed(nn.Conv1d(c_in, c_out, k, stride, groups=_groups(groups, c_in, c_out),
                                           padding=(k - 1) // 2), spectral))
            c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.conv_post = _normed(nn.Conv1d(c_in, 1, 3, 1, padding=1), spectral)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        return _scores_and_features(self.convs, self.conv_post, x)


class _MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), divisor: int = 1) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(_PeriodDiscriminator(p, divisor) for p in periods)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        outputs = [d(x) for d in self.discriminators]
        return [o[0] for o in outputs], [o[1] for o in outputs]


class _MultiScaleDiscriminator(nn.Module):
    """Three scale discriminators on audio, x2 and x4 average-pooled; the first with spectral norm."""

    def __init__(self, divisor: int = 1) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(_ScaleDiscriminator(i == 0, divisor) for i in range(3))
        self.meanpools = nn.ModuleList(nn.AvgPool1d(4, 2, padding=2) for _ in range(2))

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        scores, features = [], []
        for i, d in enumerate(self.discriminators):
            if i:
                x = self.meanpools[i - 1](x)
            score, feature = d(x)
            scores.append(score)
            features.append(feature)
        return scores, features


class HiFiGANDiscriminator(nn.Module):
    """Both of the paper's discriminators: audio (B, 1, T) -> one score tensor and one list of feature maps
    per sub-discriminator (5 periods 2, 3, 5, 7, 11, then 3 scales). ``divisor`` narrows every layer (1: the
    paper's widths, 70.7 M parameters; larger for tests)."""

    def __init__(self, divisor: int = 1) -> None:
        super().__init__()
        self.mpd = _MultiPeriodDiscriminator(divisor=divisor)
        self.msd = _MultiScaleDiscriminator(divisor=divisor)

    def forward(self, audio: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        period_scores, period_features = self.mpd(audio)
        scale_scores, scale_features = self.msd(audio)
        return period_scores + scale_scores, period_features + scale_features


def discriminator_loss(real: list[Tensor], generated: list[Tensor]) -> Tensor:
    """Least-squares GAN (Mao et al., 2017): real scores pulled to 1, generated ones to 0, summed over the
    sub-discriminators."""
    return torch.stack([((1 - r.float()) ** 2).mean() + (g.float() ** 2).mean() for r, g in zip(real, generated)]).sum()


def generator_loss(generated: list[Tensor]) -> Tensor:
    """Least-squares GAN, the generator's side: generated scores pulled to 1."""
    return torch.stack([((1 - g.float()) ** 2).mean() for g in generated]).sum()


def feature_matching_loss(real: list[list[Tensor]], generated: list[list[Tensor]]) -> Tensor:
    """Mean L1 between real and generated feature maps, summed over layers and sub-discriminators, x2 (the
    paper's lambda_fm)."""
    return 2 * torch.stack([(r.detach().float() - g.float()).abs().mean() for rs, gs in zip(real, generated)
                            for r, g in zip(rs, gs)]).sum()


class HiFiGANMel(nn.Module):
    """HiFi-GAN's own log-mel features, those its mel loss compares: audio (B, T) -> (B, n_mel, T // hop).

    They differ from NVIDIA's Tacotron 2 features (`tacoglow.audio.mel_spectrogram`): (n_fft - hop) / 2
    samples of reflect padding and no centring (frames half a hop later, one fewer), and magnitudes
    sqrt(re^2 + im^2 + 1e-9), which keeps the gradient finite at silence. ``fmax`` None: the full band, as
    the loss uses (jik876's fmax_for_loss).
    """

    mel_basis: Tensor  # (n_mel, n_fft // 2 + 1)
    window: Tensor  # (win_length,) periodic Hann

    def __init__(self, sampling_rate: int = 22050, n_fft: int = 1024, hop_length: int = 256, win_length: int = 1024,
                 n_mels: int = 80, fmin: float = 0.0, fmax: float | None = None) -> None:
        super().__init__()
        import librosa  # slow to import: only when training

        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        basis = librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        self.register_buffer("mel_basis", torch.from_numpy(basis).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        with torch.autocast(audio.device.type, enabled=False):
            pad = (self.n_fft - self.hop_length) // 2
            x = F.pad(audio.float().unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
            spec = torch.stft(x, self.n_fft, self.hop_length, self.win_length, self.window, center=False,
                              return_complex=True)
            magnitude = torch.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-9)
            return torch.log(torch.clamp(self.mel_basis @ magnitude, min=1e-5))
