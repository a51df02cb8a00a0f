"""What several test files and the benchmarks share: tiny models, and the relative error they are judged by."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from tacoglow.tacotron2 import Tacotron2, Tacotron2Config
from tacoglow.waveglow import WaveGlow, WaveGlowConfig

# Every block of each network, a few channels wide: a forward pass takes milliseconds on one CPU thread.
TINY_TACOTRON2 = dict(symbols_embedding_dim=16, encoder_embedding_dim=16, attention_rnn_dim=24, attention_dim=8,
                      attention_location_n_filters=4, attention_location_kernel_size=5, decoder_rnn_dim=24,
                      prenet_dim=8, postnet_embedding_dim=12)
TINY_WAVEGLOW = dict(n_flows=4, n_group=8, n_early_every=2, n_early_size=2, n_layers=2, n_channels=8)


def tiny_tacotron2_config(**overrides) -> Tacotron2Config:
    return Tacotron2Config(**{**TINY_TACOTRON2, **overrides})


def tiny_tacotron2(seed: int = 0, **overrides) -> Tacotron2:
    """A tiny Tacotron 2 with weights drawn under ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return Tacotron2(tiny_tacotron2_config(**overrides)).eval()


def tiny_waveglow(seed: int = 0, end_std: float = 0.05, **overrides) -> WaveGlow:
    """A tiny WaveGlow with weights drawn under ``seed``, in training mode.

    Each coupling's ``end`` layer starts at zero (identity couplings); it is drawn from N(0, ``end_std``) here so
    that a round trip or a speed path exercises every flow.
    """
    torch.manual_seed(seed)
    model = WaveGlow(WaveGlowConfig(**{**TINY_WAVEGLOW, **overrides}))
    with torch.no_grad():
        for wn in model.WN:
            wn.end.weight.normal_(0, end_std)
            wn.end.bias.normal_(0, end_std)
    return model


def tacotron2_for_hifigan(hifigan: str | Path, directory: Path) -> Path:
    """The small Tacotron 2 fixture saved with the audio settings of the HiFi-GAN fixture ``hifigan`` (its hop),
    so that the two load as a pair."""
    from tacoglow.checkpoint import inspect_checkpoint, load_tacotron2, save_model

    from conftest import fixture_path

    path = directory / "tacotron2.pt"
    save_model(load_tacotron2(fixture_path("tacotron2_small_ngc.pt")), path, audio=inspect_checkpoint(hifigan).audio)
    return path


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """‖ours − ref‖ / ‖ref‖ in float64: the absolute error where ``ref`` is zero; NaN if the shapes differ."""
    if ours.shape != ref.shape:
        return math.nan
    ours, ref = ours.double(), ref.double()
    denom = ref.norm().item()
    diff = (ours - ref).norm().item()
    return diff / denom if denom > 0 else diff
