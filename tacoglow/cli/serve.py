"""``tacoglow serve``: the HTTP speech server's options."""
from __future__ import annotations

import argparse
import os

from .voice import add_voice_arguments, load_synthesizer


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """Server options of ``tacoglow serve`` (the voice options come from :func:`add_voice_arguments`)."""
    from ..serve.auth import KEY_ENVIRONMENT
    from ..serve.limits import ServerLimits

    d = ServerLimits()
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--voice-name", default="default", help="name of the loaded voice in /voices")
    p.add_argument("--api-key", default=os.environ.get(KEY_ENVIRONMENT) or None, metavar="KEY",
                   help=f"require 'Authorization: Bearer KEY' on every route but /health and the web page "
                        f"(default: ${KEY_ENVIRONMENT}, which keeps the key out of the process list)")
    p.add_argument("--no-auth", action="store_true",
                   help="serve an address beyond loopback without a key (e.g. behind an authenticating proxy)")
    for flag, default, text in (("--max-input-chars", d.max_input_chars, "longest input, in characters"),
                                ("--max-concurrent", d.max_concurrent, "requests synthesized at once"),
                                ("--max-queue", d.max_queue, "requests waiting beyond those; more get 503"),
                                ("--timeout", d.request_timeout, "seconds a request may take"),
                                ("--batch-wait-ms", d.batch_wait * 1000, "milliseconds to gather concurrent requests")):
        p.add_argument(flag, type=type(default), default=default, help=f"{text} (default {default:g})")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP speech server",
                       description="Serve speech over HTTP (OpenAI-style /v1/audio/speech, streaming, a web page).")
    add_voice_arguments(p)
    add_serve_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..serve import ServerLimits, run

    limits = ServerLimits(max_input_chars=args.max_input_chars, max_concurrent=args.max_concurrent,
                          max_queue=args.max_queue, request_timeout=args.timeout, batch_wait=args.batch_wait_ms / 1000)
    run(lambda: load_synthesizer(args), host=args.host, port=args.port, limits=limits, voice_name=args.voice_name,
        api_key=args.api_key, no_auth=args.no_auth)
    return 0
