"""scripts/login and scripts/logout end to end, as processes, against the fake issuer.

The browser is httpx following redirects: the authorize address on the fake issuer answers
302 to the script's callback on localhost:1455 (or 1457), as the real sign-in page does once
the user has signed in.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import urllib.parse
from pathlib import Path

import httpx
import orjson
import pytest

from llmrelay import oauth, signin
from mock_issuer import MockIssuer
from test_oauth import assert_no_secret, free_port, seed

ROOT = Path(__file__).resolve().parent.parent
LOGIN, LOGOUT = str(ROOT / "scripts" / "login"), str(ROOT / "scripts" / "logout")
# No display, so no browser is started, and no real Codex CLI sign-in within reach.
ENV = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")}
ENV |= {"no_proxy": "*", "CODEX_HOME": "/nonexistent"}


@pytest.fixture
def issuer():
    with MockIssuer() as server:
        yield server


def start(*args: str, launcher: bool = False) -> subprocess.Popen:
    """A script as a process: through its own launcher (the project's venv), or on this Python."""
    command = list(args) if launcher else [sys.executable, *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env=ENV, cwd=ROOT)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env=ENV, cwd=ROOT, timeout=30)


def authorize_line(proc: subprocess.Popen) -> str:
    """The address the script prints on a line of its own."""
    line = proc.stdout.readline().strip()
    assert line.startswith("http://127.0.0.1:") and "/oauth/authorize?" in line, line
    return line


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err


def browse(url: str) -> httpx.Response:
    return httpx.get(url, follow_redirects=True, trust_env=False, timeout=10)


def test_browser_sign_in(issuer, tmp_path):
    proc = start(LOGIN, "--no-browser", "--issuer", issuer.url, "--data-dir", str(tmp_path), "--name", "work",
                 launcher=True)
    try:
        url = authorize_line(proc)
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        # Another page's answer, with a state that is not ours: refused, and the script waits on.
        forged = browse(f"{query['redirect_uri']}?code=ac_forged&state=not-{query['state']}")
        assert (forged.status_code, forged.text) == (400, "State mismatch")
        page = browse(url)
    finally:
        status, out, err = finish(proc)
    assert status == 0, err
    assert page.status_code == 200 and "Signed in" in page.text
    assert page.url.host == "localhost" and page.url.port in signin.CALLBACK_PORTS
    assert query["redirect_uri"] == f"http://localhost:{page.url.port}/auth/callback"
    assert issuer.authorizations[-1] == query and issuer.exchanges == 1
    assert {k: query[k] for k in ("scope", "originator", "id_token_add_organizations", "codex_cli_simplified_flow")} == {
        "scope": "openid profile email offline_access", "originator": "codex_cli_rs",
        "id_token_add_organizations": "true", "codex_cli_simplified_flow": "true"}
    path = tmp_path / "accounts" / "work.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = orjson.loads(path.read_bytes())
    assert stored["account_id"] == issuer.account_id and issuer.is_live(stored["access_token"])
    assert stored["expires_at"] == oauth.claims(stored["access_token"])["exp"]
    assert "user@example.com" in out and issuer.account_id in out
    assert_no_secret(out + err + page.text, issuer)


def test_a_taken_port_moves_the_sign_in_to_1457(issuer, tmp_path):
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past connections' TIME_WAIT
    try:
        blocker.bind(("127.0.0.1", 1455))
        blocker.listen()
    except OSError:
        pass  # another program listens there already, which is what this test wants
    try:
        proc = start(LOGIN, "--no-browser", "--issuer", issuer.url, "--data-dir", str(tmp_path))
        try:
            url = authorize_line(proc)
            page = browse(url)
        finally:
            status, _, err = finish(proc)
    finally:
        blocker.close()
    assert status == 0, err
    assert "redirect_uri=http%3A%2F%2Flocalhost%3A1457%2Fauth%2Fcallback" in url
    assert page.status_code == 200 and page.url.port == 1457
    assert oauth.load(tmp_path, "chatgpt").account_id == issuer.account_id  # the default name


def test_a_refused_sign_in_fails_cleanly(issuer, tmp_path):
    issuer.deny = "access_denied"
    # No --no-browser, but no display either: the address is printed rather than handed to a
    # text browser that would take the terminal.
    proc = start(LOGIN, "--issuer", issuer.url, "--data-dir", str(tmp_path), "--name", "work")
    try:
        page = browse(authorize_line(proc))
    finally:
        status, _, err = finish(proc)
    assert status == 1 and page.status_code == 400
    assert "Open this address in a browser" in err
    assert "login: the sign-in was refused: access_denied" in err
    assert not (tmp_path / "accounts" / "work.json").exists()


