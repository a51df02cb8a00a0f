"""Several voices in one process: the catalog of voice folders (listing, loading once, the LRU bound) and the HTTP
server speaking each voice by name with its own settings and its own scheduler."""
import argparse
import random
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tacoglow import Synthesizer, TacoglowError
from tacoglow.catalog import UnknownVoiceError, VoiceCatalog, VoiceFiles, VoiceOptions, find_voices
from tacoglow.checkpoint import load_tacotron2, save_model
from tacoglow.cli import add_serve_arguments
from tacoglow.config import ConfigError
from tacoglow.serve import EventLog, ServerLimits, create_app

from conftest import REPO, fixture_path
from helpers import tacotron2_for_hifigan
from test_server import TWO, Gate, error_of, load_voice, pcm16, running_server, same_audio, samples


def make_voice_dir(root):
    """Two voice folders: "bright" (the small Tacotron 2 re-saved with settings of its own, and a WaveGlow) and
    "quick" (a Tacotron 2 with a HiFi-GAN); "notes" holds no tacotron2.pt, so it is no voice."""
    bright, quick, notes = root / "bright", root / "quick", root / "notes"
    for folder in (bright, quick, notes):
        folder.mkdir()
    save_model(load_tacotron2(fixture_path("tacotron2_small_ngc.pt")), bright / "tacotron2.pt",
               synthesis={"sigma": 0.6, "sentence_pause": 0.5})
    shutil.copy(fixture_path("waveglow_small_ngc.pt"), bright / "waveglow.pt")
    hifigan = fixture_path("hifigan_dle_v1small.pt")
    tacotron2_for_hifigan(hifigan, quick)
    shutil.copy(hifigan, quick / "hifigan.pt")
    (notes / "README.md").write_text("not a voice")
    return root


@pytest.fixture(scope="module")
def voice_dir(tmp_path_factory):
    return make_voice_dir(tmp_path_factory.mktemp("voices"))


@pytest.fixture(scope="module")
def default_voice() -> Synthesizer:
    return load_voice()


@pytest.fixture(scope="module")
def alone(voice_dir, default_voice) -> dict[str, Synthesizer]:
    """Each voice loaded on its own, for the expected audio."""
    return {"default": default_voice, **{files.name: VoiceOptions().load(files) for files in find_voices(voice_dir)}}


# --------------------------------------------------------------------------------- the catalog
def test_voice_folders_are_listed_by_name_without_loading(voice_dir, default_voice):
    voices = find_voices(voice_dir)
    assert [(v.name, v.vocoder) for v in voices] == [("bright", "waveglow"), ("quick", "hifigan")]
    assert voices[0].tacotron2 == voice_dir / "bright" / "tacotron2.pt" and voices[1].waveglow is None
    catalog = VoiceCatalog(default_voice, voices)
    assert catalog.names == ["default", "bright", "quick"]
    assert catalog.loaded() == [] and not catalog.loads and catalog.is_loaded("default")
    settings, audio = catalog.settings("bright")  # from its checkpoint, over the defaults
    assert (settings.sigma, settings.sentence_pause, settings.denoiser_strength) == (0.6, 0.5, 0.01)
    assert audio.sampling_rate == 22050 and not catalog.is_loaded("bright")
    assert catalog.resolve(None) == catalog.resolve("default") == "default"
    options = VoiceOptions(overrides={"sigma": 0.7, "denoiser_strength": 0.0})  # the command line's, applied to all
    catalog = VoiceCatalog(default_voice, voices, options=options)
    assert catalog.settings("bright")[0].sigma == 0.7
    assert catalog.settings("quick")[0].hifigan_denoiser_strength == 0.0  # the strength of the vocoder it has
    assert [v.vocoder for v in find_voices(voice_dir, "griffin-lim")] == ["griffin-lim", "griffin-lim"]


def test_bad_folders_names_and_bounds_are_refused_naming_them(voice_dir, default_voice, tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        find_voices(tmp_path / "missing")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ConfigError, match="none of its sub-folders holds a tacotron2.pt"):
        find_voices(tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"bright: has no hifigan\.pt, but --vocoder hifigan"):
        find_voices(voice_dir, "hifigan")
    voices = find_voices(voice_dir)
    with pytest.raises(ConfigError, match="'bright' is there already"):
        VoiceCatalog(default_voice, voices, default_name="bright")
    with pytest.raises(ConfigError, match="at least 1"):
        VoiceCatalog(default_voice, voices, max_loaded=0)
    catalog = VoiceCatalog(default_voice, voices)
    with pytest.raises(ConfigError, match="quick: 'quick' names the default voice here"):
        catalog.add_aliases(["alloy", "quick"])
    with pytest.raises(UnknownVoiceError) as refused:
        catalog.resolve("nobody")
    assert str(refused.value).startswith("unknown voice 'nobody'; the voices are 'default', 'bright', 'quick'")


