"""API keys on the single-process server: each route without a key, with a wrong one and with the right one; the
routes left open; the refusal to bind beyond loopback without a key, and ``--no-auth``.

(The same middleware serves the Ray deployment; tests/test_cluster.py checks one route through Ray.)
"""
import hmac

import httpx
import pytest

from tacoglow import cli
from tacoglow.config import ConfigError
from tacoglow.serve import create_app
from tacoglow.serve.auth import check_exposure, key_matches

from conftest import fixture_path
from test_server import error_of, load_voice, running_server

KEY = "sk-test-4f1c9e"
SPEECH = {"model": "tts-1", "input": "Hi.", "voice": "alloy", "response_format": "wav"}
# Every route that needs the key, with a request that succeeds once the key is right.
PROTECTED = [("GET", "/voices", None, 200), ("GET", "/metrics", None, 200),
             ("POST", "/v1/audio/speech", SPEECH, 200), ("POST", "/v1/synthesize", {"text": "Hi.", "seed": 1}, 200),
             ("GET", "/v2/nothing", None, 404)]


@pytest.fixture(scope="module")
def keyed():
    with running_server(create_app(load_voice, api_key=KEY)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def call(client: httpx.Client, method: str, path: str, body, authorization: str | None) -> httpx.Response:
    headers = {"authorization": authorization} if authorization is not None else {}
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("method, path, body, status", PROTECTED)
def test_each_api_route_needs_the_key(keyed, method, path, body, status):
    missing = error_of(call(keyed, method, path, body, None), 401)
    assert "Authorization: Bearer KEY" in missing["message"] and missing["type"] == "invalid_request_error"
    for wrong in ("Bearer sk-wrong", f"Bearer {KEY}x", f"Bearer {KEY[:-1]}", f"Basic {KEY}", KEY, "Bearer"):
        response = call(keyed, method, path, body, wrong)
        assert "not valid" in error_of(response, 401)["message"], wrong
        assert response.headers["www-authenticate"] == 'Bearer realm="tacoglow", error="invalid_token"'
    unkeyed = call(keyed, method, path, body, None)
    assert unkeyed.headers["www-authenticate"] == 'Bearer realm="tacoglow"'
    for right in (f"Bearer {KEY}", f"bearer {KEY}", f"Bearer   {KEY}"):
        response = call(keyed, method, path, body, right)
        assert response.status_code == status, (right, response.text)
    if path == "/v1/synthesize":  # the right key gets the audio, not an error document
        assert response.headers["content-type"] == "audio/wav" and response.content[:4] == b"RIFF"


def test_health_and_the_web_page_need_no_key(keyed):
    assert keyed.get("/health").json() == {"status": "ok", "queue": 0, "active": 0}
    page = keyed.get("/")
    assert page.status_code == 200 and 'id="key-row"' in page.text  # where the page asks for the key
    script = keyed.get("/static/app.js")
    assert script.status_code == 200 and "Authorization: `Bearer ${key}`" in script.text


def test_refusals_are_counted_in_the_metrics(keyed):
    keyed.get("/voices")
    text = keyed.get("/metrics", headers={"authorization": f"Bearer {KEY}"}).text
    assert 'tacoglow_request_errors_total{endpoint="/voices",code="401"}' in text


def test_keys_are_compared_in_constant_time(monkeypatch):
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    assert key_matches(f"Bearer {KEY}", KEY) and not key_matches("Bearer nope", KEY)
    # Both sides are digests of one length, whatever the lengths of the keys: the time tells nothing of either.
    assert len(compared) == 2 and {len(a) for pair in compared for a in pair} == {32}
    assert not key_matches(None, KEY) and not key_matches("", KEY) and not key_matches("Token " + KEY, KEY)
    assert not key_matches("Bearer \udcff", KEY)  # undecodable header bytes are a wrong key, not a crash


@pytest.mark.parametrize("host, key, no_auth, refused", [
    ("127.0.0.1", None, False, None), ("localhost", None, False, None), ("::1", None, False, None),
    ("0.0.0.0", None, False, "--host 0.0.0.0 lets other machines use this server"),
    ("192.168.1.20", None, False, "--api-key KEY"), ("::", None, False, "--no-auth"),
    ("0.0.0.0", KEY, False, None), ("0.0.0.0", None, True, None),
    ("0.0.0.0", "  ", False, "the API key is empty"), ("127.0.0.1", KEY, True, "give one or the other"),
])
def test_binding_beyond_loopback_needs_a_key_or_no_auth(host, key, no_auth, refused):
    if refused is None:
        check_exposure(host, key, no_auth)
    else:
        with pytest.raises(ConfigError, match=refused):
            check_exposure(host, key, no_auth)


VOICE = ["--tacotron2", str(fixture_path("tacotron2_small_ngc.pt")),
         "--waveglow", str(fixture_path("waveglow_small_ngc.pt"))]


@pytest.fixture
def served(monkeypatch):
    """Runs ``tacoglow serve`` up to uvicorn, which records what it was given instead of serving."""
    import uvicorn

    given: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: given.update(app=app, **kwargs))
    return given


def test_cli_refuses_a_public_address_without_a_key_in_one_line(served, monkeypatch, capsys):
    monkeypatch.delenv("TACOGLOW_API_KEY", raising=False)
    assert cli.main(["serve", "--host", "0.0.0.0", *VOICE]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tacoglow: error: --host 0.0.0.0 lets other machines")
    assert "--no-auth" in err and not served  # refused before loading the voice or binding
    assert cli.main(["serve", "--host", "0.0.0.0", "--api-key", KEY, "--no-auth", *VOICE]) == 1
    assert "give one or the other" in capsys.readouterr().err and not served


def test_cli_no_auth_serves_a_public_address_without_a_key(served, monkeypatch):
    monkeypatch.delenv("TACOGLOW_API_KEY", raising=False)
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "8123", "--no-auth", *VOICE]) == 0
    assert (served["host"], served["port"]) == ("0.0.0.0", 8123)
    with running_server(served["app"]) as url:
        assert httpx.get(url + "/voices", timeout=30).status_code == 200


def test_cli_takes_the_key_from_the_environment(served, monkeypatch):
    monkeypatch.setenv("TACOGLOW_API_KEY", KEY)
    assert cli.main(["serve", "--host", "0.0.0.0", *VOICE]) == 0
    with running_server(served["app"]) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert error_of(client.get("/voices"), 401)
        assert client.get("/voices", headers={"authorization": f"Bearer {KEY}"}).status_code == 200
