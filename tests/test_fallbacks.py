"""Fallback chains through a real mitmdump: a route's next provider answers when the first
fails before its answer began, never after; a provider that keeps failing is skipped for a
while. Each case has a first provider of its own (cool-downs are per provider)."""

from __future__ import annotations

import json

import anthropic
import pytest

from conftest import CLIENT_KEY, FAILURE_SIGNS, PROVIDER_KEY
from faulty_upstream import Fault, FaultyUpstream, chat_events
from llmrelay import usage
from mock_anthropic import MockAnthropic
from relay_process import Relay, free_port

HELLO = [{"role": "user", "content": "Hello"}]
CASES = ("limited", "broken", "silent", "cut", "cooling")


@pytest.fixture(scope="module")
def faulty():
    with FaultyUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def backup():
    with MockAnthropic(api_key=PROVIDER_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def relay(faulty, backup, mock, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fallbacks")
    config = workdir / "config.yaml"
    first = "".join(f"  {name}: {{type: openai, base_url: {faulty.base_url}, api_key: {PROVIDER_KEY}, "
                    "timeouts: {connect: 2, first_byte: 1, idle: 1}}\n" for name in CASES)
    routes = "".join(f"    claude-{name}: {{provider: {name}, model: m, fallbacks: [{{provider: backup, model: claude-sonnet-4-5}}]}}\n"
                     for name in CASES)
    config.write_text(f"""
providers:
{first}  down: {{type: openai, base_url: http://127.0.0.1:{free_port()}/v1, api_key: {PROVIDER_KEY}}}
  backup: {{type: anthropic, base_url: {backup.base_url.removesuffix('/v1')}, api_key: {PROVIDER_KEY}}}
  chat: {{type: openai, base_url: {mock.base_url}, api_key: {PROVIDER_KEY}}}
models:
  default: {{provider: down, model: m, fallbacks: [{{provider: chat, model: gpt-4.1}}]}}
  routes:
{routes}relay:
  cool_down: 60
""")
    with Relay(config, workdir) as process:
        yield process
    for sign in FAILURE_SIGNS:
        assert sign not in process.output(), process.output()


@pytest.fixture
def client(relay) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0, timeout=30)


def seen(relay, model: str) -> int:
    """How many usage records the shared relay has written so far for requests naming `model`
    (another test's last record may still be on its way)."""
    return sum(record["client_model"] == model for record in usage.read(relay.data))


def answered(record: dict) -> bool:
    return record["status"] == 200


def last_record(relay, model: str, before: int) -> dict:
    """The newest usage record for `model` once there is one more than `before` (a record is
    written after the client has its answer)."""
    return relay.records(before + 1, where=lambda record: record["client_model"] == model)[-1]


@pytest.fixture(autouse=True)
def fresh(faulty, backup):
    backup.set_script([{"text": "From the fallback."}])
    backup.requests.clear()
    yield


FAULTS = {
    "limited": Fault("status", status=429, headers={"retry-after": "1"}, body=b'{"error": {"message": "slow down", "type": "rate_limit_error"}}'),
    "broken": Fault("status", status=503, body=b'{"error": {"message": "down for maintenance"}}'),
    "silent": Fault("silent", wait=3.0),
}


@pytest.mark.parametrize("name", FAULTS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_failure_before_the_answer_goes_to_the_next_provider(client, relay, faulty, name, stream) -> None:
    faulty.set_script([FAULTS[name]])
    before = seen(relay, f"claude-{name}")
    if stream:
        with client.messages.stream(model=f"claude-{name}", max_tokens=50, messages=HELLO) as answer:
            message = answer.get_final_message()
    else:
        message = client.messages.create(model=f"claude-{name}", max_tokens=50, messages=HELLO)
    assert message.content[0].text == "From the fallback."
    record = last_record(relay, f"claude-{name}", before)
    assert record["provider"] == "backup" and record["status"] == 200
    assert record["failed"] and record["failed"][0].startswith(name), record


def test_an_unreachable_provider_falls_back_to_another_protocol(client, relay, provider) -> None:
    provider.set_script([{"text": "From the Chat fallback."}])
    before = seen(relay, "claude-anything")
    message = client.messages.create(model="claude-anything", max_tokens=50, messages=HELLO)
    assert message.content[0].text == "From the Chat fallback."
    assert provider.requests[-1].body["model"] == "gpt-4.1"
    assert "after down: " in usage.summary(last_record(relay, "claude-anything", before))


def test_reasoning_from_a_responses_provider_does_not_stop_a_chat_fallback(client, relay, provider) -> None:
    # Earlier turns came from a ChatGPT or Responses provider: their thinking blocks carry its
    # encrypted reasoning, which a Chat provider can neither read nor be sent.
    provider.set_script([{"text": "Carried on."}])
    secret = "gAAAAB-fake-encrypted-reasoning-for-tests"
    turns = [*HELLO,
             {"role": "assistant", "content": [{"type": "thinking", "thinking": "Greet back.", "signature": f"llmrelay.reasoning.0123456789ab.{secret}"},
                                               {"type": "text", "text": "Hi!"}]},
             {"role": "user", "content": "And now?"}]
    message = client.messages.create(model="claude-anything", max_tokens=50, messages=turns)
    assert message.content[0].text == "Carried on."
    sent = provider.requests[-1].body["messages"]
    assert sent[1] == {"role": "assistant", "content": "Hi!"}
    assert secret not in json.dumps(sent)


def test_a_failure_after_the_first_byte_does_not_fall_back(client, relay, faulty, backup) -> None:
    faulty.set_script([Fault("cut_chunked", events=chat_events("Half of an", finish=None, done=False)[:2])])
    with pytest.raises(anthropic.APIStatusError):
        with client.messages.stream(model="claude-cut", max_tokens=50, messages=HELLO) as answer:
            list(answer)
    assert backup.requests == []


def test_a_provider_that_failed_is_skipped_while_it_cools_down(client, relay, faulty, backup) -> None:
    faulty.set_script([FAULTS["broken"]])
    client.messages.create(model="claude-cooling", max_tokens=50, messages=HELLO)
    assert len(faulty.requests) == 1
    faulty.set_script([Fault("ok", events=chat_events("the first again"))])  # (and its request log emptied)
    before = seen(relay, "claude-cooling")
    message = client.messages.create(model="claude-cooling", max_tokens=50, messages=HELLO)
    assert message.content[0].text == "From the fallback." and faulty.requests == []
    assert "skipped, failing lately" in last_record(relay, "claude-cooling", before)["failed"][0]


def test_a_key_pool_rotates_on_429_and_keeps_the_keys_out_of_sight(faulty, tmp_path) -> None:
    keys = ["fake-pool-key-first-for-tests", "fake-pool-key-second-for-tests"]
    config = tmp_path / "config.yaml"
    config.write_text(f"""
providers:
  pooled: {{type: openai, base_url: {faulty.base_url}, api_key: {keys[0]}, api_keys: [{keys[1]}]}}
models:
  default: {{provider: pooled, model: m}}
""")

    def by_key(seen) -> Fault:
        if seen.headers.get("authorization") == f"Bearer {keys[0]}":
            return Fault("status", status=429, headers={"retry-after": "30"}, body=b'{"error": {"message": "quota"}}')
        return Fault("ok", events=chat_events("from the second key"))

    faulty.set_script([by_key])
    with Relay(config, tmp_path) as relay:
        client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0, timeout=30)
        for _ in range(3):  # whichever key comes first in turn, the answer comes from the second
            assert client.messages.create(model="claude-x", max_tokens=20, messages=HELLO).content[0].text == "from the second key"
        sent = [r.headers["authorization"] for r in faulty.requests if r.method == "POST"]  # (not the start-up check)
        assert sent.count(f"Bearer {keys[0]}") == 1  # once refused, the first key cools down
        record = relay.records(3)[-1]
        output = relay.output()
    assert not any(key in output or key in json.dumps(record) for key in keys)


def test_a_route_that_spent_its_daily_budget_is_refused_until_the_day_ends(provider, tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"""
providers:
  mock: {{type: openai, base_url: {provider.base_url}, api_key: {PROVIDER_KEY}}}
models:
  default: {{provider: mock, model: m, budget: {{tokens_per_day: 20}}}}
  routes:
    priced: {{provider: mock, model: priced-model, budget: {{usd_per_day: 0.01}}}}
prices:
  priced-model: {{input: 2000.0, output: 2000.0}}
""")
    provider.set_script([{"text": "Spent.", "usage": {"prompt_tokens": 15, "completion_tokens": 10, "total_tokens": 25}}])
    with Relay(config, tmp_path) as relay:
        client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0, timeout=30)
        assert client.messages.create(model="claude-x", max_tokens=20, messages=HELLO).content[0].text == "Spent."
        relay.records(1, where=answered)  # what was spent is counted once its record is written
        with pytest.raises(anthropic.RateLimitError) as raised:
            client.messages.create(model="claude-x", max_tokens=20, messages=HELLO)
        assert "25 of its 20 tokens a day" in raised.value.body["error"]["message"]
        assert int(raised.value.response.headers["retry-after"]) <= 86400
        client.messages.create(model="priced", max_tokens=20, messages=HELLO)  # $0.05 at these prices
        relay.records(2, where=answered)
        with pytest.raises(anthropic.RateLimitError) as raised:
            client.messages.create(model="priced", max_tokens=20, messages=HELLO)
        assert "$0.05 of its $0.01 a day" in raised.value.body["error"]["message"]
    # A new relay the same day reads what was spent from the usage records.
    with Relay(config, tmp_path) as relay:
        client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0, timeout=30)
        with pytest.raises(anthropic.RateLimitError):
            client.messages.create(model="claude-x", max_tokens=20, messages=HELLO)


def test_claude_code_finishes_a_bash_task_through_a_fallback(provider, tmp_path) -> None:
    import claude_code

    provider.set_script([
        {"text": "Writing it.", "tool_calls": [{"id": "call_f1", "name": "Bash", "arguments": {"command": "echo relayed > proof.txt", "description": "Write"}}]},
        {"text": "Done: the file is written."},
    ])
    config = tmp_path / "config.yaml"
    config.write_text(f"""
providers:
  gone: {{type: openai, base_url: http://127.0.0.1:{free_port()}/v1, api_key: {PROVIDER_KEY}}}
  mock: {{type: openai, base_url: {provider.base_url}, api_key: {PROVIDER_KEY}}}
models:
  default: {{provider: gone, model: m, fallbacks: [{{provider: mock, model: gpt-4.1}}]}}
""")
    work = tmp_path / "work"
    work.mkdir()
    with Relay(config, tmp_path) as relay:
        result = claude_code.run("Write the word relayed to proof.txt.", relay.url, cwd=work, extra_env=claude_code.NO_RETRY_ENV, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (work / "proof.txt").read_text().strip() == "relayed" and "Done: the file is written." in result.stdout
