"""``tacoglow serve``: the HTTP speech server's options (or, with ``--wyoming``, Home Assistant's protocol)."""
from __future__ import annotations

import argparse
import functools
import os
import shlex
import sys

from ..config import ConfigError
from .voice import add_voice_arguments, add_voice_dir_arguments, load_catalog, load_synthesizer


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
    p.add_argument("--seed", type=int, default=None,
                   help="seed of every request that names none: the same text gives the same audio (default: a "
                        "fresh one per request)")
    # Several voices in one process (served beside the default voice), and Home Assistant's protocol.
    add_voice_dir_arguments(p)
    p.add_argument("--wyoming", metavar="URI",
                   help="speak Home Assistant's Wyoming protocol at URI (tcp://HOST:PORT, unix://PATH or stdio://) "
                        "instead of HTTP")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP (or Wyoming) speech server",
                       description="Serve speech over HTTP (OpenAI-style /v1/audio/speech, streaming, a web page).")
    add_voice_arguments(p)
    add_serve_arguments(p)
    add_ray_arguments(p)


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    """``tacoglow serve --ray``: the same server as replicas of a Ray Serve deployment (tacoglow[cluster])."""
    ray = p.add_argument_group("on a Ray cluster (pip install 'tacoglow[cluster]'; --threads is per replica)")
    ray.add_argument("--ray", action="store_true", help="serve from Ray Serve replicas, each holding the voice")
    ray.add_argument("--ray-address", metavar="ADDRESS",
                     help="join the Ray cluster at ADDRESS (e.g. HEAD:6379 or auto; default: start one here)")
    ray.add_argument("--replicas", type=int, metavar="N", help="a fixed number of replicas (default 1)")
    ray.add_argument("--min-replicas", type=int, metavar="A", help="autoscale between A and --max-replicas")
    ray.add_argument("--max-replicas", type=int, metavar="B", help="autoscale between --min-replicas and B")
    ray.add_argument("--target-ongoing-requests", type=float, default=2.0, metavar="R",
                     help="autoscaling adds replicas above R requests in flight per replica (default 2)")


def run(args: argparse.Namespace) -> int:
    from ..serve import run

    if args.ray:
        from ..serve.ray import run_on_ray

        if given := [flag for flag, value in (("--wyoming", args.wyoming), ("--voice-dir", args.voice_dir),
                                              ("--seed", args.seed)) if value is not None]:
            raise ConfigError(f"{given[0]} is not available with --ray: a Ray deployment serves one voice over HTTP")
        # The replicas load the voice: the options travel to them (pickled) with this module's function.
        run_on_ray(functools.partial(load_synthesizer, args), host=args.host, port=args.port, limits=limits_of(args),
                   voice_name=args.voice_name, api_key=args.api_key, no_auth=args.no_auth, options=ray_options(args))
        return 0
    ray_only = ("ray_address", "replicas", "min_replicas", "max_replicas")
    if given := [name for name in ray_only if getattr(args, name) is not None]:
        raise ConfigError(f"--{given[0].replace('_', '-')} needs --ray")
    if args.wyoming:
        from ..serve.wyoming import run_wyoming, wyoming_server

        server = wyoming_server(args.wyoming)  # a bad URI is refused before any loading
        print(f"tacoglow: loading the voices, then serving Wyoming at {args.wyoming} (Ctrl-C stops)", file=sys.stderr)
        run_wyoming(lambda: load_catalog(args), server, seed=args.seed, max_input_chars=args.max_input_chars)
        return 0
    run(lambda: load_catalog(args), host=args.host, port=args.port, limits=limits_of(args),
        voice_name=args.voice_name, seed=args.seed, api_key=args.api_key, no_auth=args.no_auth)
    return 0


def limits_of(args: argparse.Namespace):
    from ..serve import ServerLimits

    return ServerLimits(max_input_chars=args.max_input_chars, max_concurrent=args.max_concurrent,
                        max_queue=args.max_queue, request_timeout=args.timeout, batch_wait=args.batch_wait_ms / 1000)


def ray_options(args: argparse.Namespace):
    from ..serve.ray import RayServeOptions

    if args.replicas is not None and args.min_replicas is not None:
        raise ConfigError("give either --replicas N or --min-replicas/--max-replicas, not both")
    return RayServeOptions(address=args.ray_address, replicas=1 if args.replicas is None else args.replicas,
                           min_replicas=args.min_replicas, max_replicas=args.max_replicas,
                           target_ongoing_requests=args.target_ongoing_requests, threads=args.threads or 1)


def ray_application(config: dict):
    """A Ray Serve application builder, for ``serve run`` and KubeRay's RayService (import path
    ``tacoglow.cli.serve:ray_application``): ``config["options"]`` is a string of ``tacoglow serve`` options, as on
    the command line. Ray's proxy is taken to listen beyond loopback: a key (``--api-key`` or the variable
    TACOGLOW_API_KEY of the cluster's pods) or ``--no-auth`` is required."""
    from ..serve.auth import check_exposure
    from ..serve.ray import speech_application

    p = argparse.ArgumentParser(prog="tacoglow serve")
    add_voice_arguments(p)
    add_serve_arguments(p)
    add_ray_arguments(p)
    args = p.parse_args(shlex.split(config.get("options", "")))
    check_exposure("0.0.0.0", args.api_key, args.no_auth)
    return speech_application(functools.partial(load_synthesizer, args), limits=limits_of(args),
                              voice_name=args.voice_name, api_key=args.api_key, options=ray_options(args))
