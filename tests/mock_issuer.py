"""A fake OpenAI issuer (the auth.openai.com of the ChatGPT sign-in), strict where the real one is.

It stands in for the real issuer in the sign-in and refresh tests, and lets a fake Codex
backend decide which bearer tokens to accept (`is_live`, `account_id`).

    with MockIssuer() as issuer:
        ...  # scripts/login --issuer {issuer.url}; issuer.refreshes; issuer.is_live(token)

Rules:
- `GET /oauth/authorize` checks the parameters the real one checks (client id, a redirect
  URI on its allow-list: localhost ports 1455 and 1457 only, an S256 challenge of 43
  base64url characters, a state, the `openid` and `offline_access` scopes) and answers 302 to
  the redirect URI with a code and the state, or with `error=` when `deny` is set; so a
  browser that follows redirects completes the sign-in.
- `POST /oauth/token` takes a form or JSON body. An authorization code is single-use, ten
  minutes long, bound to its redirect URI, and needs the verifier of its challenge; else 400
  `invalid_grant`. A refresh token is single-use: each refresh answers a new access token and
  a new refresh token, a second use is 401 `refresh_token_reused` (the real body), a revoked
  one 401 `refresh_token_invalidated`, an unknown one 400 `invalid_grant`.
- An access token stays valid until its `exp` unless its sign-in is revoked; refreshing does
  not end the previous access token.
- Device codes: `POST /api/accounts/deviceauth/usercode` gives a code with `interval` as the
  real one writes it (a string); the first `device_pending` polls of
  `/api/accounts/deviceauth/token` answer 403 then 404 (pending), then the user counts as
  having approved and the answer carries a code with the server's own PKCE pair, for the
  redirect URI `{url}/deviceauth/callback`.
- `POST /oauth/revoke` (RFC 7009) always answers 200; revoking a refresh token ends its whole
  sign-in (its access tokens too).
- Tokens are real-shaped JWTs (header.payload.signature, base64url without padding) with
  `exp`, `iat`, `email` and the `https://api.openai.com/auth` claims.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from mock_openai import read_request, send_body

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
REDIRECT_URIS = ("http://localhost:1455/auth/callback", "http://localhost:1457/auth/callback")
AUTH_CLAIM = "https://api.openai.com/auth"
CHALLENGE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
CODE_TTL = 600
REUSED = {"message": "Your refresh token has already been used to generate a new access token. "
                     "Please try signing in again.",
          "type": "invalid_request_error", "param": None, "code": "refresh_token_reused"}
INVALIDATED = {"message": "Your refresh token has been invalidated. Please try signing in again.",
               "type": "invalid_request_error", "param": None, "code": "refresh_token_invalidated"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def challenge_of(verifier: str) -> str:
    return b64(hashlib.sha256(verifier.encode()).digest())


def jwt(payload: dict) -> str:
    header = {"alg": "RS256", "typ": "JWT", "kid": "mock-issuer"}
    return f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(payload))}.{b64(secrets.token_bytes(64))}"


async def httpx_post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """The `post` that `llmrelay.oauth` wants, on httpx (the relay brings its own)."""
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        response = await client.post(url, headers=headers, content=body)
        return response.status_code, response.content


class Refused(Exception):
    """An answer other than success: status and JSON body."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def invalid(error: str, description: str, status: int = 400) -> Refused:
    return Refused(status, {"error": error, "error_description": description})


@dataclass
class Code:
    redirect_uri: str
    challenge: str
    expires: float
    used: bool = False


@dataclass
class Device:
    user_code: str
    polls: list[float] = field(default_factory=list)
    done: bool = False


