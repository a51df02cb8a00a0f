"""The vocoders behind one call, mel (1, n_mel, frames) → audio (1, samples): HiFi-GAN, WaveGlow and
Griffin-Lim, each holding its settings from the voice's `SynthesisConfig` (the `Synthesizer` builds them)."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Protocol

import torch

from .audio import AudioConfig, check_griffin_lim_settings, griffin_lim
from .config import ConfigError
from .hifigan import HiFiGAN
from .synthesis import SynthesisConfig
from .waveglow import Denoiser, WaveGlow

__all__ = ["Vocoder", "WaveGlowVocoder", "HiFiGANVocoder", "GriffinLimVocoder"]


class Vocoder(Protocol):
    audio: AudioConfig

    def __call__(self, mel: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """mel (1, n_mel, frames) → audio (1, frames * hop_length); a vocoder may also take keyword options of
        its own (WaveGlow: ``sigma``, ``denoiser_strength``)."""


class WaveGlowVocoder:
    """WaveGlow with weight norm folded, plus NVIDIA's bias-removing denoiser."""

    name = "waveglow"

    def __init__(self, waveglow: WaveGlow, sigma: float = SynthesisConfig.sigma,
                 denoiser_strength: float = SynthesisConfig.denoiser_strength, audio: AudioConfig | None = None):
        self.waveglow = waveglow.remove_weightnorm().eval()
        self.sigma = sigma
        self.denoiser_strength = denoiser_strength
        self.audio = audio or AudioConfig()
        self._denoiser: Denoiser | None = None
        # What runs the flow: the model itself, or an engine with the same ``infer`` (tacoglow.export.OnnxWaveGlow).
        self.engine: Any = self.waveglow

    @property
    def denoiser(self) -> Denoiser:
        if self._denoiser is None:
            # The reference denoiser draws (unused, σ=0) noise from the global RNG; keep the
            # caller's global random state untouched.
            with torch.random.fork_rng(devices=[]):
                self._denoiser = Denoiser(self.waveglow).eval()
        return self._denoiser

    @torch.inference_mode()
    def __call__(self, mel: torch.Tensor, generator: torch.Generator | None = None,
                 sigma: float | None = None, denoiser_strength: float | None = None) -> torch.Tensor:
        sigma = self.sigma if sigma is None else sigma
        strength = self.denoiser_strength if denoiser_strength is None else denoiser_strength
        audio = self.engine.infer(mel, sigma=sigma, generator=generator).float()
        if strength > 0:
            audio = self.denoiser(audio, strength=strength).squeeze(1)
        return audio


