"""Prometheus metrics for ``GET /metrics``: request counters, latency histograms, queue gauges, memory."""
from __future__ import annotations

import os
import threading

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)


class _Histogram:
    def __init__(self):
        self.counts, self.sum, self.count = [0] * len(LATENCY_BUCKETS), 0.0, 0

    def observe(self, value: float) -> None:
        self.counts = [c + (value <= b) for c, b in zip(self.counts, LATENCY_BUCKETS)]
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        return ([f'{name}_bucket{{le="{b:g}"}} {c}' for b, c in zip(LATENCY_BUCKETS, self.counts)]
                + [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.sum:.6f}",
                   f"{name}_count {self.count}"])


class Metrics:
    """Counters fed by the HTTP edge and the scheduler's events; labels come from fixed sets only."""

    COUNTERS = {"tacoglow_requests_total": "HTTP requests by endpoint and status code.",
                "tacoglow_request_errors_total": "HTTP responses with status >= 400.",
                "tacoglow_cancelled_total": "Requests dropped before their end, by reason.",
                "tacoglow_audio_seconds_total": "Seconds of audio synthesized.",
                "tacoglow_batches_total": "Tacotron 2 batches run.",
                "tacoglow_batched_sentences_total": "Sentences decoded in those batches."}
    HISTOGRAMS = {"tacoglow_request_duration_seconds": "Accepted speech requests, arrival to last byte.",
                  "tacoglow_first_audio_seconds": "Arrival to the first sentence's audio."}

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, dict[str, float]] = {name: {} for name in self.COUNTERS}
        self.histograms = {name: _Histogram() for name in self.HISTOGRAMS}

    def add(self, name: str, labels: str = "", amount: float = 1) -> None:
        with self._lock:
            self.counters[name][labels] = self.counters[name].get(labels, 0) + amount

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            self.histograms[name].observe(seconds)

    def on_event(self, event: dict) -> None:
        if event["event"] == "batch":
            self.add("tacoglow_batches_total")
            self.add("tacoglow_batched_sentences_total", amount=len(event["items"]))
        elif event["event"] == "sentence":
            self.add("tacoglow_audio_seconds_total", amount=event["seconds"])
        elif event["event"] == "cancelled":
            self.add("tacoglow_cancelled_total", f'reason="{event["reason"]}"')

    def render(self, waiting: int, active: int) -> str:
        out = []
        with self._lock:
            for name, text in self.COUNTERS.items():
                out += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
                out += [f"{name}{{{labels}}} {value:g}" if labels else f"{name} {value:g}"
                        for labels, value in sorted(self.counters[name].items())]
            for name, text in self.HISTOGRAMS.items():
                out += [f"# HELP {name} {text}", f"# TYPE {name} histogram", *self.histograms[name].lines(name)]
        gauges = {"tacoglow_queue_length": ("Requests waiting for a synthesis slot.", waiting),
                  "tacoglow_active_requests": ("Requests being synthesized.", active),
                  "process_resident_memory_bytes": ("Resident memory size in bytes.", _resident_bytes())}
        for name, (text, value) in gauges.items():
            if value is not None:
                out += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(out) + "\n"


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