class MockIssuer:
    """The fake issuer on 127.0.0.1, served from a background thread."""

    def __init__(self, access_ttl: float = 3600, *, device_interval: Any = "1", device_pending: int = 1,
                 refresh_delay: float = 0.0, email: str = "user@example.com", plan: str = "plus") -> None:
        self.access_ttl = access_ttl  # for tokens issued from now on; negative: already expired
        self.device_interval = device_interval
        self.device_pending = device_pending
        self.refresh_delay = refresh_delay  # seconds a refresh takes, to make callers overlap
        self.email = email
        self.plan = plan
        self.account_id = f"acct-{secrets.token_hex(8)}"
        self.user_id = f"user-{secrets.token_hex(8)}"
        self.deny: str | None = None  # an OAuth error the next authorizations redirect with
        self.port = 0
        # What tests look at.
        self.refreshes = 0  # successful refresh grants
        self.reuses = 0  # refresh tokens presented a second time
        self.exchanges = 0  # successful authorization-code grants
        self.revoked: set[str] = set()  # tokens sent to /oauth/revoke
        self.authorizations: list[dict[str, str]] = []  # the query of each /oauth/authorize
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []  # method, path, headers, body
        self.user_codes: list[str] = []
        self.issued: set[str] = set()  # every token, code and verifier handed out: never to be printed
        self._failures: list[tuple[int, dict]] = []
        self._codes: dict[str, Code] = {}
        self._refresh: dict[str, tuple[str, bool]] = {}  # refresh token -> (sign-in, used)
        self._access: dict[str, tuple[float, str]] = {}  # access token -> (exp, sign-in)
        self._ended: set[str] = set()  # revoked sign-ins
        self._devices: dict[str, Device] = {}
        self._state = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what tests and the fake backend ask

    def is_live(self, token: str) -> bool:
        """A known access token, not expired, whose sign-in was not revoked."""
        with self._state:
            found = self._access.get(token)
            return bool(found) and found[0] > time.time() and found[1] not in self._ended and token not in self.revoked

    @property
    def live_access_tokens(self) -> set[str]:
        with self._state:
            tokens = list(self._access)
        return {token for token in tokens if self.is_live(token)}

    def expire_all(self) -> None:
        """End every access token issued so far (their JWT `exp` still says otherwise)."""
        with self._state:
            for token, (_, grant) in self._access.items():
                self._access[token] = (time.time() - 1, grant)

    def fail_next(self, status: int, body: dict | None = None) -> None:
        """The token endpoint's next answer, whatever is asked."""
        self._failures.append((status, body or {"error": {"message": "The server had an error.", "type": "server_error",
                                                          "param": None, "code": None}}))

    def grant(self) -> dict:
        """A token answer as a finished sign-in gets it, without the browser."""
        with self._state:
            return self._tokens(secrets.token_hex(8))

    # -- lifecycle

    def start(self) -> MockIssuer:
        ready = threading.Event()
        failure: list[BaseException] = []

        async def run() -> None:
            try:
                self._loop = asyncio.get_running_loop()
                server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
                self.port = server.sockets[0].getsockname()[1]
                self._stopped = asyncio.Event()
            except BaseException as e:
                failure.append(e)
                return
            finally:
                ready.set()
            await self._stopped.wait()
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

        self._thread = threading.Thread(target=asyncio.run, args=(run(),), name="mock-issuer", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread and self._loop and self._stopped:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> MockIssuer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- HTTP

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            while (request := await read_request(reader)) is not None:
                method, target, version, headers, body = request
                await self._serve(writer, method, target, headers, body)
                if version != "HTTP/1.1" or headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.CancelledError):
            pass  # client went away, or stop()
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str],
                     body: bytes) -> None:
        url = urllib.parse.urlsplit(target)
        self.requests.append((method, url.path, headers, body))
        routes = {
            ("GET", "/oauth/authorize"): self._authorize,
            ("POST", "/oauth/token"): self._token,
            ("POST", "/oauth/revoke"): self._revoke,
            ("POST", "/api/accounts/deviceauth/usercode"): self._usercode,
            ("POST", "/api/accounts/deviceauth/token"): self._device_token,
        }
        route = routes.get((method, url.path))
        if route is None:
            await send_body(writer, 404, b"Not Found", "text/plain")
            return
        try:
            if route == self._authorize:
                location = self._authorize(dict(urllib.parse.parse_qsl(url.query)))
                await send_body(writer, 302, b"", "text/html", {"location": location})
                return
            answer = await route(self._form(headers, body))
            await send_body(writer, 200, orjson.dumps(answer), "application/json")
        except Refused as e:
            await send_body(writer, e.status, orjson.dumps(e.body), "application/json")

    @staticmethod
    def _form(headers: dict[str, str], body: bytes) -> dict[str, Any]:
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/x-www-form-urlencoded":
            return dict(urllib.parse.parse_qsl(body.decode()))
        if kind == "application/json":
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise invalid("invalid_request", "The request body is not valid JSON.") from None
            if isinstance(data, dict):
                return data
        raise invalid("invalid_request", f"Unsupported content type {kind!r}.")

    # -- endpoints

    def _authorize(self, query: dict[str, str]) -> str:
        self.authorizations.append(query)
        problems = []
        if query.get("response_type") != "code":
            problems.append("response_type must be code")
        if query.get("client_id") != CLIENT_ID:
            problems.append("unknown client_id")
        if query.get("redirect_uri") not in REDIRECT_URIS:
            problems.append("redirect_uri is not registered for this client")
        if query.get("code_challenge_method") != "S256":
            problems.append("code_challenge_method must be S256")
        if not CHALLENGE_RE.fullmatch(query.get("code_challenge", "")):
            problems.append("code_challenge must be 43 base64url characters")
        if not query.get("state"):
            problems.append("state is required")
        if not {"openid", "offline_access"} <= set(query.get("scope", "").split()):
            problems.append("scope must include openid and offline_access")
        if problems:
            raise invalid("invalid_request", "; ".join(problems))
        back = {"state": query["state"]}
        if self.deny:
            back |= {"error": self.deny, "error_description": "The user denied the request."}
        else:
            code = f"ac_{secrets.token_urlsafe(32)}"
            with self._state:
                self._codes[code] = Code(query["redirect_uri"], query["code_challenge"], time.time() + CODE_TTL)
                self.issued.add(code)
            back = {"code": code, **back}
        return f"{query['redirect_uri']}?{urllib.parse.urlencode(back)}"

    async def _token(self, form: dict[str, Any]) -> dict:
        if self._failures:
            raise Refused(*self._failures.pop(0))
        if form.get("client_id") != CLIENT_ID:
            raise Refused(401, {"error": "invalid_client", "error_description": "Unknown client."})
        grant = form.get("grant_type")
        if grant == "authorization_code":
            return self._code_grant(form)
        if grant == "refresh_token":
            return await self._refresh_grant(form)
        raise invalid("unsupported_grant_type", f"Unsupported grant type {grant!r}.")

    def _code_grant(self, form: dict[str, Any]) -> dict:
        for key in ("code", "redirect_uri", "code_verifier"):
            if not isinstance(form.get(key), str) or not form[key]:
                raise invalid("invalid_request", f"Missing {key}.")
        with self._state:
            code = self._codes.get(form["code"])
            if code is None or code.used or code.expires < time.time():
                raise invalid("invalid_grant", "Invalid authorization code.")
            code.used = True
            if form["redirect_uri"] != code.redirect_uri:
                raise invalid("invalid_grant", "redirect_uri does not match the authorization request.")
            if challenge_of(form["code_verifier"]) != code.challenge:
                raise invalid("invalid_grant", "code_verifier does not match the code_challenge.")
            self.exchanges += 1
            return self._tokens(secrets.token_hex(8))

    async def _refresh_grant(self, form: dict[str, Any]) -> dict:
        token = form.get("refresh_token")
        with self._state:
            found = self._refresh.get(token) if isinstance(token, str) else None
            if found is None:
                raise invalid("invalid_grant", "Unknown refresh token.")
            grant, used = found
            if grant in self._ended:
                raise Refused(401, {"error": INVALIDATED})
            if used:
                self.reuses += 1
                raise Refused(401, {"error": REUSED})
            self._refresh[token] = (grant, True)  # used from now on, before the answer is out
        if self.refresh_delay:
            await asyncio.sleep(self.refresh_delay)
        with self._state:
            self.refreshes += 1
            return self._tokens(grant)

    async def _revoke(self, form: dict[str, Any]) -> dict:
        token = form.get("token")
        if not isinstance(token, str) or not token:
            raise invalid("invalid_request", "Missing token.")
        if form.get("token_type_hint") == "refresh_token" and form.get("client_id") != CLIENT_ID:
            raise Refused(401, {"error": "invalid_client", "error_description": "Unknown client."})
        with self._state:
            self.revoked.add(token)
            if token in self._refresh:
                self._ended.add(self._refresh[token][0])
        return {}

    async def _usercode(self, form: dict[str, Any]) -> dict:
        if form.get("client_id") != CLIENT_ID:
            raise Refused(401, {"error": "invalid_client", "error_description": "Unknown client."})
        device_id = f"deviceauth_{secrets.token_urlsafe(16)}"
        user_code = f"{secrets.token_hex(2).upper()}-{secrets.token_hex(3).upper()}"
        with self._state:
            self._devices[device_id] = Device(user_code)
            self.user_codes.append(user_code)
            self.issued.add(device_id)
        return {"device_auth_id": device_id, "user_code": user_code, "interval": self.device_interval}

    async def _device_token(self, form: dict[str, Any]) -> dict:
        with self._state:
            device = self._devices.get(form.get("device_auth_id", ""))
            if device is None or device.user_code != form.get("user_code") or device.done:
                raise invalid("invalid_request", "Unknown device code.")
            device.polls.append(time.monotonic())
            if len(device.polls) <= self.device_pending:
                status = 403 if len(device.polls) % 2 else 404  # both mean pending
                raise Refused(status, {"error": {"message": "Device authorization is pending.",
                                                 "code": "deviceauth_authorization_pending"}})
            device.done = True
            verifier = b64(secrets.token_bytes(64))
            code = f"ac_{secrets.token_urlsafe(32)}"
            challenge = challenge_of(verifier)
            self._codes[code] = Code(f"{self.url}/deviceauth/callback", challenge, time.time() + CODE_TTL)
            self.issued |= {code, verifier}
        return {"authorization_code": code, "code_challenge": challenge, "code_verifier": verifier}

    def poll_gaps(self) -> list[float]:
        """Seconds between consecutive device polls, across all device codes."""
        with self._state:
            gaps = []
            for device in self._devices.values():
                gaps += [b - a for a, b in zip(device.polls, device.polls[1:])]
            return gaps

    # -- tokens (called with self._state held)

    def _tokens(self, grant: str) -> dict:
        now = int(time.time())
        auth = {"chatgpt_account_id": self.account_id, "chatgpt_plan_type": self.plan,
                "chatgpt_user_id": self.user_id, "user_id": self.user_id}
        exp = now + int(self.access_ttl)
        access = jwt({"aud": ["https://api.openai.com/v1"], "client_id": CLIENT_ID, "email": self.email,
                      "exp": exp, "iat": now, "iss": self.url, "jti": secrets.token_hex(8),
                      "scp": ["openid", "profile", "email", "offline_access"], AUTH_CLAIM: auth,
                      "https://api.openai.com/profile": {"email": self.email, "email_verified": True}})
        id_token = jwt({"aud": [CLIENT_ID], "email": self.email, "email_verified": True, "exp": now + 3600,
                        "iat": now, "iss": self.url, "sub": self.user_id, AUTH_CLAIM: auth})
        refresh = f"rt_{secrets.token_urlsafe(32)}"
        self._access[access] = (exp, grant)
        self._refresh[refresh] = (grant, False)
        self.issued |= {access, id_token, refresh}
        return {"access_token": access, "refresh_token": refresh, "id_token": id_token,
                "token_type": "Bearer", "expires_in": int(self.access_ttl), "scope": "openid profile email offline_access"}