class HiFiGANVocoder:
    """HiFi-GAN with weight norm folded, plus the same bias-removing denoiser as WaveGlow's (off by default:
    ``SynthesisConfig.hifigan_denoiser_strength`` is 0, as in NVIDIA's HiFi-GAN inference). Deterministic:
    the generator argument is accepted and unused."""

    name = "hifigan"

    def __init__(self, hifigan: HiFiGAN, denoiser_strength: float = SynthesisConfig.hifigan_denoiser_strength,
                 audio: AudioConfig | None = None, precision: str = SynthesisConfig.hifigan_precision):
        self.hifigan = hifigan.remove_weight_norm().eval()
        self.denoiser_strength = denoiser_strength
        self.precision = precision  # HiFiGAN.infer's arithmetic: "fp32", or "int8" / "bf16" (faster, not exact)
        self.audio = audio or AudioConfig()
        if self.hifigan.config.hop_length != self.audio.hop_length:
            raise ConfigError(f"this HiFi-GAN makes {self.hifigan.config.hop_length} samples per mel frame, "
                              f"but the audio settings have hop_length {self.audio.hop_length}")
        self._denoiser: Denoiser | None = None
        # What runs the generator: the model itself, or an engine with the same ``infer`` (tacoglow.export).
        self.engine: Any = self.hifigan

    @property
    def denoiser(self) -> Denoiser:
        if self._denoiser is None:
            self._denoiser = Denoiser(self.hifigan).eval()
        return self._denoiser

    def _finish(self, audio: torch.Tensor, strength: float) -> torch.Tensor:
        audio = audio.float().squeeze(1)  # (B, samples)
        return self.denoiser(audio, strength=strength).squeeze(1) if strength > 0 else audio

    @torch.inference_mode()
    def __call__(self, mel: torch.Tensor, generator: torch.Generator | None = None,
                 denoiser_strength: float | None = None, **options: Any) -> torch.Tensor:
        strength = self.denoiser_strength if denoiser_strength is None else denoiser_strength
        if self.engine is self.hifigan:
            return self._finish(self.hifigan.infer(mel, self.precision), strength)
        return self._finish(self.engine.infer(mel), strength)

    def chunks(self, mel: torch.Tensor, first_frames: int = 16, chunk_frames: int = 128,
               denoiser_strength: float | None = None, **options: Any) -> Iterator[torch.Tensor]:
        """mel (1, n_mel, frames) → audio pieces (1, samples) that join into ``self(mel)`` (see
        :meth:`HiFiGAN.infer_chunks`); the first covers ``first_frames`` frames, so it is out early. The
        denoiser works on whole STFT frames, so with it on the audio comes in one piece."""
        return self.stream([mel], first_frames, chunk_frames, denoiser_strength)

    def stream(self, pieces: Iterable[torch.Tensor], first_frames: int = 16, chunk_frames: int = 128,
               denoiser_strength: float | None = None, **options: Any) -> Iterator[torch.Tensor]:
        """:meth:`chunks` of a mel that arrives in pieces (1, n_mel, n), e.g. from a Tacotron 2 still decoding
        (:meth:`HiFiGAN.infer_stream`): each chunk as soon as the mel around it is there."""
        strength = self.denoiser_strength if denoiser_strength is None else denoiser_strength
        if strength > 0:
            yield self(torch.cat(list(pieces), -1), denoiser_strength=strength)
            return
        engine = None if self.engine is self.hifigan else self.engine.infer
        with torch.inference_mode():
            for audio in self.hifigan.infer_stream(pieces, chunk_frames, first_frames, precision=self.precision,
                                                   engine=engine):
                yield audio.float().squeeze(1)


class GriffinLimVocoder:
    """Vocoder-free fallback: Griffin-Lim phase reconstruction from the predicted mel."""

    name = "griffin-lim"

    def __init__(self, audio: AudioConfig | None = None, n_iters: int = SynthesisConfig.griffin_lim_iters,
                 power: float = SynthesisConfig.griffin_lim_power,
                 inversion_iters: int = SynthesisConfig.griffin_lim_inversion_iters):
        check_griffin_lim_settings(n_iters, power, inversion_iters)  # now, not after a sentence is decoded
        self.audio = audio or AudioConfig()
        self.n_iters = n_iters
        self.power = power  # magnitude sharpening, see tacoglow.audio.griffin_lim
        self.inversion_iters = inversion_iters  # mel -> linear refinement, see tacoglow.audio.mel_to_linear

    @classmethod
    def from_config(cls, audio: AudioConfig, synthesis: SynthesisConfig,
                    n_iters: int | None = None) -> GriffinLimVocoder:
        """Griffin-Lim with a voice's settings (``n_iters`` overrides its ``griffin_lim_iters``)."""
        return cls(audio, n_iters=synthesis.griffin_lim_iters if n_iters is None else n_iters,
                   power=synthesis.griffin_lim_power, inversion_iters=synthesis.griffin_lim_inversion_iters)

    def __call__(self, mel: torch.Tensor, generator: torch.Generator | None = None, **options) -> torch.Tensor:
        return griffin_lim(mel.float(), self.audio, n_iters=self.n_iters, generator=generator, power=self.power,
                           inversion_iters=self.inversion_iters)
