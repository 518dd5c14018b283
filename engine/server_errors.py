"""What qdrant-client raised (REST, gRPC or local mode), turned into one readable kret error line.

qdrant-client reports the same problem three ways depending on the transport: ``UnexpectedResponse`` with
the raw body over REST, ``grpc.RpcError`` over gRPC, a plain ``ValueError`` in local mode. A user should see
one sentence naming the server and what went wrong, and a missing collection must be a
``CollectionNotFoundError`` whatever the transport, so callers can tell it from a broken server.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from kret.errors import CollectionNotFoundError, KretError, StoreError

if TYPE_CHECKING:
    from qdrant_client import QdrantClient


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _response_detail(exc: Any) -> str:
    """The server's own error sentence, not the client's multi-line dump of the raw body."""
    try:
        body = json.loads(exc.content)
        status = body.get("status") if isinstance(body, dict) else None
        if isinstance(status, dict) and status.get("error"):
            return str(status["error"])
    except Exception:
        pass
    raw = getattr(exc, "content", b"")
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(exc)


def translate_error(exc: Exception, where: str, missing: str) -> KretError:
    """Turn whatever qdrant-client raised (REST, gRPC or local mode) into one readable kret error.

    ``missing`` is the message for a collection that is not there, phrased by the caller who knows which
    collection and version it asked for.
    """
    if isinstance(exc, KretError):
        return exc
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        code = exc.status_code
        detail = one_line(_response_detail(exc))
        if code == 404:
            return CollectionNotFoundError(missing)
        if code in (401, 403):
            return StoreError(f"Qdrant at {where} refused access ({code}): check KRET_QDRANT_API_KEY")
        return StoreError(f"Qdrant at {where} failed ({code}): {detail}")
    if isinstance(exc, ResponseHandlingException):
        return StoreError(f"cannot reach Qdrant at {where}: {one_line(exc.source)}")
    try:
        import grpc
    except ImportError:  # pragma: no cover - grpcio is a dependency of qdrant-client
        grpc = None
    if grpc is not None and isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        code = exc.code()
        detail = one_line(exc.details() if hasattr(exc, "details") else exc)
        if code == grpc.StatusCode.NOT_FOUND:
            return CollectionNotFoundError(missing)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return StoreError(f"cannot reach Qdrant at {where}: {detail}")
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return StoreError(f"Qdrant at {where} refused access: check KRET_QDRANT_API_KEY")
        return StoreError(f"Qdrant at {where} failed ({code.name}): {detail}")
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return StoreError(f"cannot reach Qdrant at {where}: {one_line(exc)}")
    except ImportError:  # pragma: no cover
        pass
    text = one_line(exc)
    # Local mode reports a missing collection as ValueError("Collection ... not found").
    if isinstance(exc, ValueError) and re.search(r"collection .* not found", text, re.IGNORECASE):
        return CollectionNotFoundError(missing)
    return StoreError(f"Qdrant at {where} failed: {text or type(exc).__name__}")


def describe_client(client: QdrantClient) -> str:
    """Where a client points, for error messages (never the API key)."""
    opts = getattr(client, "init_options", None) or {}
    for key in ("url", "location", "path", "host"):
        if opts.get(key):
            return str(opts[key])
    return "the Qdrant server"
