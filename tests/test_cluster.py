"""Ray: the speech server as a Ray Serve deployment, and bulk synthesis as a Ray Data job, on one local cluster
(4 CPUs, no dashboard) that this module starts and stops, with the tiny voice of the fixtures.

Without Ray (``pip install 'tacoglow[cluster]'``) the cluster tests are skipped, naming the reason, except in
continuous integration (``CI=true``), where they fail. The tests before them need no Ray.
"""
import functools
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tacoglow import Synthesizer, cli
from tacoglow.batch import line_name, synthesize_lines
from tacoglow.cluster import error_cause, remaining_lines, wav_is_complete, write_wav_atomically
from tacoglow.config import ConfigError
from tacoglow.serve import ServerLimits, create_app
from tacoglow.serve.ray import RayServeOptions

from conftest import fixture_path
from test_server import error_of, load_voice, running_server

KEY = "sk-cluster-7d2a"
LOAD_VOICE = functools.partial(Synthesizer.from_checkpoints, str(fixture_path("tacotron2_small_ngc.pt")),
                               str(fixture_path("waveglow_small_ngc.pt")))
VOICE = ["--tacotron2", str(fixture_path("tacotron2_small_ngc.pt")),
         "--waveglow", str(fixture_path("waveglow_small_ngc.pt"))]


# --------------------------------------------------------------------------------- without Ray
def test_a_wav_is_complete_only_when_whole(tmp_path):
    path = tmp_path / "0001.wav"
    write_wav_atomically(path, np.tile(np.float32([0.0, 0.5, -0.5]), 100), 22050)
    assert wav_is_complete(path) and os.listdir(tmp_path) == ["0001.wav"]  # no temporary file left behind
    whole = path.read_bytes()
    for cut in (len(whole) - 1, len(whole) - 200, 44, 43, 12, 0):
        path.write_bytes(whole[:cut])
        assert not wav_is_complete(path), cut
    path.write_bytes(whole + b"\0\0")
    assert not wav_is_complete(path)  # longer than its header says
    path.write_bytes(whole[:4] + b"\xff\xff\xff\xff" + whole[8:])  # a streamed WAV's placeholder sizes
    assert not wav_is_complete(path)
    assert not wav_is_complete(tmp_path / "missing.wav") and not wav_is_complete(tmp_path)


def test_remaining_lines_are_the_missing_or_broken_files(tmp_path):
    for n in (1, 2, 4):
        write_wav_atomically(tmp_path / line_name(n, 5), np.full(50, 0.1, np.float32), 22050)
    (tmp_path / line_name(4, 5)).write_bytes((tmp_path / line_name(4, 5)).read_bytes()[:60])
    assert remaining_lines(5, tmp_path) == ([3, 4, 5], [1, 2])


def test_the_cause_of_a_failure_on_the_cluster_is_one_line():
    traceback = ("The actor died because of an error raised in its creation task, ray::MapWorker()\n"
                 "  File \"/x/tacoglow/checkpoint.py\", line 158, in read_checkpoint\n"
                 "    raise CheckpointError(f\"{path}: no such file; check the path\")\n"
                 "tacoglow.checkpoint.CheckpointError: /v/t2.pt: no such file; check the path\n")
    assert error_cause(traceback) == "/v/t2.pt: no such file; check the path"
    assert error_cause("Traceback:\n  ...\nValueError: bad value\n\n") == "ValueError: bad value"
    assert error_cause("\nDeploying failed.\nmore") == "Deploying failed." and error_cause("") == "no reason given"


@pytest.fixture
def without_ray(monkeypatch):
    """As if Ray were not installed: importing it fails."""
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)


@pytest.mark.parametrize("argv", [["serve", "--ray", *VOICE], ["serve", "--ray", "--replicas", "2"],
                                  ["synthesize", "-i", "LINES", "-o", "OUT", "--ray", *VOICE],
                                  ["synthesize", "-i", "LINES", "-o", "OUT", "--ray", "10.0.0.1:6379"]])
