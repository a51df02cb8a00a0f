"""HTTP speech server: an OpenAI-compatible endpoint, a native one and a web page over one Synthesizer.

Endpoints (every error is JSON ``{"error": {"message", "type", "param", "code"}}``)::

    POST /v1/audio/speech   OpenAI's audio API: model, input, voice, response_format, speed
    POST /v1/synthesize     tacoglow's own: text, seed, sigma, denoiser_strength, vocoder, speed, format
    GET  /health  /voices  /metrics (Prometheus text)  /  (a page that plays the stream)

Requests are batched across clients by :class:`BatchScheduler` (``batching``, no HTTP); the rest
only translates HTTP to jobs and pieces of audio back to bytes. ``wav``, ``pcm`` and ``jsonl``
(native: one JSON line per sentence with its audio, alignment and word timings) are streamed sentence by
sentence; the other formats are encoded once the last sentence is ready.

Modules: ``limits``, ``api`` (request bodies, JSON errors), ``encoding`` (audio bytes), ``metrics``,
``batching``, ``service`` (one request from text to response), ``auth`` (API keys), ``app`` (routes,
:func:`run`), ``ray`` (the app as a Ray Serve deployment: ``tacoglow serve --ray``).
"""
import importlib
from typing import Any

from .limits import ServerLimits

# The web framework (FastAPI) loads with the first of these names, not with the package: the command line
# reads ServerLimits' defaults for every command, and only `tacoglow serve` needs the server itself.
_LAZY = {"ApiError": "api", "create_app": "app", "run": "app", "BatchScheduler": "batching", "EventLog": "batching",
         "Job": "batching", "Piece": "batching", "QueueFull": "batching", "TimedOut": "batching"}

__all__ = ["ServerLimits", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
