"""Load test for ``tacoglow serve``: one client alone, then N concurrent clients, on loopback only.

    python benchmarks/load_test.py --url http://127.0.0.1:8000 --clients 50 --duration 120
    python benchmarks/load_test.py --spawn --tacotron2 T.pt --waveglow W.pt   # start the server too
    python benchmarks/load_test.py --ray --replicas 1,2 --clients 8 --duration 60   # tacoglow serve --ray, per count

Each client sends OpenAI-style ``/v1/audio/speech`` requests back to back (formats taken in turn from
``--formats``; ``wav`` and ``pcm`` are streamed, ``mp3`` is sent whole) and reads every answer to the
end. A 429/503 is counted as a deliberate rejection and the client waits ``Retry-After``; any other
status or a broken connection is a failure. Bounded: ``--duration`` seconds per phase and at most
``--max-requests`` requests in all. Resident memory is read from the server's ``/metrics``
(``process_resident_memory_bytes``) at each minute of the concurrent phase.

``--ray`` starts ``tacoglow serve --ray --replicas N`` (a local Ray cluster, ``--threads`` threads per replica) for
each N of ``--replicas`` in turn, waits until ``/health`` counts N running replicas, runs the phases, reads each
replica's resident memory (``/metrics``, told apart by the ``X-Replica`` header), and ends with a table.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx

TEXTS = [
    "Hello there.",
    "The quick brown fox jumps over the lazy dog.",
    "Good morning! Your meeting starts in ten minutes.",
    "Printing is the art of making many copies. It changed the world.",
    "Please hold the line. An agent will be with you shortly. Thank you for waiting.",
]


def loopback_url(url: str) -> str:
    host = urlsplit(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"load_test: {url} is not a loopback address; this tool only loads a local server")
    return url.rstrip("/")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Phase:
    def __init__(self, name: str, clients: int, duration: float):
        self.name, self.clients, self.duration = name, clients, duration
        self.ok: list[float] = []        # latencies of accepted requests
        self.rejected = 0
        self.failures: dict[str, int] = {}
        self.audio_bytes = 0
        self.elapsed = 0.0
        self.rss: dict[str, int | None] = {}

    def summary(self) -> dict:
        minutes = self.elapsed / 60
        return {"phase": self.name, "clients": self.clients, "seconds": round(self.elapsed, 1),
                "ok": len(self.ok), "rejected_429_503": self.rejected, "failed": sum(self.failures.values()),
                "failures": self.failures, "ok_per_minute": round(len(self.ok) / minutes, 1) if minutes else None,
                "p50_s": _round(percentile(self.ok, 0.50)), "p95_s": _round(percentile(self.ok, 0.95)),
                "max_s": _round(max(self.ok, default=None)), "response_mb": round(self.audio_bytes / 1e6, 1),
                "rss_mb": {k: (round(v / 2**20, 1) if v else None) for k, v in self.rss.items()}}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


async def resident_bytes(http: httpx.AsyncClient) -> int | None:
    try:
        text = (await http.get("/metrics", timeout=30)).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return int(float(line.split()[1]))
    return None


async def run_phase(http: httpx.AsyncClient, phase: Phase, formats: list[str], budget: list[int],
                    rng: random.Random) -> None:
    start = time.monotonic()
    stop = start + phase.duration

    async def client(k: int) -> None:
        n = k
        while time.monotonic() < stop and budget[0] > 0:
            budget[0] -= 1
            body = {"model": "tts-1", "voice": "alloy", "input": rng.choice(TEXTS),
                    "response_format": formats[n % len(formats)]}
            n += 1
            sent = time.monotonic()
            try:
                async with http.stream("POST", "/v1/audio/speech", json=body) as response:
                    size = 0
                    async for chunk in response.aiter_raw():
                        size += len(chunk)
                status = response.status_code
            except httpx.HTTPError as error:
                phase.failures[type(error).__name__] = phase.failures.get(type(error).__name__, 0) + 1
                continue
            if status == 200:
                phase.ok.append(time.monotonic() - sent)
                phase.audio_bytes += size
            elif status in (429, 503):
                phase.rejected += 1
                wait = float(response.headers.get("retry-after", "1"))
                await asyncio.sleep(max(0.0, min(wait, stop - time.monotonic())))
            else:
                phase.failures[f"HTTP {status}"] = phase.failures.get(f"HTTP {status}", 0) + 1

    async def memory() -> None:
        minute = 1
        while True:
            await asyncio.sleep(max(0.0, start + 60 * minute - time.monotonic()))
            if time.monotonic() > stop + 1:
                return
            phase.rss[f"minute_{minute}"] = await resident_bytes(http)
            minute += 1

    phase.rss["start"] = await resident_bytes(http)
    watcher = asyncio.create_task(memory())
    await asyncio.gather(*(client(k) for k in range(phase.clients)))
    phase.elapsed = time.monotonic() - start
    watcher.cancel()
    phase.rss["end"] = await resident_bytes(http)


def spawn_server(args: argparse.Namespace, replicas: int | None = None) -> tuple[subprocess.Popen, str]:
    """``tacoglow serve`` on a free loopback port; with ``replicas``, ``--ray --replicas N``, ready once /health
    counts that many running replicas."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "tacoglow", "serve", "--host", "127.0.0.1", "--port", str(port)]
    for flag in ("tacotron2", "waveglow", "threads"):
        if getattr(args, flag):
            command += [f"--{flag}", str(getattr(args, flag))]
    if replicas is not None:
        command += ["--ray", "--replicas", str(replicas)]
    command += args.server_args
    log = open(args.server_log, "a") if args.server_log else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + (300 if replicas else 60)  # a Ray cluster and its replicas take a while to start
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit(f"load_test: the server exited with {process.returncode}: {' '.join(command)}")
        try:
            health = httpx.get(url + "/health", timeout=5)
            if health.status_code == 200 and health.json().get("replicas", replicas) == replicas:
                return process, url
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    stop_server(process)
    raise SystemExit(f"load_test: the server was not ready within {300 if replicas else 60} s")


