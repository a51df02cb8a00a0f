"""Serving on a Ray cluster (``tacoglow serve --ray``): the app of :func:`tacoglow.serve.create_app`, built on each
replica of a Ray Serve deployment behind Ray's HTTP proxy; one code path for the routes.

Each replica loads the voice once and runs the app whole: its batching scheduler, limits, metrics, Host allow-list
and API-key check. Ray routes each request to a replica with room, replaces a replica that dies, and (with
``min_replicas``/``max_replicas``) adds or removes replicas to keep ``target_ongoing_requests`` per replica.
``/health`` adds ``"replicas"``, the deployment's running replicas, and every response names its replica in
``X-Replica`` (the replica's Ray actor name).

Ray is imported inside the functions (:func:`tacoglow.cluster.import_ray`): importing tacoglow never needs it.
"""
from __future__ import annotations

import asyncio
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from fastapi import FastAPI

from ..cluster import connect, error_cause, import_ray
from ..config import ConfigError
from ..errors import TacoglowError
from ..synthesizer import Synthesizer
from .app import create_app, served_hosts
from .auth import check_exposure
from .limits import ServerLimits

APP_NAME = "tacoglow"
REPLICA_HEADER = b"x-replica"


@dataclass
class RayServeOptions:
    """How the deployment runs on the cluster (``tacoglow serve --ray`` options)."""

    address: str | None = None  # a running cluster's address ("auto", "HOST:6379", "ray://HOST:10001"); None: start one
    replicas: int = 1  # a fixed number of replicas, unless both autoscaling bounds are given
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float = 2.0  # autoscaling: requests in flight per replica that it aims at
    threads: int = 1  # torch threads per replica, and the Ray CPUs each replica reserves

    def check(self) -> None:
        """ConfigError, naming the options, for settings no deployment can keep."""
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ConfigError("give both --min-replicas and --max-replicas to autoscale, or --replicas N")
        if self.min_replicas is not None and not 0 < self.min_replicas <= (self.max_replicas or 0):
            raise ConfigError(f"--min-replicas ({self.min_replicas}) must be at least 1 and at most "
                              f"--max-replicas ({self.max_replicas})")
        if self.replicas < 1 or self.threads < 1 or self.target_ongoing_requests <= 0:
            raise ConfigError("--replicas and --threads must be at least 1, --target-ongoing-requests positive")

    def deployment(self, limits: ServerLimits) -> dict[str, Any]:
        """Ray Serve's deployment options. A replica takes as many requests as its own limits admit (synthesized
        plus queued, so that concurrent requests are batched there); Ray's proxy holds up to ``max_queue`` more
        for the next replica with room, and answers 503 beyond that."""
        options: dict[str, Any] = {
            "ray_actor_options": {"num_cpus": self.threads},
            "max_ongoing_requests": limits.max_concurrent + limits.max_queue, "max_queued_requests": limits.max_queue,
            "max_constructor_retry_count": 3}  # a voice that fails to load fails the deployment soon
        if self.min_replicas is None:
            options["num_replicas"] = self.replicas
        else:
            options["autoscaling_config"] = {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                                             "target_ongoing_requests": self.target_ongoing_requests}
        return options


class _ReplicaHeader:
    """Pure ASGI middleware: names the replica that answered in each response's ``X-Replica`` header."""

    def __init__(self, app, replica: str):
        self.app, self.replica = app, replica.encode()

    async def __call__(self, scope, receive, send) -> None:
        async def named(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (REPLICA_HEADER, self.replica)]}
            await send(message)

        await self.app(scope, receive, named if scope["type"] == "http" else send)


def _live_replicas(app_name: str, deployment: str) -> Callable[[], Any]:
    """``/health``'s extra field: the deployment's running replicas, as Ray Serve's controller counts them."""
    serve = import_ray().serve

    async def fields() -> dict:
        status = await asyncio.to_thread(serve.status)
        application = status.applications.get(app_name)
        states = application.deployments[deployment].replica_states if application else {}
        return {"replicas": int(states.get("RUNNING", 0))}

    return fields


