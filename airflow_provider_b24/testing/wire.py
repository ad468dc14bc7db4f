"""Transport-neutral HTTP request/response records and body helpers (JSON, nginx-style HTML)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HTML", "JSON", "HttpRequest", "HttpResponse", "html_page", "json_body"]

HTML = "text/html; charset=UTF-8"
JSON = "application/json; charset=utf-8"


@dataclass
class HttpRequest:
    """A parsed HTTP request (header names lower-case)."""

    verb: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    secure: bool
    host: str = ""


@dataclass
class HttpResponse:
    """What to send back; ``delay`` seconds first; ``reset_after`` bytes of body, then a TCP reset."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)
    delay: float = 0.0
    reset_after: int | None = None


def json_body(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def html_page(status: int, title: str) -> bytes:
    return (
        f"<!DOCTYPE html><html><head><title>{status} {title}</title></head>"
        f"<body><h1>{status} {title}</h1><hr><center>nginx</center></body></html>"
    ).encode()
