"""``tacoglow info | prepare | train | export``: the verbs that work on checkpoints and corpora."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import cast


def add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a checkpoint", description="Show a checkpoint's layout, config and size.")
    p.add_argument("checkpoint", type=Path)


def info(args: argparse.Namespace) -> int:
    from ..checkpoint import inspect_checkpoint

    print(inspect_checkpoint(args.checkpoint).describe())
    return 0


def add_prepare(sub: argparse._SubParsersAction) -> None:
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


def prepare(args: argparse.Namespace) -> int:
    from ..data import prepare_dataset
    from ..train import prepare_gta

    if args.gta:  # ground-truth-aligned mels, for fine-tuning a vocoder (train hifigan --input-mels OUT_DIR)
        prepare_gta(args.gta, args.data_dir, args.out_dir, progress=not args.quiet)
    else:
        val_ids = args.val_ids.read_text(encoding="utf-8").split() if args.val_ids else None
        prepare_dataset(args.data_dir, args.out_dir, audio=args.audio_config, val_fraction=args.val_fraction,
                        val_count=args.val_count, val_ids=val_ids, trim_silence=args.trim_silence,
                        max_seconds=args.max_seconds or None, seed=args.seed, force=args.force, progress=not args.quiet)
        print((args.out_dir / "summary.txt").read_text(encoding="utf-8"), end="")
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train Tacotron 2, WaveGlow, HiFi-GAN or a phone verifier on a prepared corpus",
                       description="Train Tacotron 2, WaveGlow, HiFi-GAN or the phone verifier that chooses among "
                                   "decodings; an existing run folder is resumed.")
    p.add_argument("model", choices=("tacotron2", "waveglow", "hifigan", "verifier"), help="which model to train")
    p.add_argument("--data", "--data-dir", dest="data", required=True, type=Path, help="prepared dataset folder")
    # torchrun reads "--run" as an abbreviation of its own --run-path: under torchrun, write --run-dir.
    p.add_argument("--run", "--run-dir", dest="run", required=True, type=Path, help="run folder (resumed if it exists)")
    p.add_argument("--config", help="nvidia, v1 (hifigan), small, or TrainConfig JSON (default: the run's, else small)")
    p.add_argument("--input-mels", type=Path, help="hifigan: mels from prepare --gta as inputs (fine-tuning); "
                                                   "verifier: trained on beside the recorded ones")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in all")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--warm-start", type=Path, help="start a new run from this checkpoint's matching tensors")
    p.add_argument("--drop-embedding", action="store_true", help="with --warm-start: keep a fresh text embedding")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from the run's newest checkpoint (default); --no-resume refuses a run that has one")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--amp", choices=("none", "fp16", "bf16"), help="mixed precision (default: the config's)")


def train(args: argparse.Namespace) -> int:
    import os

    from ..train import resume_point, train_hifigan, train_tacotron2, train_verifier, train_waveglow

    report = os.environ.get("RANK", "0") == "0"  # under torchrun (-m tacoglow train) only rank 0 reports
    if report and args.resume and (point := resume_point(args.run)):
        print(f"resuming {args.run} from step {point.step} ({point.path})", file=sys.stderr)
    train = {"tacotron2": train_tacotron2, "waveglow": train_waveglow, "hifigan": train_hifigan,
             "verifier": train_verifier}[args.model]
    mels = args.model in ("hifigan", "verifier")
    extra = {"input_mels": args.input_mels} if mels else {"drop_embedding": args.drop_embedding}
    path = train(args.data, args.run, args.config, max_steps=args.max_steps, threads=args.threads, resume=args.resume,
                 warm_start=args.warm_start, device=args.device, amp=args.amp, **extra)
    if report:
        print(f"last checkpoint: {path}", file=sys.stderr)
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint as ONNX or TorchScript graphs",
                       description="Write a Tacotron 2 (encoder, memory_projection, decoder_step, postnet), a "
                                   "WaveGlow or a HiFi-GAN checkpoint as ONNX and/or TorchScript graphs, with a "
                                   "JSON manifest. "
                                   "Random numbers (prenet masks, WaveGlow noise) are graph inputs.")
    p.add_argument("checkpoint", type=Path, help="Tacotron 2, WaveGlow or HiFi-GAN checkpoint (any supported layout)")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder to write the graphs to")
    p.add_argument("--format", choices=("onnx", "torchscript", "both"), default="onnx")


def export(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model
    from ..export import export_onnx, export_torchscript
    from ..hifigan import HiFiGAN
    from ..tacotron2 import Tacotron2
    from ..waveglow import WaveGlow

    model = cast(Tacotron2 | WaveGlow | HiFiGAN, load_model(args.checkpoint)[0].float().eval())  # load_model's kinds
    written: list[Path] = []
    if args.format in ("onnx", "both"):
        written += export_onnx(model, args.output).values()
    if args.format in ("torchscript", "both"):
        written += export_torchscript(model, args.output).values()
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0
