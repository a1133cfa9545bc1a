"""Configuration the services share: one settings error, secret files, hashed tokens.

Secret files (signing keys, API keys) are created 0600 from the first byte and refused when
group or others can read them, as OpenSSH refuses a readable private key. Staff tokens are kept
as SHA-256 digests and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from civic.errors import ReasonCode, UsageError


class SettingsError(UsageError):
    """A service cannot start with this configuration."""

    def __init__(self, detail: str) -> None:
        super().__init__(ReasonCode.MALFORMED_INPUT, detail)


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise SettingsError(f"{what} file {path} is missing or unreadable") from None


def read_private_file(path: Path, what: str, *, missing_hint: str = "") -> str:
    """Read a secret file, refusing one that is missing or accessible by group or others.

    ``missing_hint`` tells the operator how the file is made, e.g. ``run `civic-issuer init```.
    """
    try:
        info = path.stat()
    except OSError:
        hint = f" ({missing_hint})" if missing_hint else ""
        raise SettingsError(f"{what} file {path} is missing{hint}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SettingsError(f"{what} file {path} is not a regular file")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SettingsError(
            f"{what} file {path} must not be accessible by group or others (chmod 600)"
        )
    return read_text(path, what)


def write_private_file(path: Path, content: str | bytes) -> None:
    """Create ``path`` with mode 0600 from the start (no window where others could read it),
    never overwriting an existing file, and on disk before this returns."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def token_sha256_hex(token: str) -> str:
    """The digest a service stores instead of a staff token or API key."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(presented: str, expected_sha256: bytes) -> bool:
    """Constant-time comparison of a presented token with the stored digest."""
    digest = hashlib.sha256(presented.encode("utf-8")).digest()
    return hmac.compare_digest(digest, expected_sha256)


def load_token_digest(text: str, what: str, well_known: Sequence[str]) -> bytes:
    """Parse a stored SHA-256 token digest (64 hex digits), refusing the digest of a token that
    ships in examples and docs: a service configured with one of them does not start."""
    try:
        digest = bytes.fromhex(text.strip().lower())
    except ValueError:
        digest = b""
    if len(digest) != hashlib.sha256().digest_size:
        raise SettingsError(f"the {what} hash must be 64 hex digits")
    if any(token_matches(weak, digest) for weak in well_known):
        raise SettingsError(f"the {what} is a well-known default; run init again")
    return digest