def test_a_sign_in_nobody_finishes_times_out(issuer, tmp_path):
    proc = start(LOGIN, "--no-browser", "--issuer", issuer.url, "--data-dir", str(tmp_path), "--timeout", "0.2")
    status, out, err = finish(proc)
    assert status == 1 and "login: the browser did not come back within 0.2 s" in err
    assert "/oauth/authorize?" in out  # the address was offered


def test_device_sign_in(tmp_path):
    with MockIssuer(device_interval="1", device_pending=1) as issuer:
        proc = start(LOGIN, "--device", "--issuer", issuer.url, "--data-dir", str(tmp_path), "--name", "work")
        status, out, err = finish(proc)
        assert status == 0, err
        assert out.splitlines()[:2] == [f"{issuer.url}/codex/device", issuer.user_codes[0]]
        assert issuer.poll_gaps() and min(issuer.poll_gaps()) >= 0.9  # the interval, given as a string, kept
        assert issuer.exchanges == 1
        assert issuer.is_live(oauth.load(tmp_path, "work").access_token)
        assert_no_secret(out + err, issuer)


def test_import_a_codex_cli_sign_in(issuer, tmp_path):
    answer = issuer.grant()
    codex = tmp_path / "auth.json"
    codex.write_bytes(orjson.dumps({"auth_mode": "chatgpt", "OPENAI_API_KEY": None,
                                    "tokens": {k: answer[k] for k in ("id_token", "access_token", "refresh_token")}
                                    | {"account_id": issuer.account_id},
                                    "last_refresh": "2026-01-01T12:34:56Z"}))
    before = codex.read_bytes()
    result = run(LOGIN, "--import-codex", str(codex), "--data-dir", str(tmp_path / "data"), "--name", "work")
    assert result.returncode == 0, result.stderr
    assert "rotate separately" in result.stderr
    assert oauth.load(tmp_path / "data", "work").refresh_token == answer["refresh_token"]
    assert codex.read_bytes() == before
    assert_no_secret(result.stdout + result.stderr, issuer)
    assert "rotate separately" in " ".join(run(LOGIN, "--help").stdout.split())


def test_login_refuses_a_bad_name(tmp_path):
    result = run(LOGIN, "--name", "../etc", "--data-dir", str(tmp_path), "--no-browser")
    assert result.returncode == 2 and "use only letters, digits" in result.stderr
    assert not (tmp_path / "accounts").exists()


def test_logout_removes_and_revokes(issuer, tmp_path):
    tokens = seed(issuer, tmp_path)
    result = run(LOGOUT, "--name", "work", "--data-dir", str(tmp_path), "--issuer", issuer.url)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "accounts" / "work.json").exists()
    assert tokens.refresh_token in issuer.revoked and not issuer.is_live(tokens.access_token)
    assert_no_secret(result.stdout + result.stderr, issuer)


def test_logout_revokes_at_the_issuer_the_account_signed_in_at(issuer, tmp_path):
    proc = start(LOGIN, "--no-browser", "--issuer", issuer.url, "--data-dir", str(tmp_path), launcher=True)
    try:
        browse(authorize_line(proc))
    finally:
        status, _, err = finish(proc)
    assert status == 0, err
    tokens = oauth.load(tmp_path, "chatgpt")
    result = run(LOGOUT, "--data-dir", str(tmp_path))  # no --issuer, and the default name, as login has
    assert result.returncode == 0, result.stderr
    assert "revoked its sign-in" in result.stdout
    assert tokens.refresh_token in issuer.revoked and not (tmp_path / "accounts" / "chatgpt.json").exists()
    assert_no_secret(result.stdout + result.stderr, issuer)


def test_logout_signs_out_even_when_revoking_fails(issuer, tmp_path):
    seed(issuer, tmp_path)
    result = run(LOGOUT, "--name", "work", "--data-dir", str(tmp_path), "--issuer", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 0
    assert "revoking its sign-in failed" in result.stderr
    assert not (tmp_path / "accounts" / "work.json").exists()
    assert_no_secret(result.stdout + result.stderr, issuer)


def test_logout_of_an_unknown_account_fails(tmp_path):
    result = run(LOGOUT, "--name", "nobody", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "logout: no ChatGPT account 'nobody'" in result.stderr
