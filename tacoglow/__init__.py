"""tacoglow: Tacotron 2 + WaveGlow text-to-speech, compatible with NVIDIA's checkpoints."""
from . import audio, text
from .audio import AudioConfig, mel_spectrogram
from .checkpoint import CheckpointError, load_hifigan, load_tacotron2, load_waveglow, save_model
from .hifigan import HiFiGAN, HiFiGANConfig
from .synthesizer import GriffinLimVocoder, Speech, Synthesizer, WaveGlowVocoder
from .tacotron2 import Tacotron2, Tacotron2Config
from .waveglow import Denoiser, WaveGlow, WaveGlowConfig

__version__ = "0.1.0"

__all__ = [
    "AudioConfig", "CheckpointError", "Denoiser", "GriffinLimVocoder", "HiFiGAN", "HiFiGANConfig", "Speech",
    "Synthesizer", "Tacotron2", "Tacotron2Config", "WaveGlow", "WaveGlowConfig", "WaveGlowVocoder",
    "load_hifigan", "load_tacotron2", "load_waveglow", "mel_spectrogram", "save_model",
]
