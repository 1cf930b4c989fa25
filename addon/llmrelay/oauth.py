"""The ChatGPT account behind a `chatgpt` provider: sign-in, token storage and refresh.

    <data dir>/accounts/<name>.json    the account's tokens (mode 0600, folder 0700)
    <data dir>/accounts/<name>.lock    held while its tokens are refreshed or removed

The sign-in is the Codex CLI's: OAuth 2.0 authorization code with PKCE (S256) against
auth.openai.com under the Codex CLI's client id, the code coming back to a local server on
http://localhost:1455/auth/callback (1457 when 1455 is taken: the issuer accepts only those
two), or the device-code flow for machines without a browser.

Rules:
- Refresh tokens are single-use and rotate: refreshing twice with one token kills the sign-in
  (`refresh_token_reused`). So one refresh at a time per account, within a process (an
  asyncio lock shared by every `Account` of that file) and across processes (`flock` on the
  `.lock` file), and inside the lock the token file is read again: when someone else has
  refreshed meanwhile, their tokens are used instead of refreshing.
- A refresh, once sent, runs to its end even when the request that wanted it is cancelled,
  so the rotated tokens are always saved.
- The access token is refreshed when it expires within `skew` seconds (its JWT `exp`, else
  `expires_in`, else 8 days after the last refresh as the Codex CLI does), and once more
  when the provider refuses it with a 401 and the file still holds that same token.
- A refresh that fails for a reason that may pass leaves a still valid access token in use.
- Refresh answers: 401, `refresh_token_expired|reused|invalidated`, or 400 `invalid_grant`
  → `AuthError` (sign in again; remembered for that refresh token, so no further network
  attempts); anything else, a network failure included → `RefreshFailed` (try again later).
- Files are written whole: temp file, fsync, `os.replace`.
- No token, authorization code or verifier appears in a message, an exception or a log.
  Account ids, e-mail addresses and plan names are not secrets and may be shown.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import fcntl
import hashlib
import html
import os
import re
import secrets
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
DEFAULT_ISSUER = "https://auth.openai.com"
DEFAULT_DATA_DIR = "~/.llmrelay"
# The two ports the issuer accepts in a redirect URI for this client id.
CALLBACK_PORTS = (1455, 1457)
CALLBACK_PATH = "/auth/callback"
# Without the connectors scopes the Codex CLI asks for today; third-party sign-ins use
# this shorter set and the Codex backend accepts their tokens.
SCOPE = "openid profile email offline_access"
ORIGINATOR = "codex_cli_rs"
# Sent on every request to the issuer, as the Codex CLI's HTTP client does: a generic
# library user agent risks the issuer's bot filtering.
HEADERS = {"originator": ORIGINATOR, "user-agent": f"{ORIGINATOR}/0.0.0 (llmrelay)", "accept": "application/json"}
AUTH_CLAIM = "https://api.openai.com/auth"
# Tokens without a readable expiry count as stale this long after their last refresh.
STALE_AFTER = 8 * 24 * 3600.0
LOCK_WAIT = 45.0  # longer than one refresh may take (REFRESH_TIMEOUT)
REFRESH_TIMEOUT = 30.0
DEVICE_TIMEOUT = 15 * 60.0  # the issuer's user codes expire after 15 minutes
NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
DEAD_REASONS = {
    "refresh_token_expired": "the refresh token has expired",
    "refresh_token_reused": "the refresh token was already used, perhaps by another program sharing this sign-in",
    "refresh_token_invalidated": "the refresh token was revoked",
    "invalid_grant": "the issuer no longer accepts the refresh token",
}

# url, headers (lower-case names), body -> (status, response body); raises on network failure.
Post = Callable[[str, dict[str, str], bytes], Awaitable[tuple[int, bytes]]]


class AuthError(Exception):
    """The account needs signing in again. str(e) is safe to show a user (no token), and
    names the command to run: `scripts/login --name NAME`."""


class RefreshFailed(Exception):
    """A refresh that may work later (the issuer failed or could not be reached); str(e) is safe."""


class LoginFailed(Exception):
    """A sign-in (or an import) that did not complete; str(e) is safe."""


class RevokeFailed(Exception):
    """The issuer did not confirm a revocation; str(e) is safe."""


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    id_token: str
    account_id: str
    expires_at: float

    def __repr__(self) -> str:  # a stray log line must not carry the tokens
        return f"Tokens(account_id={self.account_id!r}, expires_at={self.expires_at!r})"


# ------------------------------------------------------------------------------ tokens


def claims(jwt: str) -> dict:
    """The payload of a JWT, without checking its signature; {} if unreadable."""
    parts = jwt.split(".") if isinstance(jwt, str) else []
    if len(parts) != 3:
        return {}
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return {}
    return payload if isinstance(payload, dict) else {}


def profile(tokens: Tokens) -> dict[str, str]:
    """What may be shown about a sign-in: e-mail, plan, account id."""
    info = claims(tokens.id_token)
    auth = info.get(AUTH_CLAIM) or claims(tokens.access_token).get(AUTH_CLAIM) or {}
    email = info.get("email") or (info.get("https://api.openai.com/profile") or {}).get("email") or ""
    plan = auth.get("chatgpt_plan_type") if isinstance(auth, dict) else ""
    return {"email": str(email or ""), "plan": str(plan or ""), "account_id": tokens.account_id}


def tokens_from(answer: dict, previous: Tokens | None = None, now: float | None = None) -> Tokens:
    """Tokens from a token endpoint answer; a refresh answer may lack what `previous` has.

    Raises ValueError when there is no access or refresh token.
    """
    now = time.time() if now is None else now
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    access = answer.get("access_token")
    if not isinstance(access, str) or not access:
        raise ValueError("no access token in the answer")
    refresh = _text(answer.get("refresh_token")) or (previous.refresh_token if previous else "")
    if not refresh:
        raise ValueError("no refresh token in the answer")
    id_token = _text(answer.get("id_token")) or (previous.id_token if previous else "")
    account_id = _account_id(id_token) or _account_id(access) or (previous.account_id if previous else "")
    return Tokens(access, refresh, id_token, account_id, _expiry(access, answer.get("expires_in"), now))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _account_id(jwt: str) -> str:
    auth = claims(jwt).get(AUTH_CLAIM)
    value = auth.get("chatgpt_account_id") if isinstance(auth, dict) else None
    return value if isinstance(value, str) else ""


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _expiry(access: str, expires_in: Any, now: float) -> float:
    exp = _number(claims(access).get("exp"))
    if exp is not None:
        return exp
    lifetime = _number(expires_in)
    return now + (lifetime if lifetime is not None else STALE_AFTER)


# ----------------------------------------------------------------------------- storage


def token_path(data_dir: str | Path, name: str) -> Path:
    """Where an account's tokens live; ValueError for a name that is not `[A-Za-z0-9_.-]+`."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"account name {name!r}: use only letters, digits, '_', '.' and '-'")
    return Path(data_dir).expanduser() / "accounts" / f"{name}.json"


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".json") + ".lock")


