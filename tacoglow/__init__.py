"""tacoglow: Tacotron 2 + WaveGlow or HiFi-GAN text-to-speech, compatible with NVIDIA's checkpoints."""
from . import audio as audio  # "as": re-exported on purpose, tacoglow.audio and tacoglow.text are public
from . import text as text
from .audio import AudioConfig, mel_spectrogram
from .checkpoint import CheckpointError, load_hifigan, load_tacotron2, load_verifier, load_waveglow, save_model
from .errors import TacoglowError
from .hifigan import HiFiGAN, HiFiGANConfig
from .synthesis import SynthesisConfig
from .synthesizer import Speech, Synthesizer
from .tacotron2 import Tacotron2, Tacotron2Config
from .verifier import PhoneVerifier, VerifierConfig
from .vocoders import GriffinLimVocoder, HiFiGANVocoder, WaveGlowVocoder
from .waveglow import Denoiser, WaveGlow, WaveGlowConfig

__version__ = "0.1.0"

__all__ = [
    "AudioConfig", "CheckpointError", "Denoiser", "GriffinLimVocoder", "HiFiGAN", "HiFiGANConfig", "HiFiGANVocoder",
    "PhoneVerifier", "Speech", "SynthesisConfig", "Synthesizer", "TacoglowError", "Tacotron2", "Tacotron2Config",
    "VerifierConfig", "WaveGlow", "WaveGlowConfig", "WaveGlowVocoder", "load_hifigan", "load_tacotron2",
    "load_verifier", "load_waveglow", "mel_spectrogram", "save_model",
]
