"""The ChatGPT account behind a `chatgpt` provider: its tokens, their storage and refresh.

    <data dir>/accounts/<name>.json    the account's tokens (mode 0600, folder 0700)
    <data dir>/accounts/<name>.lock    held while its tokens are refreshed or removed

The tokens come from a sign-in (`signin`: the Codex CLI's OAuth flows against
auth.openai.com under its client id); from then on they are this module's.

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
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .upstream import UpstreamError

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
DEFAULT_ISSUER = "https://auth.openai.com"
DEFAULT_DATA_DIR = "~/.llmrelay"
ORIGINATOR = "codex_cli_rs"
# Sent on every request to the issuer, as the Codex CLI's HTTP client does: a generic
# library user agent risks the issuer's bot filtering.
HEADERS = {"originator": ORIGINATOR, "user-agent": f"{ORIGINATOR}/0.0.0 (llmrelay)", "accept": "application/json"}
AUTH_CLAIM = "https://api.openai.com/auth"
# Tokens without a readable expiry count as stale this long after their last refresh.
STALE_AFTER = 8 * 24 * 3600.0
LOCK_WAIT = 45.0  # longer than one refresh may take (REFRESH_TIMEOUT)
REFRESH_TIMEOUT = 30.0
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
    refresh = as_text(answer.get("refresh_token")) or (previous.refresh_token if previous else "")
    if not refresh:
        raise ValueError("no refresh token in the answer")
    id_token = as_text(answer.get("id_token")) or (previous.id_token if previous else "")
    account_id = account_id_of(id_token) or account_id_of(access) or (previous.account_id if previous else "")
    return Tokens(access, refresh, id_token, account_id, expiry_of(access, answer.get("expires_in"), now))


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def account_id_of(jwt: str) -> str:
    auth = claims(jwt).get(AUTH_CLAIM)
    value = auth.get("chatgpt_account_id") if isinstance(auth, dict) else None
    return value if isinstance(value, str) else ""


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def expiry_of(access: str, expires_in: Any, now: float) -> float:
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


def signin_hint(name: str, data_dir: str | Path | None = None, issuer: str = DEFAULT_ISSUER) -> str:
    """The command that signs this account in again, with the options it needs."""
    command = f"scripts/login --name {name}"
    if data_dir is not None and Path(data_dir).expanduser() != Path(DEFAULT_DATA_DIR).expanduser():
        command += f" --data-dir {data_dir}"
    if issuer.rstrip("/") != DEFAULT_ISSUER:
        command += f" --issuer {issuer}"
    return f"run `{command}`"


def load(data_dir: str | Path, name: str, issuer: str = DEFAULT_ISSUER) -> Tokens | None:
    """The stored tokens, or None when the account has none; AuthError when the file is
    unreadable (its hint signs in again at `issuer`)."""
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
        return Tokens(access, refresh, as_text(data.get("id_token")), as_text(data.get("account_id")),
                      _number(data.get("expires_at")) or 0.0)
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise AuthError(f"ChatGPT account {name!r}: {path} is not a readable token file; "
                        f"{signin_hint(name, data_dir, issuer)}") from None


def save(data_dir: str | Path, name: str, tokens: Tokens, issuer: str = DEFAULT_ISSUER) -> None:
    """Store the tokens atomically, readable by the owner only; an issuer other than OpenAI's
    is written beside them, so that `scripts/logout` revokes them where they came from."""
    path = token_path(data_dir, name)
    folder = _accounts_dir(path)
    body = orjson.dumps({
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "id_token": tokens.id_token,
        "account_id": tokens.account_id,
        "expires_at": int(tokens.expires_at),
        "last_refresh": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        **({"issuer": issuer.rstrip("/")} if issuer.rstrip("/") != DEFAULT_ISSUER else {}),
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


def store(data_dir: str | Path, name: str, tokens: Tokens, issuer: str = DEFAULT_ISSUER) -> None:
    """`save` for a new sign-in: under the account's lock, so that a relay refreshing the old
    sign-in at that moment cannot write its tokens over the new ones."""
    with _held(_lock_path(token_path(data_dir, name))):
        save(data_dir, name, tokens, issuer)


def issuer_of(data_dir: str | Path, name: str) -> str:
    """The issuer the account signed in at, as its token file says (OpenAI's when it says none)."""
    try:
        issuer = orjson.loads(token_path(data_dir, name).read_bytes()).get("issuer")
    except (OSError, AttributeError, orjson.JSONDecodeError):
        return DEFAULT_ISSUER
    return issuer if isinstance(issuer, str) and issuer.startswith(("https://", "http://")) else DEFAULT_ISSUER


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
            raise AuthError(f"ChatGPT account {self.name!r} is not signed in; {self.hint()}") from None
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp or self._cached is None:
            tokens = load(self.data_dir, self.name, self.issuer)
            if tokens is None:
                raise AuthError(f"ChatGPT account {self.name!r} is not signed in; {self.hint()}")
            self._stamp, self._cached = stamp, tokens
        return self._cached

    def hint(self) -> str:
        """The command that signs this account in again."""
        return signin_hint(self.name, self.data_dir, self.issuer)

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
                                f"the sign-in ({failure_text(e)}); try again") from e
        answer = parse_json(raw)
        if 200 <= status < 300:
            try:
                tokens = tokens_from(answer, previous=old)
            except ValueError:
                raise RefreshFailed(f"ChatGPT account {self.name!r}: the issuer's refresh answer "
                                    f"(HTTP {status}) holds no access token; try again") from None
            try:
                save(self.data_dir, self.name, tokens, self.issuer)
            except OSError as e:
                raise RefreshFailed(f"ChatGPT account {self.name!r}: could not save the refreshed sign-in "
                                    f"in {self.path.parent} ({e.strerror})") from None
            return tokens
        reason = dead_reason(status, answer)
        if reason:
            message = (f"ChatGPT account {self.name!r}: the sign-in has expired or was revoked ({reason}); "
                       f"{self.hint()}")
            _DEAD[self._key] = (old.refresh_token, message)
            raise AuthError(message)
        raise RefreshFailed(f"ChatGPT account {self.name!r}: refreshing the sign-in failed "
                            f"(HTTP {status} from {self.issuer}); try again")


def failure_text(e: Exception) -> str:
    """Why a call to the issuer failed, in words: a connection's own error says what went
    wrong (a TLS certificate, a refused connection); other errors are named only, since
    their text could hold what was sent."""
    if isinstance(e, (OSError, UpstreamError)):
        return str(e) or type(e).__name__
    return type(e).__name__


def error_code(answer: Any) -> str:
    """The error code of an issuer answer: `error.code`, `error` as a string, or `code`."""
    if not isinstance(answer, dict):
        return ""
    error = answer.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return error["code"]
    if isinstance(error, str):
        return error
    return as_text(answer.get("code"))


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


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def refusal_text(answer: Any, *hidden: str) -> str:
    """The issuer's own words for a refusal, short, with any secret it echoes cut out."""
    if not isinstance(answer, dict):
        return ""
    error = answer.get("error")
    parts = [error_code(answer)]
    if isinstance(error, dict):
        parts.append(as_text(error.get("message")))
    parts.append(as_text(answer.get("error_description")))
    text = ": ".join(part for part in parts if part)[:300]
    for secret in hidden:
        if secret:
            text = text.replace(secret, "…")
    return f": {text}" if text else ""
