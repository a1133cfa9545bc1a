"""Signature checks in helper processes, for folding a large log (civic.trust).

Folding a fresh copy of the registry log is two kinds of work: parsing and folding entries
(Python, holding the GIL) and checking their governance signatures (libsodium or OpenSSL).
Threads cannot overlap the two, because a thread coming back from libsodium queues for the GIL
behind the one running Python; processes can. A :class:`Checkers` pool starts plain
``python -m civic.sigcheck`` children rather than :mod:`multiprocessing` workers, which
re-import the parent's ``__main__`` (a script without a ``__name__`` guard would run again in
every child) and, with ``fork``, can copy a lock another thread of a server held.

The wire between parent and child is private to this module: length-prefixed batches of
:data:`Check` records (:func:`encode_checks`) one way, one byte per check (1 valid, 0 not) the
other.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from queue import SimpleQueue
from typing import IO

from civic.jose import PublicKey, ed25519_public_key, p256_public_key

Check = tuple[str, bytes, str, bytes, bytes]
"""``(key alg, raw public key, signature alg, signing input, signature)``."""

_LENGTH_BYTES = 8
_RECORD = struct.Struct(">BBBBI")  # key alg, signature alg, key, signature, message lengths
_ALG_CODES = {"EdDSA": 0, "ES256": 1}
_ALG_NAMES = {code: name for name, code in _ALG_CODES.items()}
_OTHER_ALG = 255  # a signature header's alg that no key has: never verifies


def encode_checks(checks: Sequence[Check]) -> bytes:
    parts = []
    for alg, raw, signature_alg, signing_input, signature in checks:
        parts.append(
            _RECORD.pack(
                _ALG_CODES[alg],
                _ALG_CODES.get(signature_alg, _OTHER_ALG),
                len(raw),
                len(signature),
                len(signing_input),
            )
        )
        parts += (raw, signature, signing_input)
    return b"".join(parts)


def decode_checks(data: bytes) -> list[Check]:
    checks: list[Check] = []
    offset, size = 0, _RECORD.size
    while offset < len(data):
        alg, signature_alg, key_length, signature_length, message_length = _RECORD.unpack_from(
            data, offset
        )
        offset += size
        raw = data[offset : offset + key_length]
        offset += key_length
        signature = data[offset : offset + signature_length]
        offset += signature_length
        signing_input = data[offset : offset + message_length]
        offset += message_length
        checks.append(
            (_ALG_NAMES[alg], raw, _ALG_NAMES.get(signature_alg, ""), signing_input, signature)
        )
    return checks


_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def verify_checks(checks: Sequence[Check], keys: dict[tuple[str, bytes], PublicKey]) -> bytes:
    """One byte per check: 1 when the signature verifies under the key and the algs agree."""
    outcomes = bytearray(len(checks))
    for index, (alg, raw, signature_alg, signing_input, signature) in enumerate(checks):
        key = keys.get((alg, raw))
        if key is None:
            key = ed25519_public_key(raw) if alg == "EdDSA" else p256_public_key(raw)
            keys[(alg, raw)] = key
        if alg == signature_alg and key.verify(signing_input, signature):
            outcomes[index] = 1
    return bytes(outcomes)


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def _serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The child: check batches until the parent closes the pipe.

    A reader thread drains the pipe while this one checks, so a parent sending its next batch
    never blocks on a full pipe while the child is busy.
    """
    batches: SimpleQueue[list[Check] | None] = SimpleQueue()

    def read() -> None:
        while (header := _read_exactly(source, _LENGTH_BYTES)) is not None:
            body = _read_exactly(source, int.from_bytes(header, "big"))
            if body is None:
                break
            batches.put(decode_checks(body))
        batches.put(None)

    threading.Thread(target=read, daemon=True).start()
    keys: dict[tuple[str, bytes], PublicKey] = {}
    while (batch := batches.get()) is not None:
        sink.write(verify_checks(batch, keys))
        sink.flush()


class Checkers:
    """``count`` child processes; :meth:`submit` spreads a batch over them.

    Any failure (a child that cannot start, dies or answers short) makes that batch's result
    ``None`` and the pool broken: the caller checks such batches itself, so a lost child costs
    time, never a wrong answer.
    """

    def __init__(self, count: int) -> None:
        environment = dict(os.environ)
        path = environment.get("PYTHONPATH")
        environment["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + path if path else "")
        self._children: list[subprocess.Popen[bytes]] = []
        self._pending: deque[list[tuple[subprocess.Popen[bytes], int]]] = deque()
        # An embedded interpreter may have no executable to start: check inline then.
        self.broken = not sys.executable
        try:
            for _ in range(0 if self.broken else count):
                self._children.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "civic.sigcheck"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        env=environment,
                    )
                )
        except OSError:
            self.broken = True

    def submit(self, checks: Sequence[Check]) -> Callable[[], bytes | None]:
        """Send ``checks``; the result waits for the outcomes (``None``: check them yourself).

        Results must be taken in the order the batches were submitted.
        """
        if self.broken or not self._children:
            self.broken = True
            return lambda: None
        step = -(-len(checks) // len(self._children)) or 1
        parts: list[tuple[subprocess.Popen[bytes], int]] = []
        try:
            for child, start in zip(self._children, range(0, len(checks), step), strict=False):
                part = checks[start : start + step]
                body = encode_checks(part)
                assert child.stdin is not None
                child.stdin.write(len(body).to_bytes(_LENGTH_BYTES, "big") + body)
                child.stdin.flush()
                parts.append((child, len(part)))
        except OSError:
            self.broken = True
        self._pending.append(parts)
        expected = len(checks)

        def outcomes() -> bytes | None:
            sent = self._pending.popleft()
            answers = []
            for child, count in sent:
                assert child.stdout is not None
                answer = None if self.broken else _read_exactly(child.stdout, count)
                if answer is None:
                    self.broken = True
                    return None
                answers.append(answer)
            result = b"".join(answers)
            return result if len(result) == expected else None

        return outcomes

    def close(self, *, abandon: bool = False) -> None:
        """End the children: closing their input ends them once their batches are done;
        ``abandon`` kills them at once (their pending outcomes are of no use)."""
        for child in self._children:
            if abandon:
                child.kill()
            try:
                assert child.stdin is not None
                child.stdin.close()
            except OSError:
                pass
        for child in self._children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            assert child.stdout is not None
            child.stdout.close()

    def __enter__(self) -> Checkers:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.close(abandon=kind is not None)


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