class SpeechReplica:
    """One replica of the deployment. Ray Serve calls ``__serve_build_asgi_app__`` on the replica, after
    ``__init__``: the app, and so the voice, is made there, never pickled."""

    def __init__(self, synthesizer: Callable[[], Synthesizer], limits: ServerLimits, voice_name: str,
                 api_key: str | None, allowed_hosts: set[str] | None, threads: int):
        self.synthesizer, self.limits, self.voice_name = synthesizer, limits, voice_name
        self.api_key, self.allowed_hosts, self.threads = api_key, allowed_hosts, threads

    def __serve_build_asgi_app__(self) -> FastAPI:
        context = import_ray().serve.get_replica_context()
        torch.set_num_threads(self.threads)
        synth = self.synthesizer()  # here, not in the app's start-up: a failure then reaches the controller whole
        app = create_app(synth, limits=self.limits, voice_name=self.voice_name,
                         allowed_hosts=self.allowed_hosts, api_key=self.api_key,
                         health_fields=_live_replicas(context.app_name, context.deployment))
        app.add_middleware(_ReplicaHeader, replica=context.replica_id.to_full_id_str())
        return app


def speech_application(synthesizer: Callable[[], Synthesizer], *, limits: ServerLimits | None = None,
                       voice_name: str = "default", api_key: str | None = None,
                       allowed_hosts: set[str] | None = None, options: RayServeOptions | None = None) -> Any:
    """The Ray Serve application (bound deployment) that serves the voice ``synthesizer()`` loads.

    ``synthesizer`` is pickled to the replicas: a module-level function or a ``functools.partial`` of one (e.g. of
    ``Synthesizer.from_checkpoints``) whose files every node can read. The other arguments are
    :func:`tacoglow.serve.create_app`'s, and the deployment's :class:`RayServeOptions`.
    """
    serve = import_ray().serve
    limits, options = limits or ServerLimits(), options or RayServeOptions()
    limits.check()
    options.check()
    deployment = serve.deployment(serve.ingress()(SpeechReplica), name="SpeechReplica",
                                  **options.deployment(limits))
    return deployment.bind(synthesizer, limits, voice_name, api_key, allowed_hosts, options.threads)


def start_on_ray(synthesizer: Callable[[], Synthesizer], *, host: str = "127.0.0.1", port: int = 8000,
                 limits: ServerLimits | None = None, voice_name: str = "default", api_key: str | None = None,
                 no_auth: bool = False, options: RayServeOptions | None = None) -> str:
    """Deploy the voice on the cluster (``options.address``; None starts one here, or uses this process's) behind
    Ray's HTTP proxy on ``host:port``, and return the base URL once every replica has loaded it.

    The key rules are :func:`tacoglow.serve.run`'s. A cluster whose Serve already runs keeps its own proxy address.
    """
    options = options or RayServeOptions()
    check_exposure(host, api_key, no_auth)
    application = speech_application(synthesizer, limits=limits, voice_name=voice_name, api_key=api_key,
                                     allowed_hosts=served_hosts(host, api_key), options=options)
    serve = import_ray().serve
    connect(options.address)
    serve.start(http_options={"host": host, "port": port})
    try:
        serve.run(application, name=APP_NAME, route_prefix="/")
    except RuntimeError as error:  # the replicas failed to start: the controller has their last error
        application = serve.status().applications.get(APP_NAME)
        messages = [d.message for d in application.deployments.values() if d.message] if application else []
        serve.delete(APP_NAME)  # no more tries
        reason = error_cause(messages[-1] if messages else str(error))
        raise TacoglowError(f"the Ray deployment did not start: {reason}") from None
    return f"http://{host}:{port}"


def run_on_ray(synthesizer: Callable[[], Synthesizer], *, host: str = "127.0.0.1", port: int = 8000,
               limits: ServerLimits | None = None, voice_name: str = "default", api_key: str | None = None,
               no_auth: bool = False, options: RayServeOptions | None = None) -> None:
    """:func:`start_on_ray`, then serve until interrupted; then remove the application (and stop the cluster this
    call started)."""
    limits, options = limits or ServerLimits(), options or RayServeOptions()
    limits.check()
    options.check()
    check_exposure(host, api_key, no_auth)  # settings first: they fail in a line, before Ray loads
    ray = import_ray()
    started_here = not ray.is_initialized() and options.address is None
    url = start_on_ray(synthesizer, host=host, port=port, limits=limits, voice_name=voice_name, api_key=api_key,
                       no_auth=no_auth, options=options)
    print(f"serving on {url} from {options.replicas if options.min_replicas is None else options.min_replicas} "
          f"Ray replica(s) (Ctrl-C stops)", file=sys.stderr)

    def stop(signum, frame) -> None:  # a service manager's stop (SIGTERM) ends as cleanly as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if started_here:
            ray.serve.shutdown()
            ray.shutdown()
        else:
            ray.serve.delete(APP_NAME)