def test_without_ray_the_flags_fail_in_one_line_naming_the_pip_command(without_ray, tmp_path, capsys, argv):
    (tmp_path / "lines.txt").write_text("One.\nTwo.\n")
    argv = [str(tmp_path / "lines.txt") if a == "LINES" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert cli.main(argv) == 1
    assert capsys.readouterr().err == ("tacoglow: error: --ray needs Ray (ray is not installed): "
                                       "pip install 'tacoglow[cluster]'\n")
    assert not (tmp_path / "out").exists()


def test_importing_tacoglow_never_needs_ray():
    code = ("import sys; sys.modules['ray'] = None\n"
            "import tacoglow, tacoglow.cli, tacoglow.cluster, tacoglow.serve.ray, tacoglow.cli.serve\n"
            "print('imported')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "imported\n", done.stderr[-2000:]


@pytest.mark.parametrize("argv, message", [
    (["serve", "--replicas", "2"], "--replicas needs --ray"),
    (["serve", "--ray-address", "auto"], "--ray-address needs --ray"),
    (["serve", "--ray", "--replicas", "2", "--min-replicas", "1", "--max-replicas", "3"], "not both"),
    (["serve", "--ray", "--min-replicas", "2"], "give both --min-replicas and --max-replicas"),
    (["serve", "--ray", "--min-replicas", "3", "--max-replicas", "2"], "at most --max-replicas (2)"),
    (["serve", "--ray", "--replicas", "0"], "--replicas and --threads must be at least 1"),
    (["serve", "--ray", "--host", "0.0.0.0"], "--host 0.0.0.0 lets other machines use this server"),
    (["synthesize", "Hello.", "-o", "x.wav", "--ray"], "give --input FILE"),
])
def test_ray_options_are_checked_before_anything_starts(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("TACOGLOW_API_KEY", raising=False)
    assert cli.main([*argv, *VOICE]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tacoglow: error: ") and message in err and err.count("\n") == 1


def test_deployment_options_follow_the_limits_and_the_scaling_mode():
    limits = ServerLimits(max_concurrent=3, max_queue=5)
    fixed = RayServeOptions(replicas=2, threads=2).deployment(limits)
    assert fixed == {"ray_actor_options": {"num_cpus": 2}, "max_ongoing_requests": 8, "max_queued_requests": 5,
                     "max_constructor_retry_count": 3, "num_replicas": 2}
    scaled = RayServeOptions(min_replicas=1, max_replicas=4, target_ongoing_requests=3).deployment(limits)
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 3}
    with pytest.raises(ConfigError, match="--min-replicas"):
        RayServeOptions(min_replicas=0, max_replicas=2).check()


# --------------------------------------------------------------------------------- with Ray
def need_ray():
    """The ``ray`` module; without it the test is skipped with the reason, or fails under CI."""
    try:
        import ray
        import ray.data  # noqa: F401
        import ray.serve  # noqa: F401
    except ImportError as error:
        reason = f"Ray is not installed ({error}): pip install 'tacoglow[cluster]' to run the cluster tests"
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(reason + " (CI is set, so a missing Ray fails the run)")
        pytest.skip(reason)
    return ray


def test_the_ray_service_builder_takes_the_serve_options(monkeypatch):
    need_ray()
    from tacoglow.cli.serve import ray_application

    monkeypatch.delenv("TACOGLOW_API_KEY", raising=False)
    voice = " ".join(VOICE)
    app = ray_application({"options": f"{voice} --api-key {KEY} --replicas 3 --max-concurrent 2 --max-queue 5"})
    deployment = app._bound_deployment  # Ray 2.60's Application: its deployment and arguments
    assert (deployment.num_replicas, deployment.max_ongoing_requests, deployment.max_queued_requests) == (3, 7, 5)
    synthesizer, limits, voice_name, api_key, allowed_hosts, threads = deployment.init_args
    assert (limits.max_concurrent, voice_name, api_key, allowed_hosts, threads) == (2, "default", KEY, None, 1)
    assert synthesizer().audio.sampling_rate == 22050  # the replicas' loader loads the voice the options name
    scaled = ray_application({"options": f"{voice} --no-auth --min-replicas 1 --max-replicas 4"})._bound_deployment
    autoscaling = scaled._deployment_config.autoscaling_config
    assert (autoscaling.min_replicas, autoscaling.max_replicas, autoscaling.target_ongoing_requests) == (1, 4, 2.0)
    with pytest.raises(ConfigError, match="--host 0.0.0.0 lets other machines"):  # Ray's proxy faces the network
        ray_application({"options": voice})


# --------------------------------------------------------------------------------- on a local Ray cluster
@pytest.fixture(scope="module")
def ray_cluster():
    ray = need_ray()
    from ray import serve

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        yield ray
    finally:
        serve.shutdown()
        ray.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def deployed(ray_cluster):
    """Two replicas, each synthesizing one request at a time (every sentence is then decoded alone, as a request
    made alone on the single-process server is: equal bytes), each with room for all 16 requests of a test, so
    that however Ray's proxy spreads them none is refused as over the limits."""
    from tacoglow.serve.ray import start_on_ray

    limits = ServerLimits(max_concurrent=1, max_queue=15, batch_wait=0)
    url = start_on_ray(LOAD_VOICE, port=free_port(), limits=limits, api_key=KEY,
                       options=RayServeOptions(replicas=2))
    with httpx.Client(base_url=url, timeout=120, headers={"authorization": f"Bearer {KEY}"}) as client:
        yield client


@pytest.fixture(scope="module")
def alone() -> list[bytes]:
    """Each of BODIES' answers from the single-process server, asked one at a time."""
    with running_server(create_app(load_voice)) as url, httpx.Client(base_url=url, timeout=60) as client:
        return [client.post("/v1/synthesize", json=body).content for body in BODIES]


def live_replicas(ray) -> set[str]:
    return {actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
            if actor["name"].startswith("SERVE_REPLICA::tacoglow#")}


def send_together(client: httpx.Client, bodies: list[dict]) -> list[httpx.Response | Exception]:
    def send(body):
        try:
            return client.post("/v1/synthesize", json=body)
        except httpx.HTTPError as error:  # a request whose replica was killed under it
            return error

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


BODIES = [{"text": f"Request {i} is here." + (" With a second sentence." if i % 4 == 0 else ""), "seed": 40 + i,
           "format": "wav", "stream": i % 2 == 0} for i in range(16)]


def test_two_replicas_answer_concurrent_requests_as_the_single_server_does(deployed, alone):
    assert deployed.get("/health", headers={"authorization": ""}).json() == {
        "status": "ok", "queue": 0, "active": 0, "replicas": 2}
    together = send_together(deployed, BODIES)
    replicas = set()
    for body, response, expected in zip(BODIES, together, alone):
        assert isinstance(response, httpx.Response) and response.status_code == 200, response
        assert response.content == expected and expected[:4] == b"RIFF", body
        assert response.headers["x-seed"] == str(body["seed"])
        replicas.add(response.headers["x-replica"])
    assert len(replicas) == 2, "one replica served every request"


def test_the_api_key_is_required_through_ray(deployed):
    for authorization in ("", "Bearer wrong"):
        response = deployed.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hi.", "voice": "alloy"},
                                 headers={"authorization": authorization})
        assert error_of(response, 401)["message"] and response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["x-replica"].startswith("SERVE_REPLICA::tacoglow#")  # answered by a replica
    ok = deployed.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hi.", "voice": "alloy",
                                                 "response_format": "wav"})
    assert ok.status_code == 200 and ok.content[:4] == b"RIFF"


