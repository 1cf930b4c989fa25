"""Who may use the relay: the checks every request passes before anything else happens.

The relay spends the user's provider keys, so a request that did not come from a client the
user runs never reaches a provider. A web page the user visits can send a request to
127.0.0.1 (a cross-site POST), or point a name of its own at 127.0.0.1 and read the answers
(DNS rebinding); neither looks like an SDK or Claude Code, which send no `Origin`, talk to the
address they were given and send JSON.

Rules, in order (each refusal is an Anthropic error):
- `Host` must be an IP address, `localhost`, or one of `relay.allowed_hosts` → else 403;
- an `Origin` header must be one of `relay.allowed_origins` → else 403;
- with inbound keys (`relay.keys`, `relay.keys_file`), the request must carry one as
  `x-api-key`, `Authorization: Bearer` or `x-llmrelay-key` → else 401 (`/health`, `GET /`
  and `HEAD /` stay open: they tell nothing);
- a POST must be JSON (`application/json` or `…+json`) → else 415;
- a body over `relay.max_request_mb` → 413.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from .config import Relay
from .errors import error_body

OPEN_PATHS = frozenset({"/", "/health"})
KEY_HEADER = "x-llmrelay-key"  # the inbound key, when x-api-key or Authorization carry the client's own


def check(relay: Relay, method: str, path: str, headers: dict[str, str], size: int) -> tuple[int, bytes] | None:
    """None: let it in. Otherwise the status and Anthropic error body to answer with."""
    host = _hostname(headers.get("host", ""))
    if host and not (host == "localhost" or _is_ip(host) or host in relay.allowed_hosts):
        return 403, error_body("permission_error", f"this relay does not answer to the host name {host!r}; add it to relay.allowed_hosts if it is yours")
    origin = headers.get("origin")
    if origin is not None and origin not in relay.allowed_origins:
        return 403, error_body("permission_error", f"requests from the web origin {origin!r} are refused; add it to relay.allowed_origins if it is yours")
    keys = relay.inbound_keys
    if keys and path not in OPEN_PATHS and inbound_key(headers, keys) is None:
        return 401, error_body("authentication_error", "this relay needs one of its keys, as x-api-key or Authorization: Bearer")
    if method == "POST" and size and not _is_json(headers.get("content-type", "")):
        return 415, error_body("invalid_request_error", "the request body must be JSON (content-type: application/json)")
    if size > relay.max_request_mb * 1024 * 1024:
        return 413, error_body("request_too_large", f"the request is larger than relay.max_request_mb ({relay.max_request_mb:g} MB)")
    return None


def inbound_key(headers: dict[str, str], keys: frozenset[str]) -> str | None:
    """Which header carries an inbound key, if any."""
    bearer = headers.get("authorization", "")
    candidates = {
        KEY_HEADER: headers.get(KEY_HEADER),
        "x-api-key": headers.get("x-api-key"),
        "authorization": bearer[7:].strip() if bearer[:7].lower() == "bearer " else None,
    }
    return next((name for name, value in candidates.items() if value is not None and value in keys), None)


def _hostname(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8082
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@lru_cache(maxsize=64)  # (parsing an address costs more than the rest of the checks together)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")
