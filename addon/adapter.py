"""llmrelay: Claude Code (and any Anthropic client) on any LLM provider, through mitmproxy.

    mitmdump -s addon/adapter.py --mode reverse:http://127.0.0.1:9 \\
        --listen-host 127.0.0.1 -p 8082 --set adapter_config=config.yaml

`/v1/messages` is routed by model name (see config.yaml), rewritten for the provider and its
answer translated back, streams chunk by chunk. The relay answers `/v1/messages/count_tokens`,
`/v1/models` and `/health` itself. Everything else goes to the reverse-mode target.

This file is only mitmproxy glue; the work happens in the `llmrelay` package beside it.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, exceptions, http
from mitmproxy.net.http.status_codes import RESPONSES

from llmrelay import relay
from llmrelay.config import Config, ConfigError, load_config

log = logging.getLogger("llmrelay")


class Adapter:
    def __init__(self) -> None:
        self.config: Config | None = None
        self.exchanges: dict[str, relay.Exchange] = {}

    def load(self, loader) -> None:
        loader.add_option("adapter_config", str, "config.yaml", "Path of the llmrelay configuration file.")

    def configure(self, updated: set[str]) -> None:
        if "adapter_config" in updated:
            try:
                self.config = load_config(ctx.options.adapter_config)
            except ConfigError as e:
                raise exceptions.OptionsError(str(e)) from None
            routes = len(self.config.models.routes)
            log.info(f"llmrelay: {len(self.config.providers)} provider(s), {routes} route(s) from {ctx.options.adapter_config}")

    def request(self, flow: http.HTTPFlow) -> None:
        if self.config is None or flow.response is not None:
            return
        req = flow.request
        outcome = relay.handle(self.config, req.method, req.path, req.raw_content or b"")
        if isinstance(outcome, relay.Reply):
            flow.response = http.Response.make(outcome.status, outcome.body, outcome.headers)
        elif isinstance(outcome, relay.Forward):
            had_host = "host" in req.headers
            req.headers.clear()
            req.headers.update(outcome.headers)
            if had_host:  # HTTP/1 needs it; the URL setter below fills in the provider's host
                req.headers["host"] = ""
            req.content = outcome.body
            req.url = outcome.url
            self.exchanges[flow.id] = outcome.exchange

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        exchange = self.exchanges.get(flow.id)
        response = flow.response
        if exchange is None or response is None:
            return
        if exchange.streams(response.status_code, _lower(response.headers)):
            # Headers can only change here, before the head is sent on.
            response.headers.clear()
            response.headers.update(relay.stream_headers())
            response.stream = exchange.stream()

    def response(self, flow: http.HTTPFlow) -> None:
        exchange = self.exchanges.pop(flow.id, None)
        response = flow.response
        if exchange is None or response is None or response.stream:
            return
        reply = exchange.reply(response.status_code, _lower(response.headers), response.content or b"")
        response.status_code = reply.status
        response.reason = RESPONSES.get(reply.status, "")
        response.headers.clear()
        response.headers.update(reply.headers)
        response.content = reply.body

    def error(self, flow: http.HTTPFlow) -> None:
        self.exchanges.pop(flow.id, None)


def _lower(headers: http.Headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


addons = [Adapter()]
