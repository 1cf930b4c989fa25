"""`tool_format: xml`: a model without function calling given tools in its system prompt,
its calls read out of its text: through a real mitmdump, with the real Claude Code CLI."""

from __future__ import annotations

import json

import pytest

import claude_code
from conftest import PROVIDER_KEY
from llmrelay.config import OpenAIProvider, Route
from llmrelay.protocols import anthropic as a
from llmrelay.translate.chat_request import to_chat
from mock_openai import MockOpenAI
from relay_process import Relay

BASH = {"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}


def test_the_request_carries_the_tools_in_text_and_the_history_as_text() -> None:
    req = a.parse_request(json.dumps({
        "model": "claude-x", "max_tokens": 100, "system": "Be brief.", "tools": [BASH],
        "messages": [{"role": "user", "content": "List files"},
                     {"role": "assistant", "content": [{"type": "text", "text": "Listing."},
                                                       {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.py"}]}],
    }).encode())
    body, _ = to_chat(req, Route(provider="p", model="m", tool_format="xml"), OpenAIProvider(type="openai", base_url="http://x/v1"), stream=True)
    assert "tools" not in body and "tool_choice" not in body
    system, user, assistant, result = body["messages"]
    assert system["role"] == "system" and system["content"].startswith("Be brief.") and "## Bash" in system["content"]
    assert assistant == {"role": "assistant", "content": 'Listing.\n<tool_call name="Bash">{"command": "ls"}</tool_call>'}
    assert result == {"role": "user", "content": '<tool_result id="toolu_1">\na.py\n</tool_result>'}
    assert all("tool_calls" not in m and m["role"] != "tool" for m in body["messages"])


# What small local models write (real-looking: prose first, a fenced habit, two calls).
OUTPUTS = [
    'I will write the file now.\n\n<tool_call name="Bash">{"command": "echo relayed > proof.txt", "description": "Write proof.txt"}</tool_call>',
    '<tool_call name="Bash">\n{"command": "echo relayed > proof.txt",\n "description": "Write \\"proof\\" <file>"}\n</tool_call>\n',
]


@pytest.mark.parametrize("output", OUTPUTS, ids=["prose-then-call", "call-with-newlines-quotes-and-markup"])
def test_claude_code_finishes_a_bash_task_through_a_model_without_function_calling(tmp_path, output) -> None:
    def turn(body: dict) -> dict:
        assert "tools" not in body, "a model without function calling gets no tools field"
        said = json.dumps([m for m in body["messages"] if m["role"] != "system"])
        if '<tool_result id=' in said:
            return {"text": "Done: the file is written.", "chunks": 3}
        return {"text": output, "chunks": 7}

    with MockOpenAI([turn], api_key=PROVIDER_KEY) as mock:
        config = tmp_path / "config.yaml"
        config.write_text(f"providers:\n  local: {{type: openai, base_url: {mock.base_url}, api_key: {PROVIDER_KEY}, tool_format: xml}}\n"
                          "models:\n  default: {provider: local, model: small-local-model}\n")
        work = tmp_path / "work"
        work.mkdir()
        with Relay(config, tmp_path) as relay:
            result = claude_code.run("Write the word relayed to proof.txt.", relay.url, cwd=work, extra_env=claude_code.NO_RETRY_ENV, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr + relay.output()[-2000:]
        assert (work / "proof.txt").exists(), result.stdout + result.stderr + relay.output()[-3000:]
        assert (work / "proof.txt").read_text().strip() == "relayed"
        assert "Done: the file is written." in result.stdout
        posts = [r for r in mock.requests if r.method == "POST"]
        assert "## Bash" in posts[0].body["messages"][0]["content"]
