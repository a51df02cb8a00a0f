"""How a voice is spoken: one `SynthesisConfig`, stored as a checkpoint's ``synthesis`` section.

The settings travel together from the checkpoint (a voice records what was measured to suit it), through
the command line's voice options (each overrides the field of the same name) into the `Synthesizer`,
and out again through the server's ``/voices``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .audio import MEL_INVERSION_ITERS
from .checkpoint import CheckpointError, LoadedCheckpoint
from .config import ConfigError, DictConfig
from .hifigan import PRECISIONS as HIFIGAN_PRECISIONS
from .ops import PRECISIONS as TACOTRON2_PRECISIONS
from .ssml import MAX_BREAK_SECONDS

MAX_SENTENCE_PAUSE = MAX_BREAK_SECONDS  # seconds: the longest break SSML may ask for
MAX_CANDIDATES = 16  # decodings per sentence: each is a Tacotron 2 batch item, so memory and time grow with it


@dataclass(frozen=True)
class SynthesisConfig(DictConfig):
    """Inference settings of a voice; the defaults are the reference's, or tacoglow's where it has none."""

    # WaveGlow: NVIDIA's inference script runs -s 0.9 -d 0.01 (its torch.hub example: sigma 1.0, no denoiser).
    sigma: float = 0.9  # scale of the flow's Gaussian noise
    denoiser_strength: float = 0.01  # bias spectrum removed after WaveGlow; 0 turns the denoiser off
    # HiFi-GAN: NVIDIA's HiFi-GAN inference runs without the denoiser (--denoising-strength 0) unless asked.
    hifigan_denoiser_strength: float = 0.0  # the same bias-spectrum subtraction, after HiFi-GAN
    # The generator's arithmetic (HiFiGAN.infer): "fp32" reproduces the reference; "int8" (CPU) is faster at a
    # reported error (benchmarks/README.md), "bf16" only where the CPU computes bfloat16 natively.
    hifigan_precision: str = "fp32"
    # Tacotron 2's decoder LSTM weights while generating (`Tacotron2.infer_detailed`'s precision): "fp32" reproduces
    # the reference; "fp16" (CPU) reads half the bytes per decoder step at a relative mel error of about 2e-4.
    tacotron2_precision: str = "fp32"
    # Griffin-Lim: the vocoder when there is no WaveGlow, and the server's alternative beside one.
    griffin_lim_iters: int = 60
    griffin_lim_power: float = 1.0  # magnitude sharpening at unchanged loudness (tacoglow.audio.griffin_lim)
    griffin_lim_inversion_iters: int = MEL_INVERSION_ITERS  # mel -> linear least squares; 0: clamped pseudo-inverse
    # Text front-end: tacoglow.text.normalize_text before NVIDIA's english_cleaners (False: the reference's
    # input exactly); arpabet reads every word of the lexicon as phones, for voices trained with p_arpabet;
    # leading_pause puts ", " before the first word, for voices trained so (TrainConfig.leading_pause).
    normalize: bool = True
    arpabet: bool = False
    leading_pause: bool = False
    # Relative decoding cap, min_frames + frames_per_symbol * symbols mel frames (never above the model's
    # max_decoder_steps), so that a confused model does not babble for max_decoder_steps on "Hi": LJSpeech
    # speech runs at about 6 frames per symbol. None keeps the reference's behaviour (max_decoder_steps only).
    frames_per_symbol: float | None = 20.0
    min_frames: int = 100
    sentence_pause: float = 0.2  # seconds of silence between sentences, at most MAX_SENTENCE_PAUSE
    # Decodings made of each sentence, in one Tacotron 2 batch, of which the voice's phone verifier keeps the one
    # that says its phones most clearly (tacoglow.verifier); 1: one decoding, as the reference (and always, for a
    # voice without a verifier). The first sentence of a stream then waits for its whole decoding.
    candidates: int = 1

    def __post_init__(self) -> None:
        for name in ("sigma", "denoiser_strength", "hifigan_denoiser_strength", "sentence_pause"):
            if not math.isfinite(_number(name, getattr(self, name))) or getattr(self, name) < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}", name)
        if self.sentence_pause > MAX_SENTENCE_PAUSE:  # 1e9 s would be a 88 TB allocation, not a pause
            raise ConfigError(f"sentence_pause must be at most {MAX_SENTENCE_PAUSE:g} seconds (as SSML's longest "
                              f"<break>), got {self.sentence_pause!r}", "sentence_pause")
        for name in ("griffin_lim_iters", "griffin_lim_inversion_iters", "min_frames", "candidates"):
            object.__setattr__(self, name, _whole_number(name, getattr(self, name)))  # 0.0 from JSON -> 0
        if not 1 <= self.candidates <= MAX_CANDIDATES:
            raise ConfigError(f"candidates must be from 1 to {MAX_CANDIDATES} decodings per sentence, got "
                              f"{self.candidates}", "candidates")
        if not 0 < _number("griffin_lim_power", self.griffin_lim_power) <= 4:
            raise ConfigError(f"griffin_lim_power must be in (0, 4], got {self.griffin_lim_power}", "griffin_lim_power")
        cap = self.frames_per_symbol
        if cap is not None and not 0 < _number("frames_per_symbol", cap) < math.inf:
            raise ConfigError(f"frames_per_symbol must be a positive number or None, got {self.frames_per_symbol}",
                              "frames_per_symbol")
        if self.hifigan_precision not in HIFIGAN_PRECISIONS:
            raise ConfigError(f"hifigan_precision must be one of {', '.join(HIFIGAN_PRECISIONS)}, got "
                              f"{self.hifigan_precision!r}", "hifigan_precision")
        if self.tacotron2_precision not in TACOTRON2_PRECISIONS:
            raise ConfigError(f"tacotron2_precision must be one of {', '.join(TACOTRON2_PRECISIONS)}, got "
                              f"{self.tacotron2_precision!r}", "tacotron2_precision")
        for name in ("normalize", "arpabet", "leading_pause"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}", name)


def _number(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}", name)
    return value


def _whole_number(name: str, value: Any) -> int:
    if not float(_number(name, value)).is_integer() or value < 0:  # inf and nan are not whole
        raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}", name)
    return int(value)


def voice_synthesis_config(checkpoint: LoadedCheckpoint) -> SynthesisConfig:
    """The settings a Tacotron 2 checkpoint records: its ``synthesis`` section over the defaults, with the
    text front-end it was trained with (``text.normalize``, ``text.arpabet``, ``text.leading_pause``) unless that
    section says."""
    section = checkpoint.extra.get("synthesis") or {}
    if not isinstance(section, dict):
        raise CheckpointError(f"{checkpoint.path}: 'synthesis' must be a dict of settings, got "
                              f"{type(section).__name__}; re-export the checkpoint")
    trained = {"normalize": bool(checkpoint.text.get("normalize", True)),
               "arpabet": bool(checkpoint.text.get("arpabet")),  # the lexicon version it learned, if any
               "leading_pause": bool(checkpoint.text.get("leading_pause"))}
    try:
        return SynthesisConfig.from_dict({**trained, **section})
    except ConfigError as error:
        where = f"synthesis.{error}" if error.key else f"synthesis: {error}"
        raise CheckpointError(f"{checkpoint.path}: {where}; re-export the checkpoint") from None
