"""Command line: ``tacoglow synthesize | info | prepare | train | serve | export``, thin layers over the library.

One module per verb (or family of verbs): each has ``add_parser`` / ``add_<verb>`` and the function that runs it."""
from __future__ import annotations

import argparse
import logging
import sys
import traceback

from ..errors import TacoglowError
from ..quantized import avoid_amx
from . import models, serve, synthesize
from .serve import add_serve_arguments
from .voice import add_voice_arguments, load_synthesizer

__all__ = ["build_parser", "main", "add_voice_arguments", "add_serve_arguments", "load_synthesizer"]

log = logging.getLogger("tacoglow")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tacoglow", description="Tacotron 2 + WaveGlow text-to-speech.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details, and show every error's traceback")
    sub = parser.add_subparsers(dest="command", required=True)
    synthesize.add_parser(sub)
    models.add_info(sub)
    models.add_prepare(sub)
    models.add_train(sub)
    serve.add_parser(sub)
    models.add_export(sub)
    return parser


REPORT = "this is a bug in tacoglow: please report it, with the command and the traceback above"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("synthesize", "serve"):  # training keeps AMX: its bf16 convolutions have a few fixed shapes
        avoid_amx()  # before torch's first oneDNN operation, or it is too late (tacoglow.quantized)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="tacoglow: %(levelname)s: %(message)s")
    commands = {"synthesize": synthesize.run, "info": models.info, "prepare": models.prepare, "train": models.train,
                "serve": serve.run, "export": models.export}
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
