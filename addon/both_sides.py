"""mitmweb's "llmrelay: both sides" view of a translated flow.

The flow itself holds the exchange with the provider (so that `-w` records it and
`--server-replay` can answer it); what the client sent and received is kept in
`flow.metadata[SIDE]`. This view shows the two next to each other: on the Request tab what
the client sent above what went to the provider, on the Response tab what the provider
answered above what the client received.

mitmproxy 12 replaced the content-view API (`contentviews.View`, a callable returning lines)
with the `Contentview` protocol (`prettify` returning text); the view is written once and
offered in the form the running mitmproxy wants.
"""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import contentviews

SIDE = "llmrelay"  # flow.metadata key: the side of the exchange the flow does not show
NAME = "llmrelay: both sides"


def sections(data: bytes, flow: Any, message: Any) -> list[tuple[str, bytes]]:
    """(heading, body) pairs for one message of a flow: its two sides, in the order they happened."""
    side = flow.metadata.get(SIDE, {}) if flow is not None else {}
    if flow is not None and message is flow.request:
        return [("client → relay", side.get("client_request", b"")), ("relay → provider", data)]
    if "provider_response" in side:
        return [("provider → relay", side["provider_response"]), ("relay → client", data)]
    return [("provider → relay", data), ("relay → client", side.get("client_response", b""))]


def lines(parts: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    """(style, text) lines: a heading, then the body, JSON pretty-printed."""
    out: list[tuple[str, str]] = []
    for heading, body in parts:
        out.append(("header", f"── {heading} ──"))
        text = body.decode("utf-8", "replace")
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pass
        out += [("text", line) for line in text.splitlines()]
        out.append(("text", ""))
    return out


def _ours(flow: Any) -> bool:
    return flow is not None and SIDE in getattr(flow, "metadata", {})


def _title(flow: Any) -> str:
    return flow.comment if flow is not None and flow.comment else "llmrelay"


if hasattr(contentviews, "Contentview"):  # mitmproxy 12 and later

    class BothSides:
        """A `contentviews.Contentview`."""

        name = NAME
        syntax_highlight = "none"

        def prettify(self, data: bytes, metadata: Any) -> str:
            flow = metadata.flow
            body = "\n".join(text for _, text in lines(sections(data, flow, metadata.http_message)))
            return f"{_title(flow)}\n\n{body}"

        def render_priority(self, data: bytes, metadata: Any) -> float:
            return 2.0 if _ours(metadata.flow) else -1.0

else:  # mitmproxy 11

    class BothSides(contentviews.View):  # type: ignore[no-redef]
        name = NAME

        def __call__(self, data: bytes, *, flow=None, http_message=None, **unknown) -> Any:
            return _title(flow), ([line] for line in lines(sections(data, flow, http_message)))

        def render_priority(self, data: bytes, *, flow=None, **unknown) -> float:
            return 2.0 if _ours(flow) else 0.0


def register(view: BothSides) -> None:
    """Offer the view to mitmproxy (again, after a script reload)."""
    if not hasattr(contentviews, "Contentview"):  # 11 refuses a second view of the same name
        for old in [v for v in contentviews.views if v.name == view.name]:
            contentviews.remove(old)
    contentviews.add(view)  # 12 replaces one of the same name
