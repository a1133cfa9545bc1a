"""Text output for people: aligned tables (Korean counts as two columns), times, consent.

Machine output is ``--json`` (compact JSON, one document per command, on stdout); these
functions are the default. All of them are pure and return text.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: render is imported by every command, keep it light
    from wallet_cli.oid4vp import ConsentSummary


def display_width(text: str) -> int:
    """Terminal columns: East Asian wide and fullwidth characters take two."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
        for c in text
    )


def _pad(text: str, width: int) -> str:
    return text + " " * (width - display_width(text))


def _clean(text: str) -> str:
    """No control characters from remote parties reach the terminal."""
    return "".join(c if c.isprintable() else "?" for c in text)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = [[_clean(h) for h in headers], *[[_clean(c) for c in row] for row in rows]]
    widths = [max(display_width(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(_pad(cell, widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def key_values(pairs: Sequence[tuple[str, str]]) -> str:
    width = max((display_width(k) for k, _ in pairs), default=0)
    return "\n".join(f"{_pad(_clean(k), width)}  {_clean(v)}" for k, v in pairs)


def when(timestamp: int | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def day(timestamp: int | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def consent_text(summary: ConsentSummary, lang: str) -> str:
    ko = lang == "ko"
    lines = [
        ("요청자" if ko else "Who asks") + f": {_clean(summary.verifier)}",
        ("목적" if ko else "Why")
        + f": {_clean(summary.purpose or ('(알 수 없음)' if ko else '(unknown)'))}",
    ]
    if summary.accredited:
        lines.append(
            ("신뢰 레지스트리가 이 요청을 인증함" if ko else "Accredited by the trust registry")
            + (f" (checkpoint {summary.trust_size})" if summary.trust_size is not None else "")
        )
    if summary.response_host:
        lines.append(
            ("응답 주소" if ko else "Answer goes to") + f": {_clean(summary.response_host)}"
        )
    for item in summary.items:
        lines.append("")
        lines.append(f"{_clean(item.type_name)} — {_clean(item.issuer)}  [{item.credential_id}]")
        if not item.claims:
            lines.append(
                "  " + ("(선택 공개 항목 없음)" if ko else "(no selectively disclosed claims)")
            )
        rows = [(claim.name, claim.value) for claim in item.claims]
        width = max((display_width(name) for name, _ in rows), default=0)
        lines.extend(f"  {_pad(_clean(name), width)}  {_clean(value)}" for name, value in rows)
    return "\n".join(lines)
