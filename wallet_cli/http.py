"""HTTP for the wallet: loopback-or-https URLs, bounded answers, errors with reason codes.

Services are reached over https only; plain http is accepted for loopback hosts (local runs
and tests), as the registry accepts it for issuer URLs (docs/registry.md). Redirects are not
followed: an issuer or verifier endpoint that moves is refused rather than silently chased.
Answers are read as streams and cut off at a size cap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from civic.encoding import json_loads
from civic.errors import MalformedError, ReasonCode, VerificationError

MAX_ANSWER_BYTES: Final = 1 << 20
TIMEOUT: Final = 15.0
_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})
USER_AGENT: Final = "civic-wallet/0.1"


def check_service_url(url: object, what: str) -> str:
    """An absolute https URL (http only on loopback), without user info or fragment."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise MalformedError(ReasonCode.MALFORMED_INPUT, f"{what} is not a URL")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise MalformedError(ReasonCode.MALFORMED_INPUT, f"{what} is not a valid URL") from None
    if parts.username or parts.password or parts.fragment or not host:
        raise MalformedError(ReasonCode.MALFORMED_INPUT, f"{what} is not an acceptable URL")
    loopback = host in _LOOPBACK or host.startswith("127.")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise MalformedError(
            ReasonCode.MALFORMED_INPUT, f"{what} must use https (http only on this machine)"
        )
    return url


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self, what: str) -> Any:
        try:
            return json_loads(self.body)
        except MalformedError as error:
            raise MalformedError(error.reason, f"{what}: answer is not JSON") from None

    def json_object(self, what: str) -> dict[str, Any]:
        value = self.json(what)
        if not isinstance(value, dict):
            raise MalformedError(ReasonCode.MALFORMED_JSON, f"{what}: answer is not an object")
        return value


class Http:
    """One httpx client for a command; use as a context manager."""

    def __init__(self, *, timeout: float = TIMEOUT, client: httpx.Client | None = None) -> None:
        self._client = client or httpx.Client(
            timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> Answer:
        check_service_url(url, what)
        try:
            with self._client.stream(
                method, url, headers=dict(headers or {}), data=data, json=json_body
            ) as response:
                chunks: list[bytes] = []
                total = 0
                for chunk in response.iter_bytes():
                    total += len(chunk)
                    if total > MAX_ANSWER_BYTES:
                        raise VerificationError(
                            ReasonCode.INPUT_TOO_LARGE, f"{what}: answer over the size cap"
                        )
                    chunks.append(chunk)
                content_type = response.headers.get("content-type", "")
                return Answer(response.status_code, content_type, b"".join(chunks))
        except httpx.HTTPError as error:
            raise VerificationError(
                ReasonCode.SERVICE_UNAVAILABLE, f"{what}: {type(error).__name__}"
            ) from None


def error_summary(answer: Answer) -> str:
    """``HTTP 400 invalid_grant: <description>`` from an OAuth or civic error body.

    Only printable ASCII of bounded length is kept: the text comes from a remote party.
    """
    text = f"HTTP {answer.status}"
    try:
        body = json_loads(answer.body)
    except MalformedError:
        return text
    if isinstance(body, dict):
        code = body.get("error")
        description = body.get("error_description", body.get("detail"))
        if isinstance(code, str):
            text += " " + _printable(code, 64)
        if isinstance(description, str):
            text += ": " + _printable(description, 200)
    return text


def _printable(text: str, limit: int) -> str:
    return "".join(c for c in text[:limit] if 0x20 <= ord(c) < 0x7F)
