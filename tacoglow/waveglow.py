"""WaveGlow (Prenger, Valle & Catanzaro, 2019): a flow-based vocoder, mel spectrogram -> waveform.

Block diagram, one class per box: the mel is upsampled to the audio rate (`ConvTranspose1d`, hop 256) and
grouped with the audio into vectors of `n_group` samples. Each of `n_flows` steps applies an invertible 1x1
convolution (`_Invertible1x1Conv`) and an affine coupling whose scale and shift come from a WaveNet-like
network (`_WN`) conditioned on the mel. Every `n_early_every` flows, `n_early_size` channels leave the flow
early. Training (`forward`) maps audio to Gaussian noise; inference (`infer`) runs the flows backwards.

State-dict keys and shapes are those of NVIDIA's DeepLearningExamples model, weight norm included
(`weight_g`/`weight_v`), so its checkpoints load with `strict=True`. `Denoiser` is NVIDIA's bias remover.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops
from .audio import STFT
from .config import ConfigError, DictConfig
from .layers import WeightNormConv1d
from .ops import conv as _conv

__all__ = ["WaveGlowConfig", "WaveGlow", "WaveGlowLoss", "Denoiser"]

# The upsampler is fixed by the architecture, not configurable: a (T, 80) mel becomes (T - 1) * 256 + 1024
# samples, of which inference keeps the first T * 256.
_UPSAMPLE_KERNEL = 1024
_UPSAMPLE_STRIDE = 256


@dataclass
class WaveGlowConfig(DictConfig):
    """WaveGlow hyper-parameters, with NVIDIA DeepLearningExamples' training defaults.

    NVIDIA's published checkpoints (NGC, torch.hub, NVIDIA/waveglow's `waveglow_256channels`) use
    `n_channels=256`; 512 is the training script's default.
    """

    n_mel_channels: int = 80
    n_flows: int = 12
    n_group: int = 8  # audio samples per flow vector
    n_early_every: int = 4  # emit early outputs before flows 4, 8, ...
    n_early_size: int = 2  # channels emitted each time
    # WN (the coupling network); NVIDIA nests these three under "WN_config".
    n_layers: int = 8
    n_channels: int = 512
    kernel_size: int = 3

    def __post_init__(self) -> None:
        def fail(message: str) -> None:
            raise ConfigError(f"invalid WaveGlowConfig: {message}")

        for name in ("n_mel_channels", "n_flows", "n_group", "n_early_every", "n_layers", "n_channels",
                     "kernel_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                fail(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.n_early_size, int) or self.n_early_size < 0:
            fail(f"n_early_size must be a non-negative integer, got {self.n_early_size!r}")
        if self.n_group % 2:
            fail(f"n_group must be even (the coupling splits it in halves), got {self.n_group}")
        if self.n_early_size % 2:
            fail(f"n_early_size must be even, got {self.n_early_size}")
        if self.n_channels % 2:
            fail(f"n_channels must be even, got {self.n_channels}")
        if self.kernel_size % 2 == 0:
            fail(f"kernel_size must be odd (for 'same' padding), got {self.kernel_size}")
        if self.remaining_channels(self.n_flows - 1) < 2:
            fail(f"{self.n_flows} flows emitting {self.n_early_size} channels every {self.n_early_every} "
                 f"leave fewer than 2 of the {self.n_group} channels for the last flow")

    def remaining_channels(self, flow: int) -> int:
        """Channels still inside the flow at step `flow` (0-based): 8, 6 or 4 for the defaults."""
        return self.n_group - self.n_early_size * (flow // self.n_early_every)

    def early_exit(self, flow: int) -> bool:
        """Whether `n_early_size` channels leave just before step `flow` (forward direction)."""
        return flow > 0 and flow % self.n_early_every == 0

    @classmethod
    def from_nvidia(cls, d: dict[str, Any]) -> WaveGlowConfig:
        """From NVIDIA's config dict: `{n_mel_channels, n_flows, n_group, n_early_every, n_early_size,
        WN_config: {n_layers, kernel_size, n_channels}}`."""
        flat = {k: v for k, v in d.items() if k != "WN_config"}
        wn = d.get("WN_config", {})
        if not isinstance(wn, dict):
            raise ConfigError(f"NVIDIA WaveGlow config: WN_config must be a dict, got {type(wn).__name__}")
        unknown = sorted(set(wn) - {"n_layers", "kernel_size", "n_channels"})
        if unknown:
            raise ConfigError(f"NVIDIA WaveGlow config: unknown WN_config keys {unknown}")
        clash = sorted(set(flat) & set(wn))
        if clash:
            raise ConfigError(f"NVIDIA WaveGlow config: {clash} given both inside and outside WN_config")
        return cls.from_dict({**flat, **wn})

    def to_nvidia(self) -> dict[str, Any]:
        d = self.to_dict()
        return {
            **{k: d[k] for k in ("n_mel_channels", "n_flows", "n_group", "n_early_every", "n_early_size")},
            "WN_config": {k: d[k] for k in ("n_layers", "kernel_size", "n_channels")},
        }


class _Invertible1x1Conv(nn.Module):
    """Channel mixing by an orthogonally initialised, invertible c x c matrix (`conv.weight`, (c, c, 1))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size=1, bias=False)
        # Random rotation with det = +1 (flip one column if needed), drawn on the CPU RNG as the reference
        # does; the explicit device also keeps construction on the meta device working.
        w = torch.linalg.qr(torch.randn(channels, channels, device="cpu"))[0]
        if torch.det(w) < 0:
            w[:, 0] = -w[:, 0]
        with torch.no_grad():
            self.conv.weight.copy_(w.view(channels, channels, 1))
        self._inverse: Tensor | None = None  # (c, c, 1) cache for inference, never saved
        self._inverse_key: tuple | None = None

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z (B, c, L) -> (W z, log|det W| summed over the B * L positions)."""
        batch, _, length = z.shape
        w = self.conv.weight.squeeze(-1)
        # logdet in float32 even for half-precision weights, as the reference.
        log_det_w = batch * length * torch.logdet(w.float())
        return self.conv(z), log_det_w

    def inverse_weight(self) -> Tensor:
        """W^-1 as (c, c, 1), inverted in float32 and cast to the weight's dtype; cached until W changes."""
        w = self.conv.weight
        # data_ptr changes on .to()/load into new storage; _version changes on any in-place update
        # (load_state_dict's copy_, optimiser steps).
        key = (w.data_ptr(), w._version, w.dtype, w.device)
        if self._inverse is None or self._inverse_key != key:
            with torch.no_grad():
                inverse = w.squeeze(-1).float().inverse().unsqueeze(-1).to(w.dtype)
            self._inverse, self._inverse_key = inverse, key
        return self._inverse

    def infer(self, z: Tensor) -> Tensor:
        return F.conv1d(z, self.inverse_weight())

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._inverse = self._inverse_key = None
        super()._load_from_state_dict(*args, **kwargs)


class _WN(nn.Module):
    """Coupling network: a non-causal WaveNet over half the channels, conditioned on the grouped mel.

    Per layer i (dilation 2^i): gated activation tanh(a) * sigmoid(b) of in_layer(audio) + cond_layer(mel),
    then a 1x1 conv split into a residual (back into the stack) and a skip (summed into the output); the last
    layer has only the skip. `end` maps the skip sum to 2 * n_in channels (shift, log-scale) and starts at
    zero, so each coupling starts as the identity.
    """

    def __init__(self, n_in_channels: int, n_cond_channels: int, n_layers: int, n_channels: int,
                 kernel_size: int) -> None:
        super().__init__()
        self.n_layers = n_layers
        self.n_channels = n_channels
        # Registration order fixes the state-dict key order; creation order below follows the reference so
        # that a seeded build draws the same initial weights.
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.cond_layers = nn.ModuleList()
        self.start = WeightNormConv1d(n_in_channels, n_channels)
        self.end = nn.Conv1d(n_channels, 2 * n_in_channels, 1)
        assert self.end.bias is not None  # nn.Conv1d has one by default
        with torch.no_grad():
            self.end.weight.zero_()
            self.end.bias.zero_()
        for i in range(n_layers):
            self.in_layers.append(WeightNormConv1d(n_channels, 2 * n_channels, kernel_size, dilation=2**i))
            self.cond_layers.append(WeightNormConv1d(n_cond_channels, 2 * n_channels))
            last = i == n_layers - 1
            self.res_skip_layers.append(WeightNormConv1d(n_channels, n_channels if last else 2 * n_channels))

    def forward(self, audio: Tensor, mel: Tensor) -> Tensor:
        """audio (B, n_in, L), mel (B, n_cond, L) -> (B, 2 * n_in, L): shift then log-scale channels."""
        c = self.n_channels
        audio = self.start(audio)  # (B, C, L)
        output = None
        for i in range(self.n_layers):
            x = self.in_layers[i](audio) + self.cond_layers[i](mel)  # (B, 2C, L)
            acts = torch.tanh(x[:, :c]) * torch.sigmoid(x[:, c:])  # (B, C, L)
            res_skip = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                audio = res_skip[:, :c] + audio
                skip = res_skip[:, c:]
            else:
                skip = res_skip
            output = skip if output is None else skip + output
        return self.end(output)

    def remove_weight_norm(self) -> None:
        for conv in [self.start, *self.in_layers, *self.cond_layers, *self.res_skip_layers]:
            conv.remove_weight_norm()

    def kernels(self) -> _WNKernels:
        """The weights arranged for `infer`; rebuilt only when a parameter changes (new storage, dtype or
        device, or an in-place update such as an optimizer step or `load_state_dict`)."""
        return ops.cached(self, "_kernels", lambda: _WNKernels(self))

    def infer(self, audio: Tensor, mel: Tensor) -> Tensor:
        """`forward` for inference on (B, n_in, 1, L) audio and (B, n_cond, 1, L) mel, both channels-last
        -> (B, 2 * n_in, 1, L).

        Same arithmetic up to float rounding: weight norm folded, each cond_layer's output taken as the
        accumulator of its in_layer, residual and skip sums accumulated in place, and
        tanh(a) = 2 sigmoid(2a) - 1 (torch.tanh is about 4x slower than sigmoid on CPU; the results agree to
        within 2e-7).
        """
        k = self.kernels()
        c = self.n_channels
        audio = _conv(audio, *k.start)  # (B, C, 1, L)
        output = None
        for i in range(self.n_layers):
            x = _conv(mel, *k.cond[i])  # (B, 2C, 1, L)
            x = _conv(audio, *k.inputs[i], dilation=2**i, out=x)  # in_layer(audio) + cond_layer(mel)
            x[:, :c] *= 2.0
            x = torch.sigmoid_(x)
            acts = (x[:, :c] * 2.0 - 1.0).mul_(x[:, c:])  # tanh(a) * sigmoid(b), (B, C, 1, L)
            if i < self.n_layers - 1:
                audio = _conv(acts, *k.residual[i], out=audio)
            output = _conv(acts, *k.skip[i], out=output)
        assert output is not None  # n_layers >= 1
        return _conv(output, *k.end)


class _WNKernels:
    """A `_WN`'s weights for `_WN.infer`: (C_out, C_in, 1, k) weights and (C_out,) biases, weight norm folded.

    With weight norm removed, 1x1 weights and all biases are views of the parameters (no memory); the
    in_layers' k-tap weights are copied once into the channels-last layout oneDNN reads fastest.
    """

    def __init__(self, wn: _WN):
        c = wn.n_channels

        def as_2d(w: Tensor) -> Tensor:  # (out, in, k) -> (out, in, 1, k), channels-last (see _conv)
            return w.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)

        def convs(layers: nn.ModuleList) -> Iterable[WeightNormConv1d]:
            return cast(Iterable[WeightNormConv1d], layers)

        with torch.no_grad():
            self.start = as_2d(wn.start.compute_weight()), wn.start.bias.detach()
            self.inputs = [(as_2d(conv.compute_weight()), conv.bias.detach()) for conv in convs(wn.in_layers)]
            self.cond = [(as_2d(conv.compute_weight()), conv.bias.detach()) for conv in convs(wn.cond_layers)]
            self.residual, self.skip = [], []
            for i, conv in enumerate(convs(wn.res_skip_layers)):
                w, b = as_2d(conv.compute_weight()), conv.bias.detach()
                if i < wn.n_layers - 1:  # residual channels first, then skip
                    self.residual.append((w[:c], b[:c]))
                    w, b = w[c:], b[c:]
                self.skip.append((w, b))
            assert wn.end.bias is not None
            self.end = as_2d(wn.end.weight), wn.end.bias.detach()


class WaveGlow(nn.Module):
    """Mel spectrogram -> waveform by an invertible flow, NVIDIA-checkpoint compatible.

    `forward(mel, audio)` is the training direction (audio -> Gaussian latent); `infer(mel, sigma)` samples.
    """

    def __init__(self, config: WaveGlowConfig | None = None) -> None:
        super().__init__()
        config = WaveGlowConfig() if config is None else config
        self.config = config
        self.upsample = nn.ConvTranspose1d(config.n_mel_channels, config.n_mel_channels, _UPSAMPLE_KERNEL,
                                           stride=_UPSAMPLE_STRIDE)
        self.WN = nn.ModuleList()
        self.convinv = nn.ModuleList()
        for k in range(config.n_flows):
            channels = config.remaining_channels(k)
            self.convinv.append(_Invertible1x1Conv(channels))
            self.WN.append(_WN(channels // 2, config.n_mel_channels * config.n_group, config.n_layers,
                               config.n_channels, config.kernel_size))

    # -- shape helpers ---------------------------------------------------------------------------------

    def _group_mel(self, mel: Tensor, length: int) -> Tensor:
        """mel (B, n_mel, T) -> upsampled and grouped (B, n_mel * n_group, length // n_group).

        Grouped channel m * n_group + j holds mel band m at sample offset j of each group.
        """
        g = self.config.n_group
        upsampled = self.upsample(mel)[:, :, :length]  # (B, n_mel, length)
        batch, n_mel, _ = upsampled.shape
        groups = length // g
        upsampled = upsampled[:, :, :groups * g].reshape(batch, n_mel, groups, g)
        return upsampled.transpose(2, 3).reshape(batch, n_mel * g, groups)

    def _group_audio(self, audio: Tensor) -> Tensor:
        """audio (B, L) -> (B, n_group, L // n_group); channel j holds samples j, j + n_group, ..."""
        g = self.config.n_group
        groups = audio.size(1) // g
        return audio[:, :groups * g].reshape(audio.size(0), groups, g).transpose(1, 2)

    # -- training direction ----------------------------------------------------------------------------

    def forward(self, mel: Tensor, audio: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Audio to latent.

        Args:
            mel: `(batch, n_mel_channels, frames)`.
            audio: `(batch, samples)` with samples <= (frames - 1) * 256 + 1024, normally frames * 256.

        Returns:
            z `(batch, n_group, samples // n_group)`: early outputs first, in flow order, then the channels
            that went through every flow; the per-flow log-scales `(batch, n_half_k, samples // n_group)`;
            the per-flow log|det W| (scalars, float32).
        """
        max_length = (mel.size(2) - 1) * _UPSAMPLE_STRIDE + _UPSAMPLE_KERNEL
        if audio.size(1) > max_length:
            raise ValueError(f"audio has {audio.size(1)} samples but {mel.size(2)} mel frames cover at most "
                             f"{max_length}")
        cond = self._group_mel(mel, audio.size(1))  # (B, n_mel * g, L)
        x = self._group_audio(audio)  # (B, g, L)
        early: list[Tensor] = []
        log_s_list: list[Tensor] = []
        log_det_w_list: list[Tensor] = []
        size = self.config.n_early_size
        for k in range(self.config.n_flows):
            if self.config.early_exit(k):
                early.append(x[:, :size])
                x = x[:, size:]
            x, log_det_w = self.convinv[k](x)
            log_det_w_list.append(log_det_w)
            half = x.size(1) // 2
            x_0, x_1 = x[:, :half], x[:, half:]
            out = self.WN[k](x_0, cond)  # (B, 2 * half, L)
            log_s, b = out[:, half:], out[:, :half]
            x_1 = torch.exp(log_s) * x_1 + b
            log_s_list.append(log_s)
            x = torch.cat([x_0, x_1], 1)
        early.append(x)
        return torch.cat(early, 1), log_s_list, log_det_w_list

    # -- inference direction ---------------------------------------------------------------------------

    def _noise(self, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
        # Drawn in float32 then cast, so half-precision models see the same numbers as float32 ones (the
        # reference's `infer` does exactly this).
        if generator is None:
            z = torch.randn(shape, device=like.device)
        else:
            z = torch.randn(shape, generator=generator, device=generator.device).to(like.device)
        return z.to(like.dtype)

    def sample_latent(self, batch: int, frames: int, generator: torch.Generator | None = None,
                      like: Tensor | None = None) -> Tensor:
        """The noise `infer` would draw for `(batch, n_mel, frames)` mels, as the `z` it accepts:
        `infer(mel, sigma, generator=g)` equals `infer(mel, sigma, z=sample_latent(B, T, g'))` when g' starts
        in g's state. Used where the network runs elsewhere (ONNX Runtime) but the noise must stay torch's.

        Returns `(batch, n_group, frames * 256 // n_group)` in `like`'s dtype/device (default: the model's).
        """
        cfg = self.config
        like = like if like is not None else self.upsample.weight
        groups = frames * _UPSAMPLE_STRIDE // cfg.n_group
        z = like.new_empty(batch, cfg.n_group, groups)
        filled = cfg.remaining_channels(cfg.n_flows - 1)  # channels through every flow: drawn first
        z[:, cfg.n_group - filled:] = self._noise((batch, filled, groups), like, generator)
        for k in reversed(range(cfg.n_flows)):  # then each early exit, going backwards, as infer draws
            if cfg.early_exit(k):
                start = cfg.n_group - filled - cfg.n_early_size
                z[:, start:start + cfg.n_early_size] = self._noise((batch, cfg.n_early_size, groups), like,
                                                                   generator)
                filled += cfg.n_early_size
        return z

    @torch.no_grad()
    def infer(self, mel: Tensor, sigma: float = 1.0, generator: torch.Generator | None = None, *,
              z: Tensor | None = None) -> Tensor:
        """Sample a waveform.

        Args:
            mel: `(batch, n_mel_channels, frames)`.
            sigma: noise scale (NVIDIA: 1.0 by default, 0.6-0.9 in practice; 0 gives the flow's mean path).
            generator: source of the noise; None uses torch's global RNG, reproducing the reference under
                `torch.manual_seed`. Noise comes in this order: `(B, remaining, 32 T)` for the last flow,
                then `(B, n_early_size, 32 T)` at each early exit going backwards (for the defaults
                (B, 4, 32T), (B, 2, 32T), (B, 2, 32T)).
            z: optional latent `(batch, n_group, frames * 256 // n_group)` laid out as `forward` returns it;
                when given no noise is drawn (it is still scaled by `sigma`).

        Returns:
            `(batch, frames * 256)` waveform.
        """
        cfg = self.config
        length = mel.size(2) * _UPSAMPLE_STRIDE
        cond = self._group_mel(mel, length)  # (B, n_mel * g, 32 T) for the defaults
        batch, _, groups = cond.shape
        last = cfg.remaining_channels(cfg.n_flows - 1)
        if z is not None:
            if z.shape != (batch, cfg.n_group, groups):
                raise ValueError(f"z must have shape {(batch, cfg.n_group, groups)}, got {tuple(z.shape)}")
            z = z.to(cond.dtype)
            x = sigma * z[:, cfg.n_group - last:]
        else:
            x = sigma * self._noise((batch, last, groups), cond, generator)
        cond = cond.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # the layout of _WN.infer
        for k in reversed(range(cfg.n_flows)):
            half = x.size(1) // 2
            x_0, x_1 = x[:, :half], x[:, half:]
            wn, convinv = cast(_WN, self.WN[k]), cast(_Invertible1x1Conv, self.convinv[k])
            out = wn.infer(x_0.unsqueeze(2).contiguous(memory_format=torch.channels_last), cond).squeeze(2)
            s, b = out[:, half:], out[:, :half]
            x_1 = (x_1 - b) / torch.exp(s)
            x = convinv.infer(torch.cat([x_0, x_1], 1))
            if cfg.early_exit(k):
                if z is not None:
                    start = cfg.n_group - x.size(1) - cfg.n_early_size
                    early = z[:, start:start + cfg.n_early_size]
                else:
                    early = self._noise((batch, cfg.n_early_size, groups), cond, generator)
                x = torch.cat([sigma * early, x], 1)
        return x.transpose(1, 2).reshape(batch, -1)  # sample t * g + c <- channel c of group t

    def remove_weightnorm(self, model: WaveGlow | None = None) -> WaveGlow:
        """Fold weight norm into plain weights (for inference) and return the model.

        Works both as `waveglow.remove_weightnorm()` and NVIDIA's `waveglow = waveglow.remove_weightnorm(waveglow)`.
        """
        target = self if model is None else model
        for wn in target.WN:
            cast(_WN, wn).remove_weight_norm()
        return target


class WaveGlowLoss(nn.Module):
    """Negative log-likelihood per sample: sum(z^2) / (2 sigma^2) - sum(log s) - sum(log|det W|), divided by
    the number of latent values."""

    def __init__(self, sigma: float = 1.0) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, model_output: tuple[Tensor, list[Tensor], list[Tensor]]) -> Tensor:
        z, log_s_list, log_det_w_list = model_output
        log_s_total = sum(torch.sum(log_s) for log_s in log_s_list)
        log_det_w_total = sum(log_det_w_list)
        loss = torch.sum(z * z) / (2 * self.sigma * self.sigma) - log_s_total - log_det_w_total
        return loss / z.numel()


class Denoiser(nn.Module):
    """Removes a vocoder's constant hiss by spectral subtraction (NVIDIA's denoiser, for WaveGlow and HiFi-GAN).

    The bias is the magnitude spectrum of what the vocoder outputs for an all-zero mel (WaveGlow at sigma 0),
    first STFT frame only. For WaveGlow, building it runs `waveglow.infer`, which still draws its noise from
    the global RNG (three draws for the default config) even though sigma 0 discards it; this is kept so
    seeded runs line up with the reference.

    `forward(audio (B, T), strength)` returns `(B, 1, 256 * (T // 256))`.
    """

    bias_spec: Tensor  # a buffer, registered in __init__

    def __init__(self, vocoder: nn.Module, filter_length: int = 1024, n_overlap: int = 4,
                 win_length: int = 1024, mode: str = "zeros") -> None:
        """vocoder: a `WaveGlow`, or any module mapping a (1, n_mel, frames) mel to (1, 1, samples) audio
        whose `config` has `n_mel_channels` (`HiFiGAN`)."""
        super().__init__()
        weight = next(vocoder.parameters())
        self.stft = STFT(filter_length=filter_length, hop_length=filter_length // n_overlap,
                         win_length=win_length).to(weight.device)
        shape = (1, int(cast(Any, vocoder).config.n_mel_channels), 88)  # 88 frames, as the reference
        if mode == "zeros":
            mel = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
        elif mode == "normal":
            mel = torch.randn(shape, dtype=weight.dtype, device=weight.device)
        else:
            raise ValueError(f"Denoiser mode must be 'zeros' or 'normal', got {mode!r}")
        with torch.no_grad():
            if isinstance(vocoder, WaveGlow):
                bias_audio = vocoder.infer(mel, sigma=0.0).float()  # (1, 88 * 256)
            else:
                bias_audio = vocoder(mel).float().squeeze(1)  # (1, 88 * hop)
            bias_spec, _ = self.stft.transform(bias_audio)  # (1, n_bins, frames)
        self.register_buffer("bias_spec", bias_spec[:, :, :1])  # (1, n_bins, 1)

    def forward(self, audio: Tensor, strength: float = 0.1) -> Tensor:
        spec, phase = self.stft.transform(audio.float())
        spec = torch.clamp(spec - self.bias_spec * strength, min=0.0)
        return self.stft.inverse(spec, phase)
