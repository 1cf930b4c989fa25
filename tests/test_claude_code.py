"""The real Claude Code CLI through a real mitmdump with the addon to the mock provider.

The mock answers the first request with a Bash tool call that writes a file; Claude Code must
run it and send the result back, and the mock then answers with the final text. The mock
rejects what real providers reject, so a translation they would refuse fails here too.
"""

from __future__ import annotations

import pytest

import claude_code

FINAL = "Done: the file is written."


@pytest.mark.parametrize("model", [None, "claude-sonnet-4-5"], ids=["default-model", "sonnet-4-5"])
def test_claude_code_finishes_a_task_that_needs_a_tool(relay, provider, tmp_path, model) -> None:
    provider.set_script(
        [
            {
                "reasoning": "The user wants a file; one Bash call will do.",
                "text": "I'll write the file.",
                "tool_calls": [{"id": "call_bash_1", "name": "Bash", "arguments": {"command": "echo relayed > proof.txt", "description": "Write proof.txt"}}],
                "chunks": 4,
            },
            {"text": FINAL, "chunks": 3},
        ]
    )
    result = claude_code.run("Write the word relayed to proof.txt.", relay.url, cwd=tmp_path, model=model, extra_env=claude_code.NO_RETRY_ENV, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "proof.txt").read_text().strip() == "relayed"
    assert FINAL in result.stdout

    first, second = (r.body for r in provider.requests[:2])
    assert len(provider.requests) == 2, [r.body["messages"][-1] for r in provider.requests]
    expected_model = "gpt-5" if model else "gpt-4.1"
    assert first["model"] == second["model"] == expected_model
    assert first["stream"] is True and {t["function"]["name"] for t in first["tools"]} >= {"Bash", "Write", "Read"}
    if model:
        assert first["reasoning_effort"] == "high"  # Claude Code asks Sonnet for a 31999-token budget
    calls = [m for m in second["messages"] if m.get("tool_calls")]
    assert calls[-1]["tool_calls"][0]["id"] == "call_bash_1"
    answer = second["messages"][second["messages"].index(calls[-1]) + 1]
    assert answer["role"] == "tool" and answer["tool_call_id"] == "call_bash_1"


def test_claude_code_s_own_model_names_route_by_family(provider, tmp_path) -> None:
    # Whatever Claude Code calls its models this release, the family keys take them.
    from conftest import PROVIDER_KEY
    from relay_process import Relay

    config = tmp_path / "config.yaml"
    config.write_text(f"""
providers:
  mock: {{type: openai, base_url: {provider.base_url}, api_key: {PROVIDER_KEY}}}
models:
  default: {{provider: mock, model: not-by-family}}
  routes:
    opus: {{provider: mock, model: for-opus}}
    sonnet: {{provider: mock, model: for-sonnet}}
    haiku: {{provider: mock, model: for-haiku}}
""")
    provider.set_script([{"text": FINAL}])
    with Relay(config, tmp_path) as relay:
        for model, expected in ((None, "for-opus"), ("sonnet", "for-sonnet"), ("haiku", "for-haiku")):
            provider.requests.clear()
            result = claude_code.run("Say done.", relay.url, cwd=tmp_path, model=model, extra_env=claude_code.NO_RETRY_ENV, timeout=120)
            assert result.returncode == 0, result.stdout + result.stderr
            sent = {r.body["model"] for r in provider.requests if r.method == "POST"}
            assert expected in sent, (model, sent)
