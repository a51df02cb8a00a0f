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
    p.add_argument("--subtitles", metavar="FILE", help="also write subtitles timed word by word: FILE.srt or "
                   "FILE.vtt (the suffix names the format); with --input, the format (srt or vtt): one file "
                   "beside each WAV, with its name")
    p.add_argument("--timings", metavar="FILE", help="also write each sentence's and word's start and end as JSON: "
                   "FILE.json; with --input, 'json': one file beside each WAV, with its name")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..audio import save_wav, wav_bytes
    from ..batch import check_output_folder, read_lines, synthesize_lines, synthesize_text
    from ..subtitles import line_sidecars, sidecar_kind, write_sidecar

    if args.input is None and args.text is None:
        raise TacoglowError("give TEXT to speak, '-' to read standard input, or --input FILE")
    if args.input is not None and args.text is not None:
        raise TacoglowError("give either TEXT or --input FILE, not both")
    if args.input is not None:
        lines, out_dir = read_lines(args.input), check_output_folder(args.output)
        sidecars = line_sidecars(args.subtitles, args.timings)
    else:
        if args.subtitles is not None:
            sidecar_kind(args.subtitles, (".srt", ".vtt"))
        if args.timings is not None:
            sidecar_kind(args.timings, (".json",))
        text = sys.stdin.read() if args.text == "-" else args.text
        if not text.strip():
            raise TacoglowError("text is empty: give at least one word to speak")
    synth = load_synthesizer(args)

    if args.input is not None:
        synthesize_lines(synth, lines, out_dir, seed=args.seed, progress=not args.quiet, sidecars=sidecars)
        return 0

    speech = synthesize_text(synth, text, seed=args.seed, progress=not args.quiet)
    for path in (args.subtitles, args.timings):
        if path is not None:
            write_sidecar(path, speech)
    if args.output == "-":
        sys.stdout.buffer.write(wav_bytes(speech.audio, speech.sample_rate))
        sys.stdout.buffer.flush()
    else:
        save_wav(args.output, speech.audio, speech.sample_rate)
        if not args.quiet:
            print(f"wrote {args.output}: {speech.duration:.2f} s at {speech.sample_rate} Hz (seed {speech.seed})",
                  file=sys.stderr)
    return 0