def _accounts_dir(path: Path) -> Path:
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077:
        with contextlib.suppress(OSError):  # not ours to change: the file modes still protect
            folder.chmod(0o700)
    return folder


def _signin_hint(name: str, data_dir: str | Path | None = None, issuer: str = DEFAULT_ISSUER) -> str:
    """The command that signs this account in again, with the options it needs."""
    command = f"scripts/login --name {name}"
    if data_dir is not None and Path(data_dir).expanduser() != Path(DEFAULT_DATA_DIR).expanduser():
        command += f" --data-dir {data_dir}"
    if issuer.rstrip("/") != DEFAULT_ISSUER:
        command += f" --issuer {issuer}"
    return f"run `{command}`"


def load(data_dir: str | Path, name: str) -> Tokens | None:
    """The stored tokens, or None when the account has none; AuthError when the file is unreadable."""
    path = token_path(data_dir, name)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = orjson.loads(raw)
        access, refresh = data["access_token"], data["refresh_token"]
        if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh):
            raise ValueError
        return Tokens(access, refresh, _text(data.get("id_token")), _text(data.get("account_id")),
                      _number(data.get("expires_at")) or 0.0)
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise AuthError(f"ChatGPT account {name!r}: {path} is not a readable token file; "
                        f"{_signin_hint(name, data_dir)}") from None


def save(data_dir: str | Path, name: str, tokens: Tokens) -> None:
    """Store the tokens atomically, readable by the owner only."""
    path = token_path(data_dir, name)
    folder = _accounts_dir(path)
    body = orjson.dumps({
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "id_token": tokens.id_token,
        "account_id": tokens.account_id,
        "expires_at": int(tokens.expires_at),
        "last_refresh": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }, option=orjson.OPT_INDENT_2)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def store(data_dir: str | Path, name: str, tokens: Tokens) -> None:
    """`save` for a new sign-in: under the account's lock, so that a relay refreshing the old
    sign-in at that moment cannot write its tokens over the new ones."""
    with _held(_lock_path(token_path(data_dir, name))):
        save(data_dir, name, tokens)


def remove(data_dir: str | Path, name: str) -> bool:
    """Delete the account's token file (waiting for a refresh in progress); False if there was none."""
    path = token_path(data_dir, name)
    if not path.exists():
        return False
    with _held(_lock_path(path)):
        try:
            path.unlink()
        except FileNotFoundError:
            return False
    return True


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
                  _text(found.get("account_id")) or _account_id(id_token) or _account_id(access),
                  _expiry(access, None, last))


