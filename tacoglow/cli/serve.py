"""``tacoglow serve``: the HTTP speech server's options (or, with ``--wyoming``, Home Assistant's protocol)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .voice import add_voice_arguments, load_catalog


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """Server options of ``tacoglow serve`` (the voice options come from :func:`add_voice_arguments`)."""
    from ..serve.limits import ServerLimits

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
    p.add_argument("--seed", type=int, default=None,
                   help="seed of every request that names none: the same text gives the same audio (default: a "
                        "fresh one per request)")
    # Several voices in one process, and Home Assistant's protocol.
    p.add_argument("--voice-dir", type=Path, metavar="DIR",
                   help="a folder of voice folders (each with tacotron2.pt, optionally hifigan.pt or waveglow.pt), "
                        "served beside the default voice under their folder names, each loaded on first use")
    p.add_argument("--max-loaded-voices", type=int, default=4, metavar="N",
                   help="voices of --voice-dir kept loaded at once; the least recently used idle one is unloaded "
                        "(default 4)")
    p.add_argument("--wyoming", metavar="URI",
                   help="speak Home Assistant's Wyoming protocol at URI (tcp://HOST:PORT, unix://PATH or stdio://) "
                        "instead of HTTP")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP (or Wyoming) speech server",
                       description="Serve speech over HTTP (OpenAI-style /v1/audio/speech, streaming, a web page).")
    add_voice_arguments(p)
    add_serve_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..serve import ServerLimits, run

    limits = ServerLimits(max_input_chars=args.max_input_chars, max_concurrent=args.max_concurrent,
                          max_queue=args.max_queue, request_timeout=args.timeout, batch_wait=args.batch_wait_ms / 1000)
    if args.wyoming:
        from ..serve.wyoming import run_wyoming, wyoming_server

        server = wyoming_server(args.wyoming)  # a bad URI is refused before any loading
        print(f"tacoglow: loading the voices, then serving Wyoming at {args.wyoming} (Ctrl-C stops)", file=sys.stderr)
        run_wyoming(lambda: load_catalog(args), server, seed=args.seed, max_input_chars=args.max_input_chars)
        return 0
    run(lambda: load_catalog(args), host=args.host, port=args.port, limits=limits, voice_name=args.voice_name,
        seed=args.seed)
    return 0
