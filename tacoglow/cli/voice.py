"""The voice options shared by ``synthesize`` and ``serve``, and the voice they name."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch


def add_voice_dir_arguments(p: argparse.ArgumentParser) -> None:
    """Voice folders beside the default voice (``--voice-dir``), each loaded on first use; shared by ``serve``
    (each request names its voice) and ``synthesize`` (``--voice``, or each JSON line's ``voice``)."""
    p.add_argument("--voice-dir", type=Path, metavar="DIR",
                   help="a folder of voice folders (each with tacotron2.pt, optionally hifigan.pt or waveglow.pt), "
                        "named by their folder names beside the default voice, each loaded on first use")
    p.add_argument("--max-loaded-voices", type=int, default=4, metavar="N",
                   help="voices of --voice-dir kept loaded at once; the least recently used idle one is unloaded "
                        "(default 4)")


def add_voice_arguments(p: argparse.ArgumentParser) -> None:
    """Which voice to load and how to run it: shared by ``synthesize`` and ``serve``."""
    p.add_argument("--tacotron2", type=Path, help="Tacotron 2 checkpoint (default: the installed voice)")
    p.add_argument("--waveglow", type=Path, help="WaveGlow checkpoint (default: the installed voice's vocoder)")
    p.add_argument("--hifigan", type=Path, help="HiFi-GAN generator (jik876's, NVIDIA's or tacoglow's layout)")
    p.add_argument("--vocoder", choices=("auto", "hifigan", "waveglow", "griffin-lim"), default="auto",
                   help="'auto': HiFi-GAN, else WaveGlow, when given or installed; else Griffin-Lim")
    # Each of these overrides the voice's SynthesisConfig field of the same name (its dest).
    p.add_argument("--sigma", type=float, default=None,
                   help="WaveGlow noise scale (default: the voice's setting, else 0.9 as NVIDIA's script)")
    p.add_argument("--denoiser-strength", "--denoise", dest="denoiser_strength", type=float, default=None,
                   help="denoiser strength of the vocoder loaded (default: the voice's setting, else NVIDIA's: "
                        "0.01 for WaveGlow, 0 for HiFi-GAN; 0 turns it off)")
    p.add_argument("--hifigan-precision", choices=("fp32", "int8", "bf16"), default=None,
                   help="HiFi-GAN's arithmetic: fp32 (exact, default), int8 (CPU: faster, about 6%% waveform "
                        "error on a trained generator), bf16 (faster only with native bfloat16)")
    p.add_argument("--tacotron2-precision", choices=("fp32", "fp16", "bf16", "int8"), default=None,
                   help="Tacotron 2's decoder weights while generating: fp32 (exact), fp16 (CPU: faster, relative "
                        "error about 2e-4), bf16, int8 (default: the voice's setting, else fp32)")
    p.add_argument("--griffin-lim-iters", type=int, default=None,
                   help="Griffin-Lim iterations (default: the voice's setting, else 60)")
    p.add_argument("--griffin-lim-power", type=float, default=None,
                   help="sharpen Griffin-Lim's magnitudes by this power, at the same loudness "
                        "(default: the voice's setting, else 1)")
    p.add_argument("--griffin-lim-inversion-iters", type=int, default=None,
                   help="least-squares iterations from the mel to Griffin-Lim's linear magnitudes, 0 for the "
                        "clamped pseudo-inverse (default: the voice's setting, else 100)")
    p.add_argument("--no-normalize", dest="normalize", action="store_false", default=None,
                   help="feed text to NVIDIA's english_cleaners exactly as the reference does")
    p.add_argument("--arpabet", action=argparse.BooleanOptionalAction, default=None,
                   help="read words the pronunciation lexicon knows as ARPAbet phones (default: as the voice "
                        "was trained, recorded in its checkpoint)")
    p.add_argument("--leading-pause", action=argparse.BooleanOptionalAction, default=None,
                   help="put a pause (', ') before the first word (default: as the voice was trained, recorded "
                        "in its checkpoint)")
    p.add_argument("--candidates", type=int, default=None, metavar="N",
                   help="decode each sentence N times and keep the decoding the voice's phone verifier "
                        "(verifier.pt beside its tacotron2.pt) hears most clearly; 1: once (default: the voice's "
                        "setting)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="what runs the networks: torch (default) or ONNX Runtime (CPU; needs tacoglow[export])")


def load_synthesizer(args: argparse.Namespace):
    """The voice the options name (the installed one by default), its settings overridden by the options given."""
    from ..catalog import VoiceFiles
    from ..hub import choose_checkpoints

    tacotron2, waveglow, hifigan = choose_checkpoints(args.tacotron2, args.waveglow, args.hifigan, args.vocoder)
    if args.threads:
        torch.set_num_threads(args.threads)
    return voice_options(args).load(VoiceFiles("default", tacotron2, waveglow, hifigan))


def voice_options(args: argparse.Namespace):
    """How the options load a voice: device, backend, and each SynthesisConfig field given (the same for every
    voice of ``serve --voice-dir``)."""
    from ..catalog import VoiceOptions
    from ..synthesis import SynthesisConfig

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(SynthesisConfig)
                 if getattr(args, f.name, None) is not None}
    return VoiceOptions(device=args.device, backend=args.backend, overrides=overrides)


def load_voice(args: argparse.Namespace):
    """The voice ``--voice`` names among the default voice and the folders of ``--voice-dir`` (default: the
    default voice)."""
    if args.voice is None and not args.voice_dir:
        return load_synthesizer(args)
    return load_catalog(args).acquire(args.voice)  # an unknown name: UnknownVoiceError, naming the known ones


def load_catalog(args: argparse.Namespace):
    """The voice the options name as the default voice, and the voice folders of ``--voice-dir`` beside it
    (listed, not loaded)."""
    from ..catalog import VoiceCatalog, find_voices

    voices = find_voices(args.voice_dir, args.vocoder) if args.voice_dir else []  # refused before any loading
    name = getattr(args, "voice_name", "default")  # serve's --voice-name; synthesize's default voice is "default"
    return VoiceCatalog(load_synthesizer(args), voices, options=voice_options(args), default_name=name,
                        max_loaded=args.max_loaded_voices)
