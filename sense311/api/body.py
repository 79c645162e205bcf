"""Request bodies read as bytes, within a size limit (file uploads, rule files)."""

from __future__ import annotations

from fastapi import Request

from sense311.api.errors import TooLarge

__all__ = ["media_type", "read_body"]


def media_type(request: Request) -> str:
    """The body's media type without parameters, lowercased ('' when none was sent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; ``TooLarge`` once it passes ``limit`` bytes (a declared length is checked first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(
            f"the body is {int(declared)} bytes; at most {limit} are accepted (api.max_upload_bytes)"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is larger than the {limit} bytes accepted (api.max_upload_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)