def _parse_time(value: Any) -> float | None:
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ------------------------------------------------------------------------------- locks

_LOCKS: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}
# Token file → the refresh token the issuer declared dead, and what it said.
_DEAD: dict[str, tuple[str, str]] = {}


def _local_lock(key: str) -> asyncio.Lock:
    """One lock per token file and event loop (a lock belongs to the loop that first waits on it)."""
    loop = asyncio.get_running_loop()
    entry = _LOCKS.get(key)
    if entry is None or entry[0] is not loop:
        entry = _LOCKS[key] = (loop, asyncio.Lock())
    return entry[1]


def _open_lock(path: Path) -> int:
    _accounts_dir(path)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


@contextlib.asynccontextmanager
async def _flock(path: Path, wait: float, what: str) -> AsyncIterator[None]:
    """The exclusive `flock` on `path`, polled so that the event loop keeps running."""
    fd = _open_lock(path)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RefreshFailed(f"{what}: another process has held {path} for {wait:.0f} s") from None
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _held(path: Path, wait: float = LOCK_WAIT) -> Iterator[None]:
    """`_flock` for synchronous callers (the scripts)."""
    fd = _open_lock(path)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"another process has held {path} for {wait:.0f} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- account


_FAILED: dict[str, tuple[str, float, str]] = {}  # account → (refresh token, when it failed, message)


