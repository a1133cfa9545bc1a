"""civic.sigcheck: signature checks in child processes, answered in order, failing safe."""

from __future__ import annotations

from civic.jose import PrivateKey, PublicKey
from civic.sigcheck import Check, Checkers, decode_checks, encode_checks, verify_checks


def _checks() -> tuple[list[Check], bytes]:
    eddsa = PrivateKey.from_ed25519_seed(bytes(range(32)))
    es256 = PrivateKey.generate("ES256")
    checks: list[Check] = []
    expected = bytearray()
    for number in range(40):
        key = eddsa if number % 2 else es256
        message = f"entry {number}".encode()
        signature = key.sign(message)
        raw, alg = key.public_key.raw, key.public_key.alg
        kind = number % 5
        if kind == 0:  # a signature over other bytes
            checks.append((alg, raw, alg, message + b"!", signature))
        elif kind == 1:  # the header names another algorithm than the key's
            checks.append((alg, raw, "ES256" if alg == "EdDSA" else "EdDSA", message, signature))
        else:
            checks.append((alg, raw, alg, message, signature))
        expected.append(int(kind > 1))
    return checks, bytes(expected)


def test_verify_checks_answers_each_check() -> None:
    checks, expected = _checks()
    keys: dict[tuple[str, bytes], PublicKey] = {}
    assert verify_checks(checks, keys) == expected
    assert len(keys) == 2  # each key built once


def test_children_answer_pipelined_batches_in_order() -> None:
    checks, expected = _checks()
    with Checkers(2) as checkers:
        # Three batches in flight before the first answer is read.
        pending = [checkers.submit(checks[i : i + 15]) for i in range(0, 40, 15)]
        answers = [outcomes() for outcomes in pending]
        assert not checkers.broken
    assert b"".join(answer or b"?" for answer in answers) == expected


def test_a_dead_child_gives_no_answer_and_breaks_the_pool() -> None:
    checks, _ = _checks()
    with Checkers(1) as checkers:
        first = checkers.submit(checks[:10])
        assert first() is not None
        for child in checkers._children:
            child.kill()
            child.wait()
        assert checkers.submit(checks[10:20])() is None
        assert checkers.broken
        # Once broken, nothing more is sent: the caller checks the rest itself.
        assert checkers.submit(checks[20:])() is None


def test_closing_ends_every_child() -> None:
    checkers = Checkers(2)
    checkers.submit(_checks()[0])
    checkers.close(abandon=True)
    assert all(child.returncode is not None for child in checkers._children)
    with Checkers(1) as idle:
        pass
    assert all(child.returncode == 0 for child in idle._children)


def test_the_wire_format_round_trips() -> None:
    checks, _ = _checks()
    checks.append(("EdDSA", bytes(32), "HS256", b"", bytes(64)))  # a foreign header alg
    decoded = decode_checks(encode_checks(checks))
    assert decoded[:-1] == checks[:-1]
    assert decoded[-1] == ("EdDSA", bytes(32), "", b"", bytes(64))
    assert verify_checks(decoded[-1:], {}) == b"\x00"
