"""Answering a CloudFormation custom resource request: the rule files' (``coafi.rules.deploy``) and the workflow
registrar's (``coafi.engine.registrar``)."""

from __future__ import annotations


def put_response(url: str, body: bytes, *, timeout: float = 30.0) -> None:
    """PUT ``body`` (the JSON response) to the request's pre-signed ``ResponseURL``, with an empty content type, as
    that URL is signed for. ``urllib.request`` is imported here, not at module level: it imports ``http.client``,
    ``email`` and ``ssl``, ~50 ms of the functions' cold start (BENCHMARKS.md)."""
    import urllib.request

    request = urllib.request.Request(url, data=body, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        reply.read()