def test_a_killed_replica_is_replaced_and_later_requests_succeed(deployed, alone, ray_cluster):
    ray = ray_cluster
    before = live_replicas(ray)
    assert len(before) == 2
    victim = sorted(before)[0]
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(send_together, deployed, BODIES[:8])  # in flight while the replica dies
        time.sleep(0.5)
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        running.result(timeout=180)  # each gets an answer or an error; none hangs

    answered: set[str] = set()

    def running_again(now: set[str]) -> bool:
        """The new replica runs, and Ray's proxy routes to it (it has answered a probe)."""
        try:
            health = deployed.get("/health")
            answered.add(health.headers["x-replica"])
            return victim not in now and len(now) == 2 and health.json()["replicas"] == 2 and now <= answered
        except (httpx.HTTPError, ValueError, KeyError):  # routed to the dead replica before Ray noticed
            return False

    for _ in range(240):  # a new replica loads the voice; Ray reports it running
        if running_again(now := live_replicas(ray)):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the killed replica was not replaced: {sorted(live_replicas(ray))}")
    later = send_together(deployed, BODIES)
    for response, expected in zip(later, alone):
        assert isinstance(response, httpx.Response) and response.status_code == 200, response
        assert response.content == expected
    assert {r.headers["x-replica"] for r in later} == now  # the new replica among them


def test_bulk_job_writes_the_single_machine_files_and_resumes(ray_cluster, tmp_path):
    from tacoglow.cluster import synthesize_lines_on_ray

    lines = [f"Line {n} of the bulk job." for n in range(1, 41)]
    expected = [p.read_bytes() for p in synthesize_lines(LOAD_VOICE(), lines, tmp_path / "single", seed=11,
                                                         progress=False)]
    out = tmp_path / "ray"
    report = synthesize_lines_on_ray(LOAD_VOICE, lines, out, seed=11, actors=2, progress=False)
    assert sorted(report.written) == list(range(1, 41)) and report.skipped == []
    assert [p.name for p in report.paths] == [line_name(n, 40) for n in range(1, 41)] == sorted(os.listdir(out))
    assert [p.read_bytes() for p in report.paths] == expected

    # Ten files lost: nine deleted, and the longest cut short (as by a crash while it was written in place).
    deleted = [3, 7, 8, 12, 20, 21, 29, 33, 38]
    cut = max((n for n in range(1, 41) if n not in deleted), key=lambda n: len(expected[n - 1]))
    for n in deleted:
        report.paths[n - 1].unlink()
    report.paths[cut - 1].write_bytes(expected[cut - 1][:len(expected[cut - 1]) // 2])
    lost = sorted([*deleted, cut])
    kept = {n: os.stat(report.paths[n - 1]) for n in range(1, 41) if n not in lost}
    again = synthesize_lines_on_ray(LOAD_VOICE, lines, out, seed=11, actors=2, progress=False)
    assert sorted(again.written) == lost and again.skipped == sorted(kept)
    assert [p.read_bytes() for p in again.paths] == expected
    for n, stat in kept.items():  # the others were not touched
        now = os.stat(again.paths[n - 1])
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert sorted(os.listdir(out)) == [line_name(n, 40) for n in range(1, 41)]  # no temporary files left
