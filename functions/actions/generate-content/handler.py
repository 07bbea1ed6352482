"""Generate the content. This sample composes it from a template (deterministic, no external model), so the
workflow runs anywhere; swap in your generator and keep the output shape."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from coafi.runtime import StepEvent, action

_OPENINGS = {
    "article": "This article looks at {topic}.",
    "summary": "In short: {topic}.",
    "announcement": "We are pleased to announce {topic}.",
}
_FILLER = (
    "It explains what {topic} is, why it matters to the people who use it, and what to do next. "
    "Each point is kept short so the text stays readable."
)


@action
def handler(event: StepEvent) -> dict[str, Any]:
    started = datetime.now(UTC)
    content_type = str(event.input.get("contentType", "article"))
    params = event.input.get("parameters", {})
    topic = str(params.get("topic", "")).strip()
    length = int(params.get("lengthWords", 200))
    words = _OPENINGS.get(content_type, _OPENINGS["article"]).format(topic=topic).split()
    filler = _FILLER.format(topic=topic).split()
    while len(words) < length:
        words.extend(filler[: length - len(words)])
    text = " ".join(words)
    ended = datetime.now(UTC)
    return {
        "content": text,
        "checksum": hashlib.sha256(text.encode()).hexdigest(),
        "stats": {
            "startTime": started.isoformat(),
            "endTime": ended.isoformat(),
            "tokensGenerated": len(words),
        },
    }
