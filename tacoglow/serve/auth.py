"""API keys: who may use a server that other machines can reach (no web framework here, so that the command line
can check its options before loading one).

With a key, every route needs ``Authorization: Bearer KEY`` (what OpenAI's clients send from their ``api_key``),
except the ones a load balancer or a browser must reach before it can have a key:

- ``/health``: liveness and readiness probes (Kubernetes, Ray, load balancers) send no credentials;
  it tells only that the server is up and how long its queue is.
- ``/`` and ``/static/...``: the web page. It holds nothing secret; it asks for the key when ``/voices``
  answers 401 and sends it with every request it makes.

A server bound to an address beyond loopback must have a key, or be told with ``--no-auth`` that it runs
without one (behind an authenticating proxy, say): :func:`check_exposure`.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress

from ..config import ConfigError

KEY_ENVIRONMENT = "TACOGLOW_API_KEY"
OPEN_PATHS = ("/", "/health")
OPEN_PREFIX = "/static/"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server to this machine."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def needs_key(path: str) -> bool:
    """Whether a request for ``path`` must carry the key (every path but the probe and the web page's)."""
    return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIX)


def key_matches(authorization: str | None, api_key: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <api_key>`` (the scheme in any case, RFC 6750).

    The two keys are compared as SHA-256 digests with :func:`hmac.compare_digest`: the time taken tells an
    attacker neither how much of a guess was right nor how long the key is."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    given = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
    return hmac.compare_digest(given, hashlib.sha256(api_key.encode("utf-8")).digest())


def unauthorized(authorization: str | None) -> tuple[str, dict[str, str]]:
    """The 401 answer's message and headers: what was wrong with the request, and the scheme to use."""
    if not authorization:
        return ("this server needs an API key: send the header 'Authorization: Bearer KEY'",
                {"WWW-Authenticate": 'Bearer realm="tacoglow"'})
    return ("the API key is not valid: send the server's key as 'Authorization: Bearer KEY'",
            {"WWW-Authenticate": 'Bearer realm="tacoglow", error="invalid_token"'})


def check_exposure(host: str, api_key: str | None, no_auth: bool) -> None:
    """Refuse settings that would let others use the server unknowingly (ConfigError naming the options):
    an empty key, a key together with ``--no-auth``, or an address beyond loopback with neither."""
    if api_key is not None and not api_key.strip():
        raise ConfigError(f"the API key is empty: give --api-key KEY (or {KEY_ENVIRONMENT}) a non-empty value")
    if api_key is not None and no_auth:
        raise ConfigError(f"--no-auth turns keys off, yet a key is given (--api-key or {KEY_ENVIRONMENT}): "
                          "give one or the other")
    if api_key is None and not no_auth and not is_loopback(host):
        raise ConfigError(f"--host {host} lets other machines use this server: require a key with --api-key KEY "
                          f"(or {KEY_ENVIRONMENT}=KEY), or pass --no-auth to serve without one")
