"""``tacoglow synthesize``: text, standard input or a file of lines into WAV."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import TacoglowError
from .voice import add_voice_arguments, load_synthesizer


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synthesize", help="speak text into a WAV file",
                       description="Speak TEXT (or each line of --input) into 16-bit PCM WAV.")
    p.add_argument("text", nargs="?", help="text to speak; '-' reads standard input")
    p.add_argument("-i", "--input", type=Path, help="text file: one utterance per line, written to the -o folder")
    p.add_argument("-o", "--output", required=True,
                   help="WAV file ('-' writes to standard output), or a folder with --input")
    add_voice_arguments(p)
    p.add_argument("--seed", type=int, default=None, help="random seed: the same seed gives the same audio")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="with --input: speak the lines on a Ray cluster, resuming a folder partly written (ADDRESS: "
                        "a running cluster's, e.g. HEAD:6379; none: start one here); pip install 'tacoglow[cluster]'")
    p.add_argument("--actors", type=int, metavar="N",
                   help="with --ray: actors speaking, each loading the voice once and using --threads threads "
                        "(default: as many as the cluster's CPUs allow)")


def run(args: argparse.Namespace) -> int:
    from ..audio import save_wav, wav_bytes
    from ..batch import check_output_folder, read_lines, synthesize_lines, synthesize_text

    if args.input is None and args.text is None:
        raise TacoglowError("give TEXT to speak, '-' to read standard input, or --input FILE")
    if args.input is not None and args.text is not None:
        raise TacoglowError("give either TEXT or --input FILE, not both")
    if args.input is None and (args.ray is not None or args.actors is not None):
        raise TacoglowError("--ray and --actors speak the lines of a file: give --input FILE")
    if args.input is not None:
        lines, out_dir = read_lines(args.input), check_output_folder(args.output)
        if args.ray is not None:
            return speak_on_ray(args, lines, out_dir)
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


def speak_on_ray(args: argparse.Namespace, lines: list[str], out_dir: Path) -> int:
    import functools

    from ..cluster import import_ray, synthesize_lines_on_ray
    from ..hub import choose_checkpoints

    import_ray()
    choose_checkpoints(args.tacotron2, args.waveglow, args.hifigan, args.vocoder)  # no voice to choose: fails here
    # Each actor loads the voice: the options travel to them (pickled) with the voice module's function.
    report = synthesize_lines_on_ray(functools.partial(load_synthesizer, args), lines, out_dir, seed=args.seed,
                                     address=args.ray or None, actors=args.actors, threads=args.threads or 1,
                                     progress=not args.quiet)
    if not args.quiet:
        print(f"wrote {len(report.written)} files to {out_dir} ({report.audio_seconds:.1f} s of audio); "
              f"{len(report.skipped)} were already written", file=sys.stderr)
    return 0
