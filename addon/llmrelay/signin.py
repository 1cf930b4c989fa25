"""Signing in to a ChatGPT account, for `scripts/login` and `scripts/logout`: the Codex CLI's
authorization-code flow with PKCE (S256), the device-code flow, an existing Codex CLI
sign-in imported, and revocation. The account's tokens, once stored, are `oauth`'s.

Rules:
- the authorization code comes back to a local server on
  http://localhost:1455/auth/callback, or 1457 when 1455 is taken: the issuer accepts only
  those two redirect URIs for the Codex CLI's client id;
- the state is checked, and the verifier never leaves this process but to the issuer;
- no token, authorization code or verifier appears in a message, an exception or a log.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import html
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from .oauth import (
    CLIENT_ID, DEFAULT_ISSUER, HEADERS, ORIGINATOR, Post, Tokens, account_id_of, as_text, expiry_of, failure_text,
    parse_json, profile, refusal_text, store, token_path, tokens_from,
)

# The two ports the issuer accepts in a redirect URI for this client id.
CALLBACK_PORTS = (1455, 1457)
CALLBACK_PATH = "/auth/callback"
# Without the connectors scopes the Codex CLI asks for today; third-party sign-ins use
# this shorter set and the Codex backend accepts their tokens.
SCOPE = "openid profile email offline_access"
DEVICE_TIMEOUT = 15 * 60.0  # the issuer's user codes expire after 15 minutes
class LoginFailed(Exception):
    """A sign-in (or an import) that did not complete; str(e) is safe."""


class RevokeFailed(Exception):
    """The issuer did not confirm a revocation; str(e) is safe."""


def codex_auth_path() -> Path:
    """The Codex CLI's sign-in file: $CODEX_HOME/auth.json, else ~/.codex/auth.json."""
    home = os.environ.get("CODEX_HOME")
    return Path(home).expanduser() / "auth.json" if home else Path("~/.codex/auth.json").expanduser()


def codex_tokens(path: str | Path) -> Tokens:
    """The ChatGPT tokens of a Codex CLI `auth.json`; LoginFailed when it has none."""
    path = Path(path).expanduser()
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise LoginFailed(f"{path} does not exist (is the Codex CLI signed in, with "
                          "cli_auth_credentials_store = \"file\"?)") from None
    except (OSError, orjson.JSONDecodeError) as e:
        raise LoginFailed(f"{path} is not readable JSON ({type(e).__name__})") from None
    found = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(found, dict) or not found.get("access_token") or not found.get("refresh_token"):
        mode = data.get("auth_mode") if isinstance(data, dict) else None
        raise LoginFailed(f"{path} holds no ChatGPT sign-in" + (f" (auth_mode {mode!r})" if mode else ""))
    id_token = found.get("id_token")
    id_token = id_token if isinstance(id_token, str) else ""  # written as the raw JWT string
    access = str(found["access_token"])
    last = _parse_time(data.get("last_refresh")) or time.time()
    return Tokens(access, str(found["refresh_token"]), id_token,
                  as_text(found.get("account_id")) or account_id_of(id_token) or account_id_of(access),
                  expiry_of(access, None, last))


def _parse_time(value: Any) -> float | None:
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ---------------------------------------------------------------------- HTTP for scripts