def stop_server(process: subprocess.Popen) -> None:
    """Ctrl-C, so that a Ray server stops its replicas and its cluster; killed if it does not end in a minute."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def replica_memory(http: httpx.AsyncClient, replicas: int) -> dict[str, float | None]:
    """Resident memory (MB) of each replica, read from /metrics until every replica has answered (60 tries)."""
    seen: dict[str, float | None] = {}
    for _ in range(60):
        response = await http.get("/metrics", timeout=30)
        rss = [line.split()[1] for line in response.text.splitlines()
               if line.startswith("process_resident_memory_bytes ")]
        seen[response.headers.get("x-replica", "server")] = round(float(rss[0]) / 2**20, 1) if rss else None
        if len(seen) >= replicas:
            break
    return seen


async def main_async(args: argparse.Namespace, url: str, replicas: int | None = None) -> dict:
    formats = args.formats.split(",")
    budget = [args.max_requests]
    rng = random.Random(args.seed)
    timeout = httpx.Timeout(args.request_timeout, connect=10)
    limits = httpx.Limits(max_connections=args.clients + 2, max_keepalive_connections=args.clients + 2)
    report = {"url": url, "cpus": os.cpu_count(), "load_before": [round(x, 2) for x in os.getloadavg()],
              "phases": []}
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
        for name, clients, duration in (("alone", 1, args.baseline), ("concurrent", args.clients, args.duration)):
            if duration <= 0:
                continue
            phase = Phase(name, clients, duration)
            await run_phase(http, phase, formats, budget, rng)
            report["phases"].append(phase.summary())
            print(json.dumps(phase.summary()), flush=True)
        if replicas is not None:
            report["replicas"] = replicas
            report["replica_rss_mb"] = await replica_memory(http, replicas)
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


def verdict(report: dict) -> list[str]:
    phases = {p["phase"]: p for p in report["phases"]}
    lines = []
    busy = phases.get("concurrent")
    if busy is None:
        return lines
    lines.append(f"failures other than 429/503: {busy['failed']} {'OK' if busy['failed'] == 0 else 'FAIL'}")
    alone = phases.get("alone")
    if alone:
        ok = (busy["ok_per_minute"] or 0) >= (alone["ok_per_minute"] or 0)
        lines.append(f"throughput {busy['ok_per_minute']}/min with {busy['clients']} clients vs "
                     f"{alone['ok_per_minute']}/min alone: {'OK' if ok else 'FAIL'}")
    lines.append(f"p50 {busy['p50_s']} s, p95 {busy['p95_s']} s of {busy['ok']} accepted requests")
    rss = busy["rss_mb"]
    if rss.get("minute_1") and rss.get("minute_2"):
        growth = rss["minute_2"] - rss["minute_1"]
        lines.append(f"resident memory {rss['minute_1']} MB at minute 1, {rss['minute_2']} MB at minute 2: "
                     f"{growth:+.1f} MB {'OK' if growth <= 50 else 'FAIL'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="a running server (loopback only)")
    p.add_argument("--spawn", action="store_true", help="start 'python -m tacoglow serve' on a free loopback port")
    p.add_argument("--tacotron2", help="with --spawn: Tacotron 2 checkpoint")
    p.add_argument("--waveglow", help="with --spawn: WaveGlow checkpoint")
    p.add_argument("--server-log", help="with --spawn or --ray: write the server's output here")
    p.add_argument("--ray", action="store_true", help="start 'tacoglow serve --ray' once per --replicas count")
    p.add_argument("--replicas", default="1,2", help="with --ray: replica counts, in turn (default 1,2)")
    p.add_argument("--threads", type=int, help="with --spawn or --ray: torch threads (per replica; Ray's default 1)")
    p.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    p.add_argument("--duration", type=float, default=120, help="seconds of the concurrent phase (default 120)")
    p.add_argument("--baseline", type=float, default=60, help="seconds of one client alone first (default 60; 0 skips)")
    p.add_argument("--max-requests", type=int, default=100_000, help="requests in all, at most (default 100000)")
    p.add_argument("--formats", default="wav,mp3,pcm", help="response formats, in turn (default wav,mp3,pcm)")
    p.add_argument("--request-timeout", type=float, default=180, help="client time-out per request (default 180 s)")
    p.add_argument("--seed", type=int, default=0, help="text choice seed")
    p.add_argument("--json", help="also write the report here")
    p.add_argument("server_args", nargs="*", help="with --spawn, after '--': more 'tacoglow serve' options")
    args = p.parse_args(argv)
    if not (0 < args.duration <= 3600 and 0 <= args.baseline <= 3600 and 1 <= args.clients <= 1000):
        raise SystemExit("load_test: need 0 < --duration <= 3600, 0 <= --baseline <= 3600, 1 <= --clients <= 1000")
    if args.ray:
        return run_on_ray(args)
    process = None
    if args.spawn:
        process, url = spawn_server(args)
    else:
        url = loopback_url(args.url)
    try:
        report = asyncio.run(main_async(args, url))
    finally:
        if process is not None:
            stop_server(process)
    report["verdict"] = verdict(report)
    print("\n".join(report["verdict"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0 if all(not line.endswith("FAIL") for line in report["verdict"]) else 1


def run_on_ray(args: argparse.Namespace) -> int:
    """The phases against ``tacoglow serve --ray`` with each replica count; one table row per count."""
    rows = []
    for replicas in [int(n) for n in args.replicas.split(",")]:
        process, url = spawn_server(args, replicas)
        try:
            report = asyncio.run(main_async(args, url, replicas))
        finally:
            stop_server(process)
        for phase in report["phases"]:
            rows.append(f"| {replicas} | {phase['phase']} | {phase['clients']} | {phase['ok']} | {phase['failed']} | "
                        f"{phase['ok_per_minute']} | {phase['p50_s']} | {phase['p95_s']} | "
                        f"{', '.join(str(mb) for mb in report['replica_rss_mb'].values())} | "
                        f"{report['load_before'][0]} / {report['load_after'][0]} |")
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(report) + "\n")
    print("| replicas | phase | clients | ok | failed | ok/min | p50 s | p95 s | RSS per replica, MB "
          "| load before/after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
