"""Command line: ``tacoglow synthesize | info | prepare | train | serve | export``, thin layers over the library."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import traceback
from pathlib import Path
from typing import cast

import torch

from .errors import TacoglowError

log = logging.getLogger("tacoglow")


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
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="what runs the networks: torch (default) or ONNX Runtime (CPU; needs tacoglow[export])")


def _add_synthesize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synthesize", help="speak text into a WAV file",
                       description="Speak TEXT (or each line of --input) into 16-bit PCM WAV.")
    p.add_argument("text", nargs="?", help="text to speak; '-' reads standard input")
    p.add_argument("-i", "--input", type=Path, help="text file: one utterance per line, written to the -o folder")
    p.add_argument("-o", "--output", required=True,
                   help="WAV file ('-' writes to standard output), or a folder with --input")
    add_voice_arguments(p)
    p.add_argument("--seed", type=int, default=None, help="random seed: the same seed gives the same audio")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def load_synthesizer(args: argparse.Namespace):
    """The voice the options name (the installed one by default), its settings overridden by the options given."""
    from .hub import choose_checkpoints
    from .synthesis import SynthesisConfig
    from .synthesizer import Synthesizer

    tacotron2, waveglow, hifigan = choose_checkpoints(args.tacotron2, args.waveglow, args.hifigan, args.vocoder)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(SynthesisConfig)
                 if getattr(args, f.name, None) is not None}
    if hifigan is not None and "denoiser_strength" in overrides:  # --denoiser-strength: the loaded vocoder's
        overrides["hifigan_denoiser_strength"] = overrides.pop("denoiser_strength")
    return Synthesizer.from_checkpoints(tacotron2, waveglow, hifigan=hifigan, device=args.device,
                                        backend=args.backend, **overrides)


def _synthesize(args: argparse.Namespace) -> int:
    from .audio import save_wav, wav_bytes
    from .batch import check_output_folder, read_lines, synthesize_lines, synthesize_text

    if args.input is None and args.text is None:
        raise TacoglowError("give TEXT to speak, '-' to read standard input, or --input FILE")
    if args.input is not None and args.text is not None:
        raise TacoglowError("give either TEXT or --input FILE, not both")
    if args.input is not None:
        lines, out_dir = read_lines(args.input), check_output_folder(args.output)
    else:
        text = sys.stdin.read() if args.text == "-" else args.text
        if not text.strip():
            raise TacoglowError("text is empty: give at least one word to speak")
    synth = load_synthesizer(args)

    if args.input is not None:
        synthesize_lines(synth, lines, out_dir, seed=args.seed, progress=not args.quiet)
        return 0

    speech = synthesize_text(synth, text, seed=args.seed, progress=not args.quiet)
    if args.output == "-":
        sys.stdout.buffer.write(wav_bytes(speech.audio, speech.sample_rate))
        sys.stdout.buffer.flush()
    else:
        save_wav(args.output, speech.audio, speech.sample_rate)
        if not args.quiet:
            print(f"wrote {args.output}: {speech.duration:.2f} s at {speech.sample_rate} Hz (seed {speech.seed})",
                  file=sys.stderr)
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a checkpoint", description="Show a checkpoint's layout, config and size.")
    p.add_argument("checkpoint", type=Path)


def _info(args: argparse.Namespace) -> int:
    from .checkpoint import inspect_checkpoint

    print(inspect_checkpoint(args.checkpoint).describe())
    return 0


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="prepare a corpus for training",
                       description="Resample, compute mels once, split train/validation, record what was skipped.")
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="LJSpeech folder, path|text filelist or its folder")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder for the prepared dataset")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--val-fraction", type=float, default=0.02, help="share held out for validation (default 0.02)")
    split.add_argument("--val-count", type=int, help="number of clips held out for validation")
    split.add_argument("--val-ids", type=Path, metavar="FILE", help="file of the validation clip ids, one per line")
    p.add_argument("--trim-silence", action="store_true", help="cut leading and trailing silence")
    p.add_argument("--max-seconds", type=float, default=15.0, help="skip clips over this (default 15; 0: no limit)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the validation split (default 1234)")
    p.add_argument("--audio-config", type=Path, metavar="JSON", help="AudioConfig fields, or a dataset.json to reuse")
    p.add_argument("--gta", type=Path, help="Tacotron 2: write its teacher-forced mels of prepared DATA_DIR to OUT_DIR")
    p.add_argument("--force", action="store_true", help="replace a dataset already prepared in OUT_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _prepare(args: argparse.Namespace) -> int:
    from .data import prepare_dataset
    from .train import prepare_gta

    if args.gta:  # ground-truth-aligned mels, for fine-tuning a vocoder (train hifigan --input-mels OUT_DIR)
        prepare_gta(args.gta, args.data_dir, args.out_dir, progress=not args.quiet)
    else:
        val_ids = args.val_ids.read_text(encoding="utf-8").split() if args.val_ids else None
        prepare_dataset(args.data_dir, args.out_dir, audio=args.audio_config, val_fraction=args.val_fraction,
                        val_count=args.val_count, val_ids=val_ids, trim_silence=args.trim_silence,
                        max_seconds=args.max_seconds or None, seed=args.seed, force=args.force, progress=not args.quiet)
        print((args.out_dir / "summary.txt").read_text(encoding="utf-8"), end="")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train Tacotron 2, WaveGlow or HiFi-GAN on a prepared corpus",
                       description="Train Tacotron 2, WaveGlow or HiFi-GAN; an existing run folder is resumed.")
    p.add_argument("model", choices=("tacotron2", "waveglow", "hifigan"), help="which model to train")
    p.add_argument("--data", "--data-dir", dest="data", required=True, type=Path, help="prepared dataset folder")
    # torchrun reads "--run" as an abbreviation of its own --run-path: under torchrun, write --run-dir.
    p.add_argument("--run", "--run-dir", dest="run", required=True, type=Path, help="run folder (resumed if it exists)")
    p.add_argument("--config", help="nvidia, v1 (hifigan), small, or TrainConfig JSON (default: the run's, else small)")
    p.add_argument("--input-mels", type=Path, help="hifigan: mels from prepare --gta as inputs (fine-tuning)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in all")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--warm-start", type=Path, help="start a new run from this checkpoint's matching tensors")
    p.add_argument("--drop-embedding", action="store_true", help="with --warm-start: keep a fresh text embedding")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from the run's newest checkpoint (default); --no-resume refuses a run that has one")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--amp", choices=("none", "fp16", "bf16"), help="mixed precision (default: the config's)")


def _train(args: argparse.Namespace) -> int:
    import os

    from .train import resume_point, train_hifigan, train_tacotron2, train_waveglow

    report = os.environ.get("RANK", "0") == "0"  # under torchrun (-m tacoglow train) only rank 0 reports
    if report and args.resume and (point := resume_point(args.run)):
        print(f"resuming {args.run} from step {point.step} ({point.path})", file=sys.stderr)
    train = {"tacotron2": train_tacotron2, "waveglow": train_waveglow, "hifigan": train_hifigan}[args.model]
    extra = {"input_mels": args.input_mels} if args.model == "hifigan" else {"drop_embedding": args.drop_embedding}
    path = train(args.data, args.run, args.config, max_steps=args.max_steps, threads=args.threads, resume=args.resume,
                 warm_start=args.warm_start, device=args.device, amp=args.amp, **extra)
    if report:
        print(f"last checkpoint: {path}", file=sys.stderr)
    return 0


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """Server options of ``tacoglow serve`` (the voice options come from :func:`add_voice_arguments`)."""
    from .serve.limits import ServerLimits

    d = ServerLimits()
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--voice-name", default="default", help="name of the loaded voice in /voices")
    for flag, default, text in (("--max-input-chars", d.max_input_chars, "longest input, in characters"),
                                ("--max-concurrent", d.max_concurrent, "requests synthesized at once"),
                                ("--max-queue", d.max_queue, "requests waiting beyond those; more get 503"),
                                ("--timeout", d.request_timeout, "seconds a request may take"),
                                ("--batch-wait-ms", d.batch_wait * 1000, "milliseconds to gather concurrent requests")):
        p.add_argument(flag, type=type(default), default=default, help=f"{text} (default {default:g})")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP speech server",
                       description="Serve speech over HTTP (OpenAI-style /v1/audio/speech, streaming, a web page).")
    add_voice_arguments(p)
    add_serve_arguments(p)


def _serve(args: argparse.Namespace) -> int:
    from .serve import ServerLimits, run

    limits = ServerLimits(max_input_chars=args.max_input_chars, max_concurrent=args.max_concurrent,
                          max_queue=args.max_queue, request_timeout=args.timeout, batch_wait=args.batch_wait_ms / 1000)
    run(lambda: load_synthesizer(args), host=args.host, port=args.port, limits=limits, voice_name=args.voice_name)
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint as ONNX or TorchScript graphs",
                       description="Write a Tacotron 2 (encoder, memory_projection, decoder_step, postnet), a "
                                   "WaveGlow or a HiFi-GAN checkpoint as ONNX and/or TorchScript graphs, with a "
                                   "JSON manifest. "
                                   "Random numbers (prenet masks, WaveGlow noise) are graph inputs.")
    p.add_argument("checkpoint", type=Path, help="Tacotron 2, WaveGlow or HiFi-GAN checkpoint (any supported layout)")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder to write the graphs to")
    p.add_argument("--format", choices=("onnx", "torchscript", "both"), default="onnx")


def _export(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .export import export_onnx, export_torchscript
    from .hifigan import HiFiGAN
    from .tacotron2 import Tacotron2
    from .waveglow import WaveGlow

    model = cast(Tacotron2 | WaveGlow | HiFiGAN, load_model(args.checkpoint)[0].float().eval())  # load_model's kinds
    written: list[Path] = []
    if args.format in ("onnx", "both"):
        written += export_onnx(model, args.output).values()
    if args.format in ("torchscript", "both"):
        written += export_torchscript(model, args.output).values()
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tacoglow", description="Tacotron 2 + WaveGlow text-to-speech.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details, and show every error's traceback")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_synthesize(sub)
    _add_info(sub)
    _add_prepare(sub)
    _add_train(sub)
    _add_serve(sub)
    _add_export(sub)
    return parser


REPORT = "this is a bug in tacoglow: please report it, with the command and the traceback above"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="tacoglow: %(levelname)s: %(message)s")
    commands = {"synthesize": _synthesize, "info": _info, "prepare": _prepare, "train": _train, "serve": _serve,
                "export": _export}
    try:
        return commands[args.command](args)
    except BrokenPipeError:  # e.g. `tacoglow info CKPT | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("tacoglow: interrupted", file=sys.stderr)
        return 130
    except (TacoglowError, OSError) as error:  # refused input, a missing or unreadable file: one line
        if args.verbose:
            traceback.print_exc()
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"tacoglow: error: {message}", file=sys.stderr)
        return 1
    except Exception:  # anything else is a bug: keep everything needed to find it
        traceback.print_exc()
        print(f"tacoglow: internal error: {REPORT}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