def stdlib_post(timeout: float = 30.0) -> Post:
    """A `Post` on urllib in a worker thread, for the scripts (the relay brings its own client)."""

    def send(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read()

    async def post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        return await asyncio.to_thread(send, url, headers, body)

    return post


# ----------------------------------------------------------------------------- sign-in


def pkce() -> tuple[str, str]:
    """A PKCE verifier (64 random bytes) and its S256 challenge, both base64url without padding."""
    verifier = _b64(secrets.token_bytes(64))
    return verifier, _b64(hashlib.sha256(verifier.encode()).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def authorize_url(issuer: str, redirect_uri: str, challenge: str, state: str) -> str:
    """The address the user opens to sign in, with the Codex CLI's parameters in its order."""
    query = urllib.parse.urlencode({
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri,
        "scope": SCOPE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "id_token_add_organizations": "true",
        "codex_cli_simplified_flow": "true",
        "state": state,
        "originator": ORIGINATOR,
    }, quote_via=urllib.parse.quote)
    return f"{issuer.rstrip('/')}/oauth/authorize?{query}"


async def exchange(code: str, verifier: str, redirect_uri: str, *, issuer: str = DEFAULT_ISSUER,
                   post: Post) -> Tokens:
    """Trade an authorization code for tokens (form-encoded, as the Codex CLI sends it)."""
    body = urllib.parse.urlencode({
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": CLIENT_ID,
        "code_verifier": verifier,
    }, quote_via=urllib.parse.quote).encode()
    issuer = issuer.rstrip("/")
    headers = {**HEADERS, "content-type": "application/x-www-form-urlencoded"}
    try:
        status, raw = await post(f"{issuer}/oauth/token", headers, body)
    except Exception as e:
        raise LoginFailed(f"could not reach {issuer} ({failure_text(e)})") from None
    answer = parse_json(raw)
    if not 200 <= status < 300:
        raise LoginFailed(f"the issuer refused the authorization code (HTTP {status}{refusal_text(answer, code, verifier)})")
    try:
        if not isinstance(answer, dict) or not as_text(answer.get("id_token")):
            raise ValueError
        return tokens_from(answer)
    except ValueError:
        raise LoginFailed(f"the issuer's answer (HTTP {status}) lacks the id, access or refresh token") from None


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: system-ui, sans-serif; margin: 4em auto; max-width: 36em">
<h1>{title}</h1><p>{text}</p></body></html>"""


def _page(title: str, text: str) -> bytes:
    return _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()


class _Callback:
    """The local server the browser comes back to: one sign-in, then done."""

    def __init__(self, state: str, finish: Callable[[str], Awaitable[Tokens]]) -> None:
        self.state = state
        self.finish = finish
        self.outcome: asyncio.Future[Tokens] = asyncio.get_running_loop().create_future()
        self.busy = False
        self.writers: set[asyncio.StreamWriter] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
                return
            status, content_type, body, settle = await self.answer(method, target)
            head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: {content_type}\r\n"
                    f"content-length: {len(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n")
            writer.write(head.encode("latin-1") + body)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            settle()  # only once the browser has its page
        except ConnectionError:
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def answer(self, method: str, target: str) -> tuple[int, str, bytes, Callable[[], None]]:
        def nothing() -> None:
            pass

        url = urllib.parse.urlsplit(target)
        if method != "GET" or url.path != CALLBACK_PATH:
            return 404, "text/plain; charset=utf-8", b"Not Found", nothing
        query = {key: values[0] for key, values in urllib.parse.parse_qs(url.query).items()}
        if not secrets.compare_digest(query.get("state", "").encode(), self.state.encode()):
            # Not our browser's answer (an old tab, another program): keep waiting for it.
            return 400, "text/plain; charset=utf-8", b"State mismatch", nothing
        if self.busy or self.outcome.done():
            return 409, "text/html; charset=utf-8", _page("Already signed in", "This sign-in is finished."), nothing
        self.busy = True
        if "error" in query:
            description = query.get("error_description", "")
            if "missing_codex_entitlement" in description:
                problem = "Codex is not enabled for this ChatGPT workspace; ask its administrator for access"
            else:
                problem = f"the sign-in was refused: {query['error'][:100]}" + (f" ({description[:200]})" if description else "")
            return self._failed(LoginFailed(problem))
        if not query.get("code"):
            return self._failed(LoginFailed("the issuer sent the browser back without an authorization code"))
        try:
            tokens = await self.finish(query["code"])
        except LoginFailed as e:
            return self._failed(e)
        except Exception as e:
            return self._failed(LoginFailed(f"storing the sign-in failed ({type(e).__name__})"))
        who = profile(tokens)["email"]
        text = f"Signed in{' as ' + who if who else ''}. You can close this tab and go back to the terminal."
        return 200, "text/html; charset=utf-8", _page("Signed in to ChatGPT", text), lambda: self.outcome.set_result(tokens)

    def _failed(self, error: LoginFailed) -> tuple[int, str, bytes, Callable[[], None]]:
        return (400, "text/html; charset=utf-8", _page("Sign-in failed", f"{error}. See the terminal."),
                lambda: self.outcome.set_exception(error))


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict"}


async def _bind(handler: Callable, ports: Sequence[int]) -> asyncio.Server:
    for i, port in enumerate(ports):
        try:
            return await asyncio.start_server(handler, "127.0.0.1", port)
        except OSError:
            if i == len(ports) - 1:
                raise LoginFailed(f"cannot listen on 127.0.0.1 port {' or '.join(map(str, ports))} for the "
                                  "browser's answer (another sign-in running?); try --device") from None
    raise LoginFailed("no port to listen on")


async def login(data_dir: str | Path, name: str, *, post: Post, show: Callable[[str], None],
                issuer: str = DEFAULT_ISSUER, ports: Sequence[int] = CALLBACK_PORTS,
                timeout: float = 300.0) -> Tokens:
    """Sign in with the browser: `show(url)` presents the authorize address; the tokens are
    saved once the browser comes back. LoginFailed on refusal or after `timeout` seconds."""
    token_path(data_dir, name)  # a bad name fails before the user signs in
    issuer = issuer.rstrip("/")
    verifier, challenge = pkce()
    redirect_uri = ""

    async def finish(code: str) -> Tokens:
        tokens = await exchange(code, verifier, redirect_uri, issuer=issuer, post=post)
        store(data_dir, name, tokens, issuer)
        return tokens

    callback = _Callback(_b64(secrets.token_bytes(32)), finish)
    server = await _bind(callback.serve, ports)
    try:
        port = server.sockets[0].getsockname()[1]
        # The issuer allows `localhost`, not 127.0.0.1, in this client's redirect URIs.
        redirect_uri = f"http://localhost:{port}{CALLBACK_PATH}"
        show(authorize_url(issuer, redirect_uri, challenge, callback.state))
        try:
            return await asyncio.wait_for(asyncio.shield(callback.outcome), timeout)
        except TimeoutError:
            raise LoginFailed(f"the browser did not come back within {timeout:g} s") from None
    finally:
        server.close()
        for writer in list(callback.writers):
            writer.close()


async def device_login(data_dir: str | Path, name: str, *, post: Post, show: Callable[[str, str], None],
                       issuer: str = DEFAULT_ISSUER, timeout: float = DEVICE_TIMEOUT) -> Tokens:
    """Sign in with a code: `show(verification_url, user_code)` tells the user where to enter
    it, on any device; then the issuer is polled until the user has approved."""
    token_path(data_dir, name)
    issuer = issuer.rstrip("/")
    headers = {**HEADERS, "content-type": "application/json"}

    async def call(path: str, payload: dict) -> tuple[int, Any]:
        try:
            status, raw = await post(f"{issuer}{path}", headers, orjson.dumps(payload))
        except Exception as e:
            raise LoginFailed(f"could not reach {issuer} ({failure_text(e)})") from None
        return status, parse_json(raw)

    status, answer = await call("/api/accounts/deviceauth/usercode", {"client_id": CLIENT_ID})
    if status == 404:
        raise LoginFailed(f"device-code sign-in is not enabled on {issuer}")
    device_id = as_text(answer.get("device_auth_id")) if isinstance(answer, dict) else ""
    user_code = (as_text(answer.get("user_code")) or as_text(answer.get("usercode"))) if isinstance(answer, dict) else ""
    if not 200 <= status < 300 or not device_id or not user_code:
        raise LoginFailed(f"the issuer gave no device code (HTTP {status}{refusal_text(answer)})")
    try:  # a string upstream ("5"), a number elsewhere
        interval = max(1.0, float(answer.get("interval", 5)))
    except (TypeError, ValueError):
        interval = 5.0
    show(f"{issuer}/codex/device", user_code)
    deadline = time.monotonic() + timeout
    while True:
        status, answer = await call("/api/accounts/deviceauth/token", {"device_auth_id": device_id, "user_code": user_code})
        if 200 <= status < 300:
            break
        if status not in (403, 404):  # 403 and 404 mean: not approved yet
            raise LoginFailed(f"the device sign-in failed (HTTP {status}{refusal_text(answer)})")
        if time.monotonic() + interval > deadline:
            raise LoginFailed(f"the code was not entered within {timeout / 60:.0f} minutes")
        await asyncio.sleep(interval)
    code = as_text(answer.get("authorization_code")) if isinstance(answer, dict) else ""
    verifier = as_text(answer.get("code_verifier")) if isinstance(answer, dict) else ""
    if not code or not verifier:
        raise LoginFailed("the issuer's device answer lacks the authorization code")
    tokens = await exchange(code, verifier, f"{issuer}/deviceauth/callback", issuer=issuer, post=post)
    store(data_dir, name, tokens, issuer)
    return tokens


async def revoke(refresh_token: str, *, issuer: str = DEFAULT_ISSUER, post: Post, timeout: float = 10.0) -> None:
    """Ask the issuer to revoke a refresh token (and with it the sign-in); RevokeFailed if it did not."""
    issuer = issuer.rstrip("/")
    body = orjson.dumps({"token": refresh_token, "token_type_hint": "refresh_token", "client_id": CLIENT_ID})
    try:
        async with asyncio.timeout(timeout):
            status, raw = await post(f"{issuer}/oauth/revoke", {**HEADERS, "content-type": "application/json"}, body)
    except Exception as e:
        raise RevokeFailed(f"could not reach {issuer} ({type(e).__name__})") from None
    if not 200 <= status < 300:
        raise RevokeFailed(f"{issuer} answered HTTP {status}{refusal_text(parse_json(raw), refresh_token)}")