def test_least_recently_used_idle_voice_is_unloaded_and_a_voice_in_use_never(voice_dir, default_voice):
    catalog = VoiceCatalog(default_voice, find_voices(voice_dir), max_loaded=1)
    unloaded: list[tuple[str, Synthesizer]] = []
    catalog.unload_hooks.append(lambda name, synth: unloaded.append((name, synth)))
    with catalog.use("bright") as bright:
        assert catalog.loaded() == ["bright"] and catalog.in_use("bright") == 1
    assert catalog.loaded() == ["bright"] and catalog.in_use("bright") == 0  # kept while there is room
    with catalog.use("quick"):
        assert catalog.loaded() == ["quick"] and unloaded == [("bright", bright)]
    with catalog.use("quick"):
        with catalog.use("bright") as again:  # no idle voice to unload: the bound gives way while both are used
            assert catalog.loaded() == ["quick", "bright"] and again is not bright
        assert catalog.loaded() == ["quick"]  # "bright" was the idle one, "quick" still in use
    with catalog.use("default") as default:
        assert default is default_voice  # the default voice is neither loaded again nor counted
    assert catalog.loaded() == ["quick"] and [name for name, _ in unloaded] == ["bright", "bright"]
    assert catalog.loads == {"bright": 2, "quick": 1} and catalog.is_loaded("default")
    with pytest.raises(RuntimeError, match="released more often"):
        catalog.release("quick")