class Account:
    """A stored ChatGPT sign-in, kept fresh: what a `chatgpt` provider asks for its tokens."""

    def __init__(self, name: str, data_dir: str | Path, *, issuer: str = DEFAULT_ISSUER,
                 post: Post, skew: float = 60.0, timeout: float = REFRESH_TIMEOUT) -> None:
        self.path = token_path(data_dir, name)
        self.name = name
        self.data_dir = data_dir
        self.issuer = issuer.rstrip("/")
        self.skew = skew
        self.timeout = timeout
        self._post = post
        self._key = str(self.path.resolve())
        self._stamp: tuple[int, int, int] | None = None
        self._cached: Tokens | None = None

    def __repr__(self) -> str:
        return f"Account({self.name!r}, {str(self.data_dir)!r})"

    async def tokens(self) -> Tokens:
        """Fresh tokens: the stored ones, refreshed first when the access token expires
        within `skew` seconds. Raises AuthError when there are none or the refresh token is dead."""
        current = self._read()
        if self._fresh(current):
            return current
        try:
            return await self._update(self._fresh)
        except RefreshFailed:
            latest = self._read()
            if latest.expires_at > time.time():
                return latest  # refreshing early failed, but this one still works for a while
            raise

    async def refreshed(self, rejected: str) -> Tokens:
        """After the provider refused the access token `rejected` (HTTP 401): if the token
        file now holds a different access token (another request or process refreshed),
        that one; else one refresh."""
        return await self._update(lambda latest: latest.access_token != rejected and self._fresh(latest))

    def _fresh(self, tokens: Tokens) -> bool:
        return tokens.expires_at - self.skew > time.time()

    def _read(self) -> Tokens:
        """The file's tokens, parsed again only when the file was replaced."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise AuthError(f"ChatGPT account {self.name!r} is not signed in; {self._hint()}") from None
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp or self._cached is None:
            tokens = load(self.data_dir, self.name)
            if tokens is None:
                raise AuthError(f"ChatGPT account {self.name!r} is not signed in; {self._hint()}")
            self._stamp, self._cached = stamp, tokens
        return self._cached

    def _hint(self) -> str:
        return _signin_hint(self.name, self.data_dir, self.issuer)

    async def _update(self, usable: Callable[[Tokens], bool]) -> Tokens:
        # A task of its own, shielded: a caller that goes away must not abandon a refresh
        # the issuer may already have answered, or the rotated refresh token is lost.
        task = asyncio.ensure_future(self._locked_update(usable))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved, even if nobody waits
        return await asyncio.shield(task)

    async def _locked_update(self, usable: Callable[[Tokens], bool]) -> Tokens:
        asked = time.monotonic()
        async with _local_lock(self._key):
            async with _flock(_lock_path(self.path), LOCK_WAIT, f"ChatGPT account {self.name!r}"):
                latest = self._read()  # someone may have refreshed while we waited
                if usable(latest):
                    return latest
                # A refresh that failed (the issuer down or hanging) while this request waited
                # for it is not tried again by every request queued behind it, one timeout
                # after another: they all get its failure at once. Later requests try anew.
                failed = _FAILED.get(self._key)
                if failed and failed[0] == latest.refresh_token and failed[1] >= asked:
                    raise RefreshFailed(failed[2])
                try:
                    return await self._refresh(latest)
                except RefreshFailed as e:
                    _FAILED[self._key] = (latest.refresh_token, time.monotonic(), str(e))
                    raise

    async def _refresh(self, old: Tokens) -> Tokens:
        dead = _DEAD.get(self._key)
        if dead and dead[0] == old.refresh_token:
            raise AuthError(dead[1])
        body = orjson.dumps({"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": old.refresh_token})
        headers = {**HEADERS, "content-type": "application/json"}
        try:
            async with asyncio.timeout(self.timeout):
                status, raw = await self._post(f"{self.issuer}/oauth/token", headers, body)
        except Exception as e:
            raise RefreshFailed(f"ChatGPT account {self.name!r}: could not reach {self.issuer} to refresh "
                                f"the sign-in ({type(e).__name__}); try again") from e
        answer = _json(raw)
        if 200 <= status < 300:
            try:
                tokens = tokens_from(answer, previous=old)
            except ValueError:
                raise RefreshFailed(f"ChatGPT account {self.name!r}: the issuer's refresh answer "
                                    f"(HTTP {status}) holds no access token; try again") from None
            try:
                save(self.data_dir, self.name, tokens)
            except OSError as e:
                raise RefreshFailed(f"ChatGPT account {self.name!r}: could not save the refreshed sign-in "
                                    f"in {self.path.parent} ({e.strerror})") from None
            return tokens
        reason = dead_reason(status, answer)
        if reason:
            message = (f"ChatGPT account {self.name!r}: the sign-in has expired or was revoked ({reason}); "
                       f"{self._hint()}")
            _DEAD[self._key] = (old.refresh_token, message)
            raise AuthError(message)
        raise RefreshFailed(f"ChatGPT account {self.name!r}: refreshing the sign-in failed "
                            f"(HTTP {status} from {self.issuer}); try again")


def error_code(answer: Any) -> str:
    """The error code of an issuer answer: `error.code`, `error` as a string, or `code`."""
    if not isinstance(answer, dict):
        return ""
    error = answer.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return error["code"]
    if isinstance(error, str):
        return error
    return _text(answer.get("code"))


def dead_reason(status: int, answer: Any) -> str | None:
    """Why a refresh answer means signing in again, in words; None if a later try may work."""
    code = error_code(answer)
    if code == "invalid_grant":
        return DEAD_REASONS[code] if status in (400, 401) else None
    if code in DEAD_REASONS:
        return DEAD_REASONS[code]
    if status == 401:
        return "the issuer refused the refresh token (HTTP 401)"
    return None


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _why(answer: Any, *hidden: str) -> str:
    """The issuer's own words for a refusal, short, with any secret it echoes cut out."""
    if not isinstance(answer, dict):
        return ""
    error = answer.get("error")
    parts = [error_code(answer)]
    if isinstance(error, dict):
        parts.append(_text(error.get("message")))
    parts.append(_text(answer.get("error_description")))
    text = ": ".join(part for part in parts if part)[:300]
    for secret in hidden:
        if secret:
            text = text.replace(secret, "…")
    return f": {text}" if text else ""


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
        raise LoginFailed(f"could not reach {issuer} ({type(e).__name__})") from None
    answer = _json(raw)
    if not 200 <= status < 300:
        raise LoginFailed(f"the issuer refused the authorization code (HTTP {status}{_why(answer, code, verifier)})")
    try:
        if not isinstance(answer, dict) or not _text(answer.get("id_token")):
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
        store(data_dir, name, tokens)
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
            raise LoginFailed(f"could not reach {issuer} ({type(e).__name__})") from None
        return status, _json(raw)

    status, answer = await call("/api/accounts/deviceauth/usercode", {"client_id": CLIENT_ID})
    if status == 404:
        raise LoginFailed(f"device-code sign-in is not enabled on {issuer}")
    device_id = _text(answer.get("device_auth_id")) if isinstance(answer, dict) else ""
    user_code = (_text(answer.get("user_code")) or _text(answer.get("usercode"))) if isinstance(answer, dict) else ""
    if not 200 <= status < 300 or not device_id or not user_code:
        raise LoginFailed(f"the issuer gave no device code (HTTP {status}{_why(answer)})")
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
            raise LoginFailed(f"the device sign-in failed (HTTP {status}{_why(answer)})")
        if time.monotonic() + interval > deadline:
            raise LoginFailed(f"the code was not entered within {timeout / 60:.0f} minutes")
        await asyncio.sleep(interval)
    code = _text(answer.get("authorization_code")) if isinstance(answer, dict) else ""
    verifier = _text(answer.get("code_verifier")) if isinstance(answer, dict) else ""
    if not code or not verifier:
        raise LoginFailed("the issuer's device answer lacks the authorization code")
    tokens = await exchange(code, verifier, f"{issuer}/deviceauth/callback", issuer=issuer, post=post)
    store(data_dir, name, tokens)
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
        raise RevokeFailed(f"{issuer} answered HTTP {status}{_why(_json(raw), refresh_token)}")
