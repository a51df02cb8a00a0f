"""``tacoglow synthesize``: text, standard input or a file of lines into WAV; JSON lines in, results out; raw PCM."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from ..errors import TacoglowError
from .voice import add_voice_arguments, add_voice_dir_arguments, load_catalog, load_voice

# --json-input accepts a line's "voice" only when it names the loaded voice; `tacoglow serve` names it so too.


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synthesize", help="speak text into a WAV file",
                       description="Speak TEXT (or each line of --input) into 16-bit PCM WAV. Text that starts "
                                   "with <speak> is SSML.")
    p.add_argument("text", nargs="?", help="text to speak; '-' reads standard input")
    p.add_argument("-i", "--input", type=Path,
                   help="text file: one utterance per line, written to the -o folder (with --json-input: JSON lines)")
    p.add_argument("-o", "--output",
                   help="WAV file ('-' writes to standard output), or a folder with --input or --json-input")
    add_voice_arguments(p)
    add_voice_dir_arguments(p)
    p.add_argument("--voice", metavar="NAME", help="the voice of --voice-dir that speaks (default: the default voice; "
                   "with --json-input, each line's 'voice' chooses)")
    p.add_argument("--seed", type=int, default=None, help="random seed: the same seed gives the same audio")
    p.add_argument("--ssml", action="store_true",
                   help="the text (each line with --input) is SSML; text starting with <speak> is SSML anyway")
    # dest: the SynthesisConfig field it overrides (see load_synthesizer).
    p.add_argument("--sentence-silence", dest="sentence_pause", type=float, default=None, metavar="SECONDS",
                   help="seconds of silence after each sentence but the last (default: the voice's, else 0.2)")
    p.add_argument("--output-raw", action="store_true",
                   help="write raw 16-bit mono little-endian PCM to standard output, each sentence as soon as it is "
                        "made (e.g. | aplay -r 22050 -f S16_LE -c 1)")
    p.add_argument("--json-input", action="store_true",
                   help="read JSON lines from standard input (or -i FILE): 'text', and optionally 'output_file', "
                        "'seed', 'voice', 'ssml'; print one JSON result line per input")
    p.add_argument("--subtitles", metavar="FILE", help="also write subtitles timed word by word: FILE.srt or "
                   "FILE.vtt (the suffix names the format); with --input, the format (srt or vtt): one file "
                   "beside each WAV, with its name")
    p.add_argument("--timings", metavar="FILE", help="also write each sentence's and word's start and end as JSON: "
                   "FILE.json; with --input, 'json': one file beside each WAV, with its name")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="with --input: speak the lines on a Ray cluster, resuming a folder partly written (ADDRESS: "
                        "a running cluster's, e.g. HEAD:6379; none: start one here); pip install 'tacoglow[cluster]'")
    p.add_argument("--actors", type=int, metavar="N",
                   help="with --ray: actors speaking, each loading the voice once and using --threads threads "
                        "(default: as many as the cluster's CPUs allow)")


def run(args: argparse.Namespace) -> int:
    if args.json_input:
        return _run_json(args)
    if args.output_raw:
        return _run_raw(args)
    from ..audio import save_wav, wav_bytes
    from ..batch import check_output_folder, read_lines, synthesize_lines, synthesize_text
    from ..subtitles import line_sidecars, sidecar_kind, write_sidecar

    if args.input is None and args.text is None:
        raise TacoglowError("give TEXT to speak, '-' to read standard input, or --input FILE")
    if args.input is not None and args.text is not None:
        raise TacoglowError("give either TEXT or --input FILE, not both")
    if args.output is None:
        raise TacoglowError("give -o FILE ('-' for standard output; a folder with --input), or use --output-raw")
    if args.input is None and (args.ray is not None or args.actors is not None):
        raise TacoglowError("--ray and --actors speak the lines of a file: give --input FILE")
    if args.input is not None:
        lines, out_dir = read_lines(args.input), check_output_folder(args.output)
        sidecars = line_sidecars(args.subtitles, args.timings)
        if args.ray is not None:
            if sidecars or args.ssml:  # (lines that start with <speak> are SSML on Ray too)
                raise TacoglowError("--ray writes WAVs only, and reads SSML lines by their <speak>: run without "
                                    "--subtitles, --timings and --ssml")
            return speak_on_ray(args, lines, out_dir)
    else:
        if args.subtitles is not None:
            sidecar_kind(args.subtitles, (".srt", ".vtt"))
        if args.timings is not None:
            sidecar_kind(args.timings, (".json",))
        text = _read_text(args)
    synth = load_voice(args)

    if args.input is not None:
        synthesize_lines(synth, lines, out_dir, seed=args.seed, progress=not args.quiet, ssml=args.ssml,
                         sidecars=sidecars)
        return 0

    speech = synthesize_text(synth, text, seed=args.seed, progress=not args.quiet, ssml=args.ssml)
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


def _read_text(args: argparse.Namespace) -> str:
    text = sys.stdin.read() if args.text == "-" else args.text
    if not text.strip():
        raise TacoglowError("text is empty: give at least one word to speak")
    return text


def _run_raw(args: argparse.Namespace) -> int:
    """--output-raw: TEXT (or standard input) as raw PCM on standard output, sentence by sentence."""
    from ..batch import write_raw

    if args.input is not None or args.output is not None:
        raise TacoglowError("--output-raw writes standard output: give TEXT or '-', without --input or -o")
    if args.text is None:
        raise TacoglowError("give TEXT to speak, or '-' to read standard input")
    text = _read_text(args)
    synth = load_voice(args)
    seed, samples = write_raw(synth, text, sys.stdout.buffer, seed=args.seed, ssml=args.ssml)
    if not args.quiet:
        rate = synth.audio.sampling_rate
        print(f"wrote {samples / rate:.2f} s of 16-bit PCM at {rate} Hz (seed {seed})", file=sys.stderr)
    return 0


def _run_json(args: argparse.Namespace) -> int:
    """--json-input: JSON lines from standard input or -i FILE; one result line each on standard output."""
    from ..batch import check_output_folder, synthesize_json_lines

    if args.text not in (None, "-"):
        raise TacoglowError("--json-input reads JSON lines from standard input or -i FILE, not TEXT")
    if args.output_raw or args.output == "-":
        raise TacoglowError("--json-input prints its results on standard output: write the audio to files")
    out_dir = check_output_folder(args.output) if args.output is not None else None
    lines: Iterable[bytes] = sys.stdin.buffer  # read line by line: each result comes out as soon as it is done
    total = None
    if args.input is not None:
        if not args.input.is_file():
            raise TacoglowError(f"{args.input}: no such file of JSON lines")
        numbered = args.input.read_bytes().splitlines()
        lines, total = numbered, len(numbered)
    if args.voice is not None:
        raise TacoglowError("with --json-input, each line's 'voice' chooses the voice: give no --voice")
    failed = synthesize_json_lines(load_catalog(args), lines, sys.stdout, out_dir=out_dir, seed=args.seed,
                                   ssml=args.ssml, total=total)
    if failed:
        raise TacoglowError(f"{failed} input line(s) failed; their result lines say why")
    return 0


def speak_on_ray(args: argparse.Namespace, lines: list[str], out_dir: Path) -> int:
    import functools

    from ..cluster import import_ray, synthesize_lines_on_ray
    from ..hub import choose_checkpoints

    import_ray()
    choose_checkpoints(args.tacotron2, args.waveglow, args.hifigan, args.vocoder)  # no voice to choose: fails here
    # Each actor loads the voice: the options travel to them (pickled) with the voice module's function.
    report = synthesize_lines_on_ray(functools.partial(load_voice, args), lines, out_dir, seed=args.seed,
                                     address=args.ray or None, actors=args.actors, threads=args.threads or 1,
                                     progress=not args.quiet)
    if not args.quiet:
        print(f"wrote {len(report.written)} files to {out_dir} ({report.audio_seconds:.1f} s of audio); "
              f"{len(report.skipped)} were already written", file=sys.stderr)
    return 0
