"""The ChatGPT sign-in and its tokens (llmrelay.oauth) against the fake issuer."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import httpx
import orjson
import pytest

from llmrelay import oauth, signin
from mock_issuer import CLIENT_ID, MockIssuer, httpx_post, jwt

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def issuer():
    with MockIssuer() as server:
        yield server


def seed(issuer: MockIssuer, data_dir: Path, name: str = "work", ttl: float | None = None) -> oauth.Tokens:
    """A stored sign-in, its access token living `ttl` seconds (the issuer's default if None)."""
    kept = issuer.access_ttl
    if ttl is not None:
        issuer.access_ttl = ttl
    try:
        tokens = oauth.tokens_from(issuer.grant())
    finally:
        issuer.access_ttl = kept
    oauth.save(data_dir, name, tokens)
    return tokens


def account(issuer: MockIssuer, data_dir: Path, name: str = "work", **options) -> oauth.Account:
    return oauth.Account(name, data_dir, issuer=issuer.url, post=httpx_post, **options)


def token_requests(issuer: MockIssuer) -> list[tuple[str, str, dict, bytes]]:
    return [r for r in issuer.requests if r[1] == "/oauth/token"]


def assert_no_secret(text: str, issuer: MockIssuer) -> None:
    leaked = [secret for secret in issuer.issued if secret in text]
    assert not leaked, "a token or code was shown"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------ tokens


def test_claims_reads_a_jwt_payload_without_checking_it():
    token = jwt({"exp": 1767225600, "sub": "u-1", "x": "é" * 5})  # lengths that need padding back
    assert oauth.claims(token) == {"exp": 1767225600, "sub": "u-1", "x": "é" * 5}
    for bad in ("", "abc", "a.b", "a.b.c.d", "a.!!!.c", f"a.{signin._b64(b'[1, 2]')}.c", f"a.{signin._b64(b'nope')}.c", None):
        assert oauth.claims(bad) == {}


@pytest.mark.parametrize("name", ["../x", "a/b", "", "a b", "x\n", "~root", "a\\b"])
def test_account_names_cannot_leave_the_accounts_folder(tmp_path, name):
    with pytest.raises(ValueError, match="use only letters"):
        oauth.token_path(tmp_path, name)
    with pytest.raises(ValueError):
        oauth.Account(name, tmp_path, post=httpx_post)


def test_tokens_are_saved_whole_and_private(issuer, tmp_path):
    data_dir = tmp_path / "data"
    tokens = seed(issuer, data_dir)
    path = oauth.token_path(data_dir, "work")
    assert path == data_dir / "accounts" / "work.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["work.json"]  # no temp file left
    stored = orjson.loads(path.read_bytes())
    assert set(stored) == {"access_token", "refresh_token", "id_token", "account_id", "expires_at", "last_refresh"}
    assert stored["account_id"] == issuer.account_id
    assert stored["expires_at"] == oauth.claims(tokens.access_token)["exp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stored["last_refresh"])
    assert oauth.load(data_dir, "work") == tokens
    assert oauth.load(data_dir, "other") is None
    assert tokens.access_token not in repr(tokens) and tokens.refresh_token not in repr(tokens)
    assert oauth.profile(tokens) == {"email": "user@example.com", "plan": "plus", "account_id": issuer.account_id}


def test_expiry_without_a_jwt_exp_comes_from_expires_in():
    tokens = oauth.tokens_from({"access_token": "opaque", "refresh_token": "r", "expires_in": 100}, now=1000.0)
    assert tokens.expires_at == 1100.0
    with pytest.raises(ValueError):
        oauth.tokens_from({"refresh_token": "r"})
    with pytest.raises(ValueError):
        oauth.tokens_from({"access_token": "a"})


def test_an_unreadable_token_file_asks_for_a_new_sign_in(tmp_path):
    path = oauth.token_path(tmp_path, "work")
    path.parent.mkdir(parents=True)
    path.write_text('{"access_token": "secret-access"')
    with pytest.raises(oauth.AuthError, match="scripts/login --name work") as caught:
        oauth.load(tmp_path, "work")
    assert "secret-access" not in str(caught.value)
    with pytest.raises(oauth.AuthError) as caught:  # signed in elsewhere: the hint says where
        oauth.load(tmp_path, "work", "http://127.0.0.1:9999")
    assert str(caught.value).endswith(f"run `scripts/login --name work --data-dir {tmp_path} --issuer http://127.0.0.1:9999`")


def test_no_token_file_means_not_signed_in(tmp_path):
    with pytest.raises(oauth.AuthError) as caught:
        asyncio.run(oauth.Account("work", tmp_path, post=httpx_post).tokens())
    assert str(caught.value) == (f"ChatGPT account 'work' is not signed in; "
                                 f"run `scripts/login --name work --data-dir {tmp_path}`")
    default = oauth.Account("work", "~/.llmrelay", post=httpx_post)
    assert default.hint() == "run `scripts/login --name work`"


# ----------------------------------------------------------------------------- refresh


def test_fresh_tokens_are_used_as_they_are(issuer, tmp_path):
    tokens = seed(issuer, tmp_path)
    got = asyncio.run(account(issuer, tmp_path).tokens())
    assert got == tokens
    assert issuer.refreshes == 0 and token_requests(issuer) == []


def test_tokens_about_to_expire_are_refreshed_first(issuer, tmp_path):
    old = seed(issuer, tmp_path, ttl=30)  # within the 60 s skew
    new = asyncio.run(account(issuer, tmp_path).tokens())
    assert issuer.refreshes == 1
    assert new.access_token != old.access_token and new.refresh_token != old.refresh_token
    assert issuer.is_live(new.access_token) and new.account_id == issuer.account_id
    assert oauth.load(tmp_path, "work") == new
    assert oauth.issuer_of(tmp_path, "work") == issuer.url  # (for scripts/logout: where to revoke)
    assert stat.S_IMODE(oauth.token_path(tmp_path, "work").stat().st_mode) == 0o600
    _, _, headers, body = token_requests(issuer)[-1]
    assert headers["content-type"] == "application/json"
    assert orjson.loads(body) == {"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": old.refresh_token}
    assert asyncio.run(account(issuer, tmp_path).tokens()) == new  # now fresh: no second refresh
    assert issuer.refreshes == 1


def test_a_refused_access_token_is_refreshed_once(issuer, tmp_path):
    old = seed(issuer, tmp_path)
    issuer.expire_all()  # the issuer ended it though its exp says otherwise

    async def scenario():
        acc = account(issuer, tmp_path)
        assert not issuer.is_live((await acc.tokens()).access_token)
        new = await acc.refreshed(old.access_token)
        again = await acc.refreshed(old.access_token)  # a second request refused with the same token
        return new, again

    new, again = asyncio.run(scenario())
    assert issuer.refreshes == 1
    assert issuer.is_live(new.access_token) and again == new


def test_a_refused_token_is_not_refreshed_when_the_file_changed(issuer, tmp_path):
    old = seed(issuer, tmp_path)

    async def scenario():
        acc = account(issuer, tmp_path)
        await acc.tokens()  # read and remembered
        other = seed(issuer, tmp_path)  # another process signed in or refreshed meanwhile
        return other, await acc.refreshed(old.access_token)

    other, got = asyncio.run(scenario())
    assert got == other and issuer.refreshes == 0


def test_concurrent_requests_share_one_refresh(issuer, tmp_path):
    seed(issuer, tmp_path, ttl=30)
    issuer.refresh_delay = 0.2  # all four are waiting while the refresh is out

    async def scenario():
        first, second = account(issuer, tmp_path), account(issuer, tmp_path)
        return await asyncio.gather(first.tokens(), second.tokens(), first.tokens(), second.tokens())

    results = asyncio.run(scenario())
    assert issuer.refreshes == 1 and issuer.reuses == 0
    assert len({t.access_token for t in results}) == 1


TWO_PROCESSES = """
import asyncio, hashlib, sys, time
from llmrelay import oauth, signin
start, data_dir, issuer = float(sys.argv[1]), sys.argv[2], sys.argv[3]
time.sleep(max(0.0, start - time.time()))
tokens = asyncio.run(oauth.Account("work", data_dir, issuer=issuer, post=signin.stdlib_post()).tokens())
print(hashlib.sha256(tokens.access_token.encode()).hexdigest())
"""


def test_two_relay_processes_share_one_refresh(issuer, tmp_path):
    seed(issuer, tmp_path, ttl=30)
    issuer.refresh_delay = 0.3  # the second process starts while the first one's refresh is out
    env = {**os.environ, "PYTHONPATH": str(ROOT / "addon"), "no_proxy": "*"}
    start = str(time.time() + 0.5)
    procs = [subprocess.Popen([sys.executable, "-c", TWO_PROCESSES, start, str(tmp_path), issuer.url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [proc.communicate(timeout=30) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outs]
    assert issuer.refreshes == 1 and issuer.reuses == 0
    stored = oauth.load(tmp_path, "work")
    assert {out.strip() for out, _ in outs} == {hashlib.sha256(stored.access_token.encode()).hexdigest()}


def test_a_refresh_outlives_the_request_that_wanted_it(issuer, tmp_path):
    old = seed(issuer, tmp_path, ttl=30)
    issuer.refresh_delay = 0.2

    async def scenario():
        request = asyncio.ensure_future(account(issuer, tmp_path).tokens())
        await asyncio.sleep(0.1)  # the refresh is out
        request.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await request
        await asyncio.sleep(0.3)

    asyncio.run(scenario())
    stored = oauth.load(tmp_path, "work")
    assert issuer.refreshes == 1 and stored.refresh_token != old.refresh_token  # the rotated token was kept
    assert asyncio.run(account(issuer, tmp_path).tokens()) == stored and issuer.refreshes == 1


def test_a_dead_refresh_token_asks_for_a_new_sign_in(issuer, tmp_path):
    old = seed(issuer, tmp_path, name="me", ttl=30)
    # Someone else used the refresh token (a copy of the file elsewhere): it is spent.
    status, _ = asyncio.run(httpx_post(f"{issuer.url}/oauth/token", {"content-type": "application/json"}, orjson.dumps(
        {"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": old.refresh_token})))
    assert status == 200
    acc = account(issuer, tmp_path, name="me")
    with pytest.raises(oauth.AuthError) as caught:
        asyncio.run(acc.tokens())
    message = str(caught.value)
    assert message.startswith("ChatGPT account 'me': the sign-in has expired or was revoked (the refresh token was already used")
    assert "scripts/login --name me" in message
    assert_no_secret(message, issuer)
    assert issuer.reuses == 1
    asked = len(token_requests(issuer))
    with pytest.raises(oauth.AuthError, match="already used"):
        asyncio.run(acc.tokens())  # known dead: the issuer is not asked again
    assert len(token_requests(issuer)) == asked
    seed(issuer, tmp_path, name="me", ttl=30)  # signed in again
    assert issuer.is_live(asyncio.run(acc.tokens()).access_token)


@pytest.mark.parametrize(("status", "answer", "words"), [
    (401, {"error": {"message": "Your refresh token has already been used…", "type": "invalid_request_error",
                     "param": None, "code": "refresh_token_reused"}}, "already used"),
    (400, {"error": "refresh_token_expired"}, "has expired"),
    (403, {"code": "refresh_token_invalidated"}, "was revoked"),
    (400, {"error": "invalid_grant", "error_description": "Invalid refresh token"}, "no longer accepts"),
    (401, None, "HTTP 401"),
    (401, {"error": "invalid_client"}, "HTTP 401"),
])
def test_answers_that_mean_sign_in_again(status, answer, words):
    assert words in oauth.dead_reason(status, answer)


@pytest.mark.parametrize(("status", "answer"), [
    (500, None), (503, {"error": {"message": "overloaded", "code": None}}), (400, {"error": "invalid_request"}),
    (429, {"error": {"code": "rate_limit_exceeded"}}), (502, {"error": "invalid_grant"}),
])
def test_answers_that_may_work_later(status, answer):
    assert oauth.dead_reason(status, answer) is None


def test_a_failing_issuer_is_not_a_dead_sign_in(issuer, tmp_path):
    seed(issuer, tmp_path, ttl=-1)
    issuer.fail_next(503)
    acc = account(issuer, tmp_path)
    with pytest.raises(oauth.RefreshFailed, match="HTTP 503"):
        asyncio.run(acc.tokens())
    assert issuer.is_live(asyncio.run(acc.tokens()).access_token)  # the next try works
    assert issuer.refreshes == 1


def test_an_early_refresh_that_fails_keeps_the_valid_token(issuer, tmp_path):
    tokens = seed(issuer, tmp_path, ttl=30)
    issuer.fail_next(500)
    assert asyncio.run(account(issuer, tmp_path).tokens()) == tokens
    assert issuer.refreshes == 0 and len(token_requests(issuer)) == 1


def test_an_unreachable_or_silent_issuer_is_a_transient_failure(issuer, tmp_path):
    tokens = seed(issuer, tmp_path, ttl=-1)
    down = oauth.Account("work", tmp_path, issuer=f"http://127.0.0.1:{free_port()}", post=httpx_post)
    with pytest.raises(oauth.RefreshFailed, match="could not reach .* \\(ConnectError\\)") as caught:
        asyncio.run(down.tokens())
    assert tokens.refresh_token not in str(caught.value)

    async def silent(url, headers, body):
        await asyncio.sleep(10)

    slow = oauth.Account("work", tmp_path, post=silent, timeout=0.1)
    with pytest.raises(oauth.RefreshFailed, match="TimeoutError"):
        asyncio.run(slow.tokens())
    assert oauth.load(tmp_path, "work") == tokens


def test_a_refresh_answer_may_lack_what_the_sign_in_already_has(tmp_path):
    old = oauth.Tokens(jwt({"exp": 1}), "rt-old", jwt({oauth.AUTH_CLAIM: {"chatgpt_account_id": "acct-1"}}), "acct-1", 1.0)
    oauth.save(tmp_path, "work", old)
    sent = []

    async def post(url, headers, body):
        sent.append((url, orjson.loads(body)))
        return 200, orjson.dumps({"access_token": "opaque-new", "expires_in": 600})

    new = asyncio.run(oauth.Account("work", tmp_path, issuer="https://issuer.test/", post=post).tokens())
    assert sent == [("https://issuer.test/oauth/token", {"client_id": CLIENT_ID, "grant_type": "refresh_token",
                                                         "refresh_token": "rt-old"})]
    assert (new.access_token, new.refresh_token, new.id_token, new.account_id) == ("opaque-new", "rt-old", old.id_token, "acct-1")
    assert time.time() + 590 < new.expires_at < time.time() + 610


def test_a_refresh_answer_without_an_access_token_changes_nothing(tmp_path):
    old = oauth.Tokens("a", "r", "", "acct", 1.0)
    oauth.save(tmp_path, "work", old)

    async def post(url, headers, body):
        return 200, b"<html>maintenance</html>"

    with pytest.raises(oauth.RefreshFailed, match="holds no access token"):
        asyncio.run(oauth.Account("work", tmp_path, post=post).tokens())
    assert oauth.load(tmp_path, "work").refresh_token == "r"


# ----------------------------------------------------------------------------- sign-in


def test_the_authorize_address_is_the_codex_clis():
    url = signin.authorize_url("https://auth.openai.com/", "http://localhost:1455/auth/callback", "c" * 43, "st")
    assert url.startswith("https://auth.openai.com/oauth/authorize?")
    assert "%20" in url and "+" not in url  # spaces in the scope encoded as the Codex CLI does
    query = urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)
    assert query == [("response_type", "code"), ("client_id", CLIENT_ID),
                     ("redirect_uri", "http://localhost:1455/auth/callback"),
                     ("scope", "openid profile email offline_access"), ("code_challenge", "c" * 43),
                     ("code_challenge_method", "S256"), ("id_token_add_organizations", "true"),
                     ("codex_cli_simplified_flow", "true"), ("state", "st"), ("originator", "codex_cli_rs")]
    verifier, challenge = signin.pkce()
    assert re.fullmatch(r"[A-Za-z0-9_-]{86}", verifier) and re.fullmatch(r"[A-Za-z0-9_-]{43}", challenge)
    assert signin._b64(hashlib.sha256(verifier.encode()).digest()) == challenge


async def browser_login(issuer: MockIssuer, data_dir: Path, visits, timeout: float = 5.0):
    """Run `login` on a free port; `visits(redirect_uri, state)` lists the callback queries the
    browser sends, and returns what each got back."""
    shown: asyncio.Future = asyncio.get_running_loop().create_future()
    job = asyncio.ensure_future(signin.login(data_dir, "work", post=httpx_post, issuer=issuer.url, ports=(0,),
                                            show=shown.set_result, timeout=timeout))
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(await shown).query))
    answers = []
    async with httpx.AsyncClient(trust_env=False) as browser:
        for visit in visits(query["redirect_uri"], query["state"]):
            response = await browser.get(visit)
            answers.append((response.status_code, response.text))
    try:
        return await job, answers
    except signin.LoginFailed as e:
        return e, answers


def test_the_callback_waits_for_its_own_state_and_reports_a_refusal(issuer, tmp_path):
    def visits(redirect_uri, state):
        base = redirect_uri.rsplit("/auth/callback", 1)[0]
        return [f"{base}/favicon.ico",
                f"{redirect_uri}?code=stolen&state=other",
                f"{redirect_uri}?error=access_denied&error_description=User%20said%20no&state={state}"]

    outcome, answers = asyncio.run(browser_login(issuer, tmp_path, visits))
    assert answers[0] == (404, "Not Found")
    assert answers[1] == (400, "State mismatch")
    assert answers[2][0] == 400 and "access_denied" in answers[2][1]
    assert isinstance(outcome, signin.LoginFailed) and str(outcome) == "the sign-in was refused: access_denied (User said no)"
    assert issuer.exchanges == 0 and oauth.load(tmp_path, "work") is None


def test_a_workspace_without_codex_is_named(issuer, tmp_path):
    def visits(redirect_uri, state):
        return [f"{redirect_uri}?error=access_denied&error_description=missing_codex_entitlement&state={state}"]

    outcome, _ = asyncio.run(browser_login(issuer, tmp_path, visits))
    assert "Codex is not enabled for this ChatGPT workspace" in str(outcome)


def test_a_callback_without_a_code_fails_the_sign_in(issuer, tmp_path):
    outcome, answers = asyncio.run(browser_login(issuer, tmp_path, lambda uri, state: [f"{uri}?state={state}"]))
    assert answers[0][0] == 400
    assert str(outcome) == "the issuer sent the browser back without an authorization code"


def test_a_refused_code_is_reported_without_it(issuer, tmp_path):
    outcome, answers = asyncio.run(browser_login(issuer, tmp_path, lambda uri, state: [f"{uri}?code=ac_forged&state={state}"]))
    assert str(outcome) == "the issuer refused the authorization code (HTTP 400: invalid_grant: Invalid authorization code.)"
    assert answers[0][0] == 400 and "ac_forged" not in answers[0][1]
    assert oauth.load(tmp_path, "work") is None


def test_a_sign_in_nobody_finishes_times_out(issuer, tmp_path):
    started = time.monotonic()
    outcome, _ = asyncio.run(browser_login(issuer, tmp_path, lambda uri, state: [], timeout=0.1))
    assert str(outcome) == "the browser did not come back within 0.1 s"
    assert time.monotonic() - started < 3


def test_device_sign_in_with_a_numeric_interval(tmp_path):
    with MockIssuer(device_interval=5, device_pending=0) as issuer:
        shown = []
        tokens = asyncio.run(signin.device_login(tmp_path, "work", post=httpx_post, issuer=issuer.url,
                                                show=lambda url, code: shown.append((url, code))))
        assert shown == [(f"{issuer.url}/codex/device", issuer.user_codes[0])]
        assert issuer.exchanges == 1 and issuer.is_live(tokens.access_token)
        assert oauth.load(tmp_path, "work") == tokens
        exchange = [r for r in token_requests(issuer)][-1]
        assert exchange[2]["content-type"] == "application/x-www-form-urlencoded"
        assert dict(urllib.parse.parse_qsl(exchange[3].decode()))["redirect_uri"] == f"{issuer.url}/deviceauth/callback"


def test_device_sign_in_off_on_the_issuer(tmp_path):
    async def post(url, headers, body):
        return 404, b'{"detail": "Not Found"}'

    with pytest.raises(signin.LoginFailed, match="device-code sign-in is not enabled"):
        asyncio.run(signin.device_login(tmp_path, "work", post=post, show=lambda url, code: None))


def test_a_codex_cli_sign_in_can_be_imported_and_is_left_alone(issuer, tmp_path):
    answer = issuer.grant()
    codex = tmp_path / "codex" / "auth.json"
    codex.parent.mkdir()
    codex.write_bytes(orjson.dumps({"auth_mode": "chatgpt", "OPENAI_API_KEY": None, "last_refresh": "2026-01-01T12:34:56.789Z",
                                    "tokens": {k: answer[k] for k in ("id_token", "access_token", "refresh_token")}
                                    | {"account_id": issuer.account_id}}, option=orjson.OPT_INDENT_2))
    before = codex.read_bytes()
    tokens = signin.codex_tokens(codex)
    assert (tokens.access_token, tokens.refresh_token, tokens.account_id) == (
        answer["access_token"], answer["refresh_token"], issuer.account_id)
    oauth.save(tmp_path / "data", "work", tokens)
    issuer.expire_all()
    asyncio.run(account(issuer, tmp_path / "data").refreshed(tokens.access_token))
    assert issuer.refreshes == 1 and codex.read_bytes() == before

    codex.write_text('{"OPENAI_API_KEY": "sk-x", "auth_mode": "apikey"}')
    with pytest.raises(signin.LoginFailed, match="holds no ChatGPT sign-in \\(auth_mode 'apikey'\\)"):
        signin.codex_tokens(codex)
    with pytest.raises(signin.LoginFailed, match="does not exist"):
        signin.codex_tokens(tmp_path / "missing.json")


def test_revoking_ends_the_sign_in(issuer, tmp_path):
    tokens = seed(issuer, tmp_path, ttl=30)
    asyncio.run(signin.revoke(tokens.refresh_token, issuer=issuer.url, post=httpx_post))
    _, path, headers, body = issuer.requests[-1]
    assert path == "/oauth/revoke" and headers["content-type"] == "application/json"
    assert orjson.loads(body) == {"token": tokens.refresh_token, "token_type_hint": "refresh_token", "client_id": CLIENT_ID}
    assert tokens.refresh_token in issuer.revoked and not issuer.is_live(tokens.access_token)
    with pytest.raises(oauth.AuthError, match="was revoked"):
        asyncio.run(account(issuer, tmp_path).tokens())
    with pytest.raises(signin.RevokeFailed, match="could not reach"):
        asyncio.run(signin.revoke("x", issuer=f"http://127.0.0.1:{free_port()}", post=httpx_post))


def test_remove_deletes_the_token_file(issuer, tmp_path):
    seed(issuer, tmp_path)
    assert oauth.remove(tmp_path, "work") is True
    assert oauth.load(tmp_path, "work") is None
    assert oauth.remove(tmp_path, "work") is False


def test_requests_waiting_on_a_refresh_that_fails_all_get_its_failure_at_once(tmp_path):
    # An issuer that hangs: five requests on an expired token must not each wait for a
    # timeout of their own, one after another.
    old = oauth.Tokens(jwt({"exp": 1}), "rt-old", "", "acct-1", 1.0)
    oauth.save(tmp_path, "work", old)
    posts = []

    async def silent(url, headers, body):
        posts.append(url)
        await asyncio.sleep(10)

    async def five() -> list:
        acc = oauth.Account("work", tmp_path, issuer="https://issuer.test", post=silent, timeout=0.3)
        return await asyncio.gather(*(acc.tokens() for _ in range(5)), return_exceptions=True)

    start = time.monotonic()
    results = asyncio.run(five())
    assert all(isinstance(r, oauth.RefreshFailed) for r in results) and len(posts) == 1
    assert time.monotonic() - start < 2