def test_concurrent_first_requests_load_a_voice_once(voice_dir, default_voice):
    go = threading.Event()

    class Held(VoiceOptions):
        def load(self, files):
            assert go.wait(30)
            return super().load(files)

    catalog = VoiceCatalog(default_voice, find_voices(voice_dir), options=Held())
    got: list[Synthesizer] = []
    threads = [threading.Thread(target=lambda: got.append(catalog.acquire("bright"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(3000):  # every thread is inside acquire: one loading, the others waiting for that load
        if catalog.in_use("bright") == 4:
            break
        time.sleep(0.01)
    assert catalog.in_use("bright") == 4
    go.set()
    for thread in threads:
        thread.join(30)
    assert len(got) == 4 and all(synth is got[0] for synth in got) and catalog.loads == {"bright": 1}


def test_a_voice_that_fails_to_load_is_not_held(voice_dir, default_voice, tmp_path):
    broken = tmp_path / "broken"
    (broken / "damaged").mkdir(parents=True)
    (broken / "damaged" / "tacotron2.pt").write_bytes(b"not a checkpoint")
    catalog = VoiceCatalog(default_voice, find_voices(broken))
    with pytest.raises(TacoglowError, match="damaged"):  # naming the file
        catalog.acquire("damaged")
    assert catalog.in_use("damaged") == 0 and catalog.loaded() == []


def test_many_threads_never_lose_a_held_voice_and_leave_the_catalog_consistent(default_voice):
    """Eight threads use five voices at random, with at most two loaded and one load in five failing: no voice is
    unloaded while a thread holds it, each thread gets the voice it named, and in the end nothing is held and
    the bound holds."""

    class Loaded:
        def __init__(self, name):
            self.name, self.unloaded = name, False

    class FlakyOptions(VoiceOptions):
        def load(self, files):
            time.sleep(random.random() * 0.002)
            if random.random() < 0.2:
                raise TacoglowError(f"{files.tacotron2}: damaged")
            return Loaded(files.name)

    names = [f"v{i}" for i in range(5)]
    catalog = VoiceCatalog(default_voice, [VoiceFiles(n, Path("/voices") / n / "tacotron2.pt") for n in names],
                           options=FlakyOptions(), max_loaded=2)
    catalog.unload_hooks.append(lambda name, synth: setattr(synth, "unloaded", True))
    problems, failures = [], []

    def work(seed):
        pick = random.Random(seed)
        for _ in range(300):
            name = pick.choice(names)
            try:
                with catalog.use(name) as synth:
                    if synth.name != name or synth.unloaded:
                        problems.append(("got", name, synth.name))
                    time.sleep(pick.random() * 0.0005)
                    if synth.unloaded:
                        problems.append(("unloaded while held", name))
            except TacoglowError as error:
                failures.append(str(error))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert problems == [] and failures and all(f.endswith("tacotron2.pt: damaged") for f in failures)
    assert all(catalog.in_use(name) == 0 for name in catalog.names) and len(catalog.loaded()) <= 2
    assert sum(catalog.loads.values()) > 2  # voices were unloaded and loaded again


# --------------------------------------------------------------------------------- the server
@pytest.fixture
def multi(voice_dir):
    """A server of three voices, at most one folder voice loaded, seeded: a request without a seed gets 11."""
    catalog, events = VoiceCatalog(load_voice(), find_voices(voice_dir), max_loaded=1), EventLog()
    app = create_app(catalog, limits=ServerLimits(batch_wait=0.0), allowed_hosts={"127.0.0.1", "localhost"},
                     events=events, seed=11)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        client.catalog, client.app, client.events = catalog, app, events
        yield client


def test_voices_lists_every_voice_with_its_settings_loaded_or_not(multi):
    info = multi.get("/voices").json()
    assert [v["name"] for v in info["voices"]] == ["default", "bright", "quick"]
    assert info["default_voice"] == "default" and info["max_loaded_voices"] == 1
    default, bright, quick = info["voices"]
    assert (default["loaded"], bright["loaded"], quick["loaded"]) == (True, False, False)
    assert default["default"] and "alloy" in default["aliases"] and bright["aliases"] == []
    assert (bright["vocoders"], bright["sigma"], bright["synthesis"]["sentence_pause"]) == (
        ["waveglow", "griffin-lim"], 0.6, 0.5)
    assert bright["files"]["waveglow"].endswith("bright/waveglow.pt") and default["files"] is None
    assert (quick["vocoders"], quick["sigma"], quick["sample_rate"]) == (["hifigan", "griffin-lim"], None, 22050)
    assert multi.catalog.loaded() == []  # listing loaded nothing
    assert post_ok(multi, {"text": "Hi.", "voice": "bright"})
    bright = multi.get("/voices").json()["voices"][1]
    assert bright["loaded"] and bright["sigma"] == 0.6 and bright["tacotron2"]["n_mel_channels"] == 80


def post_ok(client, body) -> bytes:
    r = client.post("/v1/synthesize", json={"stream": False, **body})
    assert r.status_code == 200, r.text
    return r.content


def test_each_voice_answers_by_name_with_its_own_audio(multi, alone):
    got = {}
    for name in ("default", "bright", "quick"):
        got[name] = samples(post_ok(multi, {"text": TWO, "seed": 5, "voice": name}))
        assert same_audio(got[name], pcm16(alone[name].synthesize(TWO, seed=5).audio)), name
    assert len({g.tobytes() for g in got.values()}) == 3  # three voices, three answers
    # OpenAI's endpoint: the voice by name, OpenAI's names for the default voice, and the server's seed (11).
    for voice, name in (("quick", "quick"), ("alloy", "default")):
        r = multi.post("/v1/audio/speech", json={"model": "tts-1", "input": TWO, "voice": voice,
                                                 "response_format": "wav"})
        assert r.status_code == 200 and r.headers["x-seed"] == "11"
        assert same_audio(samples(r.content), pcm16(alone[name].synthesize(TWO, seed=11).audio)), voice
    # The native endpoint's vocoders are the voice's own.
    error = error_of(multi.post("/v1/synthesize", json={"text": "Hi.", "voice": "quick", "vocoder": "waveglow"}), 422)
    assert error["param"] == "vocoder" and "'quick'" in error["message"]


def test_an_unknown_voice_is_a_422_naming_the_known_ones(multi):
    for path, body in (("/v1/synthesize", {"text": "Hi.", "voice": "nobody"}),
                       ("/v1/audio/speech", {"model": "tts-1", "input": "Hi.", "voice": "nobody"})):
        error = error_of(multi.post(path, json=body), 422)
        assert error["param"] == "voice" and "'default', 'bright', 'quick'" in error["message"], error


def test_the_bound_unloads_the_idle_voice_and_stops_its_scheduler(multi):
    service = multi.app.state.service
    assert post_ok(multi, {"text": "Hi.", "voice": "bright", "seed": 1})
    assert multi.catalog.loaded() == ["bright"]
    assert sorted(v.name for v in service.voices.running()) == ["bright"]
    bright = service.voices.running()[0]
    assert post_ok(multi, {"text": "Hi.", "voice": "quick", "seed": 1})
    assert multi.catalog.loaded() == ["quick"] and multi.catalog.loads == {"bright": 1, "quick": 1}
    assert sorted(v.name for v in service.voices.running()) == ["quick"]
    for _ in range(3000):  # stopped on a thread of its own, after the batch it was running
        if not bright.scheduler.running:
            break
        time.sleep(0.01)
    assert not bright.scheduler.running
    voices = {v["name"]: v["loaded"] for v in multi.get("/voices").json()["voices"]}
    assert voices == {"default": True, "bright": False, "quick": True}
    again = samples(post_ok(multi, {"text": "Hi.", "voice": "bright", "seed": 1}))  # loaded again, same voice
    assert multi.catalog.loads["bright"] == 2 and np.array_equal(again, samples(post_ok(
        multi, {"text": "Hi.", "voice": "bright", "seed": 1})))
    assert multi.get("/health").json() == {"status": "ok", "queue": 0, "active": 0}


class HoldFirst(Gate):
    """A :class:`Gate` that holds only the first matching event (for up to two minutes): other schedulers, whose
    events go through the same log, run on meanwhile."""

    def __call__(self, event: dict) -> None:
        if not self.held.is_set() and self.when(event):
            self.held.set()
            self.released_in_time = self.opened.wait(120)


def test_a_voice_in_use_is_not_unloaded_under_its_request(multi, alone):
    gate = HoldFirst(multi.events, lambda e: e["event"] == "batch")  # holds "bright"'s scheduler at its first batch
    try:
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(post_ok, multi, {"text": TWO, "seed": 5, "voice": "bright"})
            assert gate.held.wait(30)
            # "quick" has a scheduler of its own: it answers while "bright"'s is held. It is loaded beside
            # "bright" (which is in use), and once done it is the idle one, so it is the one unloaded.
            quick = samples(post_ok(multi, {"text": TWO, "seed": 5, "voice": "quick"}))
            assert same_audio(quick, pcm16(alone["quick"].synthesize(TWO, seed=5).audio))
            for _ in range(3000):  # "quick" is given back just after its last sentence is delivered
                if multi.catalog.in_use("quick") == 0:
                    break
                time.sleep(0.01)
            assert multi.catalog.loaded() == ["bright"] and multi.catalog.in_use("bright") == 1
            gate.release()
            bright = samples(held.result(60))
    finally:
        gate.close()
    assert gate.released_in_time and same_audio(bright, pcm16(alone["bright"].synthesize(TWO, seed=5).audio))
    for _ in range(3000):  # the voice is given back just after its last sentence is delivered
        if multi.catalog.in_use("bright") == 0:
            break
        time.sleep(0.01)
    assert multi.catalog.loaded() == ["bright"] and multi.catalog.loads == {"bright": 1, "quick": 1}


def test_a_damaged_voice_folder_is_listed_with_its_error_and_the_others_still_answer(voice_dir, tmp_path):
    root = tmp_path / "voices"
    shutil.copytree(voice_dir / "bright", root / "bright")
    (root / "damaged").mkdir()
    (root / "damaged" / "tacotron2.pt").write_bytes(b"not a checkpoint")
    catalog = VoiceCatalog(load_voice(), find_voices(root))
    app = create_app(catalog, limits=ServerLimits(batch_wait=0.0), allowed_hosts={"127.0.0.1", "localhost"})
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        r = client.get("/voices")
        assert r.status_code == 200, r.text
        default, bright, damaged = r.json()["voices"]
        assert (default["name"], bright["name"], bright["sigma"], bright["vocoders"]) == (
            "default", "bright", 0.6, ["waveglow", "griffin-lim"])
        assert damaged["name"] == "damaged" and not damaged["loaded"] and damaged["vocoders"] == []
        assert damaged["error"].startswith(f"voice 'damaged' cannot be read: {root / 'damaged' / 'tacotron2.pt'}: "
                                           "not a readable PyTorch checkpoint")
        error = error_of(client.post("/v1/synthesize", json={"text": "Hi.", "voice": "damaged"}), 500)
        assert error["message"].startswith("voice 'damaged' could not be loaded: ")
        assert post_ok(client, {"text": "Hi.", "voice": "bright"})
        # A body nested thousands deep, under the size limit: a 400 like any JSON that cannot be read.
        r = client.post("/v1/synthesize", content=b"[" * 20_000, headers={"content-type": "application/json"})
        assert error_of(r, 400)["message"] == "the body is not JSON that can be read: it nests too deeply"


def test_serve_options_and_a_missing_voice_folder_in_one_line():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args([])
    assert (args.voice_dir, args.max_loaded_voices, args.seed, args.wyoming) == (None, 4, None, None)
    args = parser.parse_args(["--voice-dir", "v", "--max-loaded-voices", "2", "--seed", "5", "--wyoming", "tcp://h:1"])
    assert (str(args.voice_dir), args.max_loaded_voices, args.seed, args.wyoming) == ("v", 2, 5, "tcp://h:1")
    # The folders are checked before any voice is loaded (this Tacotron 2 is not even read).
    r = subprocess.run([sys.executable, "-m", "tacoglow", "serve", "--voice-dir", "/nonexistent-voices",
                        "--tacotron2", "/nonexistent.pt"], cwd=REPO, capture_output=True, timeout=300,
                       env={"PATH": "/usr/bin:/bin", "TACOGLOW_OFFLINE": "1"})
    assert r.returncode == 1
    assert r.stderr.decode().splitlines() == ["tacoglow: error: /nonexistent-voices: no such folder; --voice-dir names "
                                              "a folder whose sub-folders each hold a tacotron2.pt (and optionally "
                                              "hifigan.pt or waveglow.pt)"]
