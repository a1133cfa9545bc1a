"""Checkpoints (tlog-checkpoint) and witness cosignatures (tlog-cosignature v1)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civic.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    cosignature_message,
    generate_cosignature_key,
    open_checkpoint,
    parse_checkpoint,
    parse_cosignature,
    sign_checkpoint,
    verify_witnessed_checkpoint,
)
from civic.clock import FixedClock
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.note import (
    NoteSigner,
    NoteVerifier,
    generate_note_key,
    open_note,
    parse_unverified_note,
    sign_note,
)
from tests.vectors import load_json

NOW = 1_700_000_000
ORIGIN = "registry.example.city/log"
ROOT = hashlib.sha256(b"root").digest()


def _vectors() -> dict[str, Any]:
    data: dict[str, Any] = load_json("signed_note", "signed_note_vectors.json")
    return data


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


LOG_SIGNER = NoteSigner(ORIGIN, _seed("log"))
LOG_VERIFIER = LOG_SIGNER.verifier()
WITNESS_SIGNERS = [
    CosignatureSigner(f"witness{i}.example", _seed(f"w{i}"), FixedClock(NOW + i)) for i in range(3)
]
WITNESSES = [signer.verifier() for signer in WITNESS_SIGNERS]
CHECKPOINT = Checkpoint(ORIGIN, 42, ROOT)


def _cosigned(*witness_indexes: int, checkpoint: Checkpoint = CHECKPOINT) -> bytes:
    signed = sign_checkpoint(checkpoint, [LOG_SIGNER])
    if not witness_indexes:
        return signed
    opened = open_note(signed, [LOG_VERIFIER])
    return sign_note(opened, [WITNESS_SIGNERS[i] for i in witness_indexes])


# -- checkpoint text ---------------------------------------------------------------------------


def test_c2sp_checkpoint_parses_to_the_published_fields() -> None:
    example = _vectors()["c2sp_tlog_checkpoint"]
    note = parse_unverified_note(example["checkpoint"])
    checkpoint = parse_checkpoint(note.text)
    parsed = example["parsed"]
    assert checkpoint.origin == parsed["origin"]
    assert checkpoint.size == parsed["tree_size"]
    assert checkpoint.root_hash == base64.b64decode(parsed["root_hash_b64"])
    assert list(checkpoint.extensions) == parsed["extension_lines"]
    assert [f"{s.key_id:08x}" for s in note.unverified] == [parsed["log_signature_key_id"]]
    assert checkpoint.to_text() == note.text


def test_transparency_dev_checkpoint_text_round_trips() -> None:
    text = _vectors()["transparency_dev_formats_cosig_v1"]["roundtrip_checkpoint_text"]
    checkpoint = parse_checkpoint(text)
    assert (checkpoint.origin, checkpoint.size) == ("test", 123)
    assert checkpoint.to_text() == text
    assert parse_checkpoint(text.encode()) == checkpoint


def test_extension_lines_are_kept_in_order() -> None:
    checkpoint = Checkpoint(ORIGIN, 0, ROOT, ("ext one", "ext two"))
    assert checkpoint.to_text().endswith("\next one\next two\n")
    assert parse_checkpoint(checkpoint.to_text()) == checkpoint


_ROOT_B64 = base64.b64encode(ROOT).decode()
_ROOT_B64URL = base64.urlsafe_b64encode(bytes([0xFF]) * 32).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\n42\n{_ROOT_B64}",  # no final newline
        f"{ORIGIN}\n42\n",
        f"\n42\n{_ROOT_B64}\n",  # empty origin
        f"{ORIGIN}\n042\n{_ROOT_B64}\n",  # leading zero
        f"{ORIGIN}\n00\n{_ROOT_B64}\n",
        f"{ORIGIN}\n+42\n{_ROOT_B64}\n",
        f"{ORIGIN}\n-1\n{_ROOT_B64}\n",
        f"{ORIGIN}\n 42\n{_ROOT_B64}\n",
        f"{ORIGIN}\n\n{_ROOT_B64}\n",
        f"{ORIGIN}\n4_2\n{_ROOT_B64}\n",
        f"{ORIGIN}\n\u0664\u0662\n{_ROOT_B64}\n",  # Arabic-Indic digits
        f"{ORIGIN}\n{MAX_TREE_SIZE + 1}\n{_ROOT_B64}\n",
        f"{ORIGIN}\n{'9' * 5000}\n{_ROOT_B64}\n",
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT + b'x').decode()}\n",
        f"{ORIGIN}\n42\n{_ROOT_B64URL}\n",
        f"{ORIGIN}\n42\n{_ROOT_B64.rstrip('=')}\n",
        f"{ORIGIN}\n42\n{_ROOT_B64[:-2]}B=\n",  # non-zero unused bits
        f"{ORIGIN}\n42\n{_ROOT_B64}\n\n",  # empty extension line
        f"{ORIGIN}\r\n42\n{_ROOT_B64}\n",
        f"{ORIGIN}\n42\n{_ROOT_B64}\next\x01\n",
    ],
)
def test_malformed_checkpoints_are_rejected(text: str) -> None:
    with pytest.raises(MalformedError) as info:
        parse_checkpoint(text)
    assert info.value.reason is ReasonCode.MALFORMED_CHECKPOINT


def test_tree_size_limits() -> None:
    assert parse_checkpoint(f"{ORIGIN}\n0\n{_ROOT_B64}\n").size == 0
    assert parse_checkpoint(f"{ORIGIN}\n{MAX_TREE_SIZE}\n{_ROOT_B64}\n").size == MAX_TREE_SIZE


def test_invalid_utf8_checkpoint_bytes_are_rejected() -> None:
    with pytest.raises(MalformedError) as info:
        parse_checkpoint(b"\xff\n1\n" + _ROOT_B64.encode() + b"\n")
    assert info.value.reason is ReasonCode.MALFORMED_CHECKPOINT


@pytest.mark.parametrize(
    "fields",
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        (ORIGIN, -1, ROOT, ()),
        (ORIGIN, MAX_TREE_SIZE + 1, ROOT, ()),
        (ORIGIN, True, ROOT, ()),
        (ORIGIN, 1, ROOT[:16], ()),
        (ORIGIN, 1, ROOT, ("",)),
        (ORIGIN, 1, ROOT, ("two\nlines",)),
    ],
)
def test_checkpoint_constructor_refuses_fields_it_could_not_encode(fields: Any) -> None:
    with pytest.raises(UsageError):
        Checkpoint(*fields)


# -- signed checkpoints ------------------------------------------------------------------------


def test_signed_checkpoint_opens_with_the_log_key() -> None:
    signed = sign_checkpoint(CHECKPOINT, [LOG_SIGNER])
    opened = open_checkpoint(signed, LOG_VERIFIER, ORIGIN)
    assert opened.checkpoint == CHECKPOINT
    assert [s.name for s in opened.note.verified] == [ORIGIN]


def test_checkpoint_for_another_origin_is_refused() -> None:
    other = Checkpoint("other.example/log", 42, ROOT)
    with pytest.raises(VerificationError) as info:
        open_checkpoint(sign_checkpoint(other, [LOG_SIGNER]), LOG_VERIFIER, ORIGIN)
    assert info.value.reason is ReasonCode.CHECKPOINT_ORIGIN_MISMATCH


def test_checkpoint_signed_by_another_key_is_refused() -> None:
    stranger = NoteSigner(ORIGIN, _seed("stranger"))
    with pytest.raises(VerificationError) as info:
        open_checkpoint(sign_checkpoint(CHECKPOINT, [stranger]), LOG_VERIFIER, ORIGIN)
    assert info.value.reason is ReasonCode.NOTE_NO_VERIFIABLE_SIGNATURE


def test_signed_note_that_is_not_a_checkpoint_is_refused() -> None:
    with pytest.raises(MalformedError) as info:
        open_checkpoint(sign_note("just text\n", [LOG_SIGNER]), LOG_VERIFIER, ORIGIN)
    assert info.value.reason is ReasonCode.MALFORMED_CHECKPOINT


# -- cosignature keys and encoding -------------------------------------------------------------


def test_c2sp_cosignature_decodes_and_its_message_matches() -> None:
    example = _vectors()["c2sp_tlog_cosignature"]
    note = parse_unverified_note(example["cosigned_checkpoint"])
    witness_line = next(
        s for s in note.unverified if s.name == example["witness_signature"]["name"]
    )
    cosignature = parse_cosignature(witness_line.signature_b64)
    assert f"{cosignature.key_id:08x}" == example["witness_signature"]["key_id"]
    assert cosignature.timestamp == example["witness_signature"]["timestamp"]
    assert len(cosignature.signature) == 64
    message = cosignature_message(note.text, cosignature.timestamp)
    assert message == example["ed25519_signed_message"].encode()
    log_line = next(s for s in note.unverified if s.name != witness_line.name)
    with pytest.raises(MalformedError):  # the log's 68-byte plain signature
        parse_cosignature(log_line.signature_b64)


def _cosig_vkey_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = _vectors()["transparency_dev_formats_cosig_v1"]["verifier_keys"]
    return cases


@pytest.mark.parametrize("index", range(8))
def test_transparency_dev_cosignature_vkeys(index: int) -> None:
    case = _cosig_vkey_cases()[index]
    if case["accept"] and case["type_byte"] in (0x01, 0x04):
        verifier = CosignatureVerifier.from_vkey(case["vkey"])
        expected_id = case.get("key_id_as_cosignature_v1_computed") or case["key_id_computed"]
        assert f"{verifier.key_id:08x}" == expected_id
        assert verifier.vkey.split("+", 1)[0] == verifier.name
        assert CosignatureVerifier.from_vkey(verifier.vkey) == verifier
        return
    # Rejected: the malformed keys, and (deviation) the ML-DSA-44 key transparency-dev accepts,
    # because only Ed25519 cosignatures are supported here.
    with pytest.raises(MalformedError) as info:
        CosignatureVerifier.from_vkey(case["vkey"])
    assert info.value.reason is ReasonCode.MALFORMED_NOTE_KEY


def test_ml_dsa_vkey_is_reported_as_unsupported() -> None:
    case = next(c for c in _cosig_vkey_cases() if c["type_byte"] == 0x06)
    with pytest.raises(MalformedError, match="unsupported signature type 0x06"):
        CosignatureVerifier.from_vkey(case["vkey"])


def test_transparency_dev_cosignature_timestamps() -> None:
    works, plain, gibberish = _vectors()["transparency_dev_formats_cosig_v1"][
        "cosignature_timestamp"
    ]
    cosignature = parse_cosignature(works["sig_b64"])
    assert (f"{cosignature.key_id:08x}", cosignature.timestamp) == (
        works["key_id"],
        works["timestamp"],
    )
    for bad in (plain, gibberish):
        assert not bad["ok"]
        with pytest.raises(MalformedError) as info:
            parse_cosignature(bad["sig_b64"])
        assert info.value.reason is ReasonCode.MALFORMED_COSIGNATURE


def test_generated_cosignature_keys_round_trip() -> None:
    skey, vkey = generate_cosignature_key("witness.example/w", bytes)
    signer = CosignatureSigner.from_skey(skey, FixedClock(NOW))
    verifier = CosignatureVerifier.from_vkey(vkey)
    assert signer.verifier() == verifier
    assert signer.vkey == vkey
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x04
    assert "AAAAAAAAAAAA" not in repr(signer)


def test_note_keys_are_not_cosignature_signer_keys() -> None:
    skey, _ = generate_note_key("w.example")
    with pytest.raises(MalformedError) as info:
        CosignatureSigner.from_skey(skey)
    assert info.value.reason is ReasonCode.MALFORMED_NOTE_KEY


def test_cosignature_skey_with_wrong_key_id_is_rejected() -> None:
    skey, _ = generate_cosignature_key("w.example")
    parts = skey.split("+", 4)
    parts[3] = f"{int(parts[3], 16) ^ 1:08x}"
    with pytest.raises(MalformedError):
        CosignatureSigner.from_skey("+".join(parts))


def test_plain_ed25519_vkey_verifies_cosignatures_under_the_0x04_key_id() -> None:
    seed = _seed("dual")
    note_vkey = NoteSigner("dual.example", seed).vkey
    verifier = CosignatureVerifier.from_vkey(note_vkey)
    signer = CosignatureSigner("dual.example", seed, FixedClock(NOW))
    assert verifier.key_id == signer.key_id != NoteVerifier.from_vkey(note_vkey).key_id
    body = CHECKPOINT.to_text()
    line = sign_note(body, [signer]).decode().rsplit(" ", 1)[1].strip()
    assert verifier.verify_cosignature(body, line) == NOW


# -- cosigning ---------------------------------------------------------------------------------


def test_cosignature_layout_and_verification() -> None:
    signer, verifier = WITNESS_SIGNERS[0], WITNESSES[0]
    body = CHECKPOINT.to_text()
    raw = signer.sign(body.encode())
    assert int.from_bytes(raw[:8], "big") == NOW
    assert len(raw) == 72
    line = base64.b64encode(signer.key_id.to_bytes(4, "big") + raw).decode()
    assert verifier.verify_cosignature(body, line) == NOW
    assert verifier.verify(body.encode(), raw)
    other = Checkpoint(ORIGIN, 43, ROOT).to_text()
    with pytest.raises(VerificationError) as info:
        verifier.verify_cosignature(other, line)
    assert info.value.reason is ReasonCode.COSIGNATURE_INVALID
    with pytest.raises(VerificationError) as info:
        WITNESSES[1].verify_cosignature(body, line)
    assert info.value.reason is ReasonCode.COSIGNATURE_INVALID


def test_cosignature_with_altered_timestamp_fails() -> None:
    signer, verifier = WITNESS_SIGNERS[0], WITNESSES[0]
    body = CHECKPOINT.to_text()
    raw = bytearray(signer.key_id.to_bytes(4, "big") + signer.sign(body.encode()))
    raw[11] ^= 1
    with pytest.raises(VerificationError):
        verifier.verify_cosignature(body, base64.b64encode(bytes(raw)).decode())


def test_plain_note_signature_is_not_a_cosignature() -> None:
    body = CHECKPOINT.to_text()
    with pytest.raises(MalformedError) as info:
        WITNESSES[0].verify_cosignature(body, "!!not base64")
    assert info.value.reason is ReasonCode.MALFORMED_COSIGNATURE
    plain = sign_note(body, [LOG_SIGNER]).decode().rsplit(" ", 1)[1].strip()
    with pytest.raises(MalformedError) as info:
        WITNESSES[0].verify_cosignature(body, plain)
    assert info.value.reason is ReasonCode.MALFORMED_COSIGNATURE


def test_cosigner_refuses_text_that_is_not_a_checkpoint() -> None:
    with pytest.raises(MalformedError) as info:
        sign_note("hello\n", [WITNESS_SIGNERS[0]])
    assert info.value.reason is ReasonCode.MALFORMED_CHECKPOINT


def test_cosigner_refuses_a_clock_out_of_range() -> None:
    signer = CosignatureSigner("w.example", _seed("w"), FixedClock(-1))
    with pytest.raises(UsageError):
        signer.sign(CHECKPOINT.to_text().encode())


def test_open_note_checks_log_and_witness_signatures_together() -> None:
    note = _cosigned(0, 1)
    opened = open_note(note, [LOG_VERIFIER, *WITNESSES])
    assert [s.name for s in opened.verified] == [ORIGIN, WITNESSES[0].name, WITNESSES[1].name]


# -- witness quorum ----------------------------------------------------------------------------


def test_quorum_met_returns_checkpoint_and_cosigners() -> None:
    result = verify_witnessed_checkpoint(
        _cosigned(0, 2), LOG_VERIFIER, WITNESSES, 2, origin=ORIGIN, now=FixedClock(NOW)
    )
    assert result.checkpoint == CHECKPOINT
    assert result.witnesses == frozenset({WITNESSES[0], WITNESSES[2]})
    assert sorted(c.timestamp for c in result.cosignatures) == [NOW, NOW + 2]


def test_quorum_not_met() -> None:
    with pytest.raises(VerificationError) as info:
        verify_witnessed_checkpoint(
            _cosigned(0, 2), LOG_VERIFIER, WITNESSES, 3, now=FixedClock(NOW)
        )
    assert info.value.reason is ReasonCode.WITNESS_QUORUM_NOT_MET


def test_zero_quorum_needs_only_the_log() -> None:
    result = verify_witnessed_checkpoint(_cosigned(), LOG_VERIFIER, WITNESSES, 0)
    assert result.witnesses == frozenset()


def test_unconfigured_witnesses_do_not_count() -> None:
    outsider = CosignatureSigner("outsider.example", _seed("o"), FixedClock(NOW))
    signed = _cosigned(0)
    note = sign_note(open_note(signed, [LOG_VERIFIER]), [outsider])
    with pytest.raises(VerificationError) as info:
        verify_witnessed_checkpoint(note, LOG_VERIFIER, WITNESSES, 2, now=FixedClock(NOW))
    assert info.value.reason is ReasonCode.WITNESS_QUORUM_NOT_MET


def test_repeated_cosignature_lines_count_once() -> None:
    note = _cosigned(0).decode()
    last_line = note.splitlines(keepends=True)[-1]
    with pytest.raises(VerificationError) as info:
        verify_witnessed_checkpoint(
            (note + last_line).encode(), LOG_VERIFIER, WITNESSES, 2, now=FixedClock(NOW)
        )
    assert info.value.reason is ReasonCode.WITNESS_QUORUM_NOT_MET


def test_two_different_cosignatures_by_one_witness_count_once() -> None:
    note = _cosigned(0).decode()
    later = CosignatureSigner(WITNESS_SIGNERS[0].name, _seed("w0"), FixedClock(NOW + 5))
    assert later.verifier() == WITNESSES[0]
    second_line = sign_note(CHECKPOINT.to_text(), [later]).decode().splitlines(keepends=True)[-1]
    assert second_line not in note
    with pytest.raises(VerificationError) as info:
        verify_witnessed_checkpoint(
            (note + second_line).encode(), LOG_VERIFIER, WITNESSES, 2, now=FixedClock(NOW + 5)
        )
    assert info.value.reason is ReasonCode.WITNESS_QUORUM_NOT_MET


def test_a_bad_cosignature_by_a_configured_witness_rejects_the_checkpoint() -> None:
    note = _cosigned(0, 1).decode()
    # Move witness 0's cosignature onto a different checkpoint signed by the log.
    other = _cosigned(checkpoint=Checkpoint(ORIGIN, 43, ROOT)).decode()
    forged = other + note.splitlines(keepends=True)[-2]
    with pytest.raises(VerificationError) as info:
        verify_witnessed_checkpoint(
            forged.encode(), LOG_VERIFIER, WITNESSES, 1, now=FixedClock(NOW)
        )
    assert info.value.reason is ReasonCode.COSIGNATURE_INVALID


def test_cosignatures_from_the_future_are_not_counted() -> None:
    note = _cosigned(0, 1, 2)
    clock = FixedClock(NOW - 1000)
    with pytest.raises(VerificationError, match="in the future") as info:
        verify_witnessed_checkpoint(note, LOG_VERIFIER, WITNESSES, 1, now=clock)
    assert info.value.reason is ReasonCode.WITNESS_QUORUM_NOT_MET
    result = verify_witnessed_checkpoint(
        note, LOG_VERIFIER, WITNESSES, 1, now=clock, max_future_skew=1000
    )
    assert result.witnesses == frozenset({WITNESSES[0]})


def test_witness_quorum_still_needs_the_log_signature() -> None:
    body = CHECKPOINT.to_text()
    only_witnesses = sign_note(body, WITNESS_SIGNERS)
    with pytest.raises(VerificationError) as info:
        verify_witnessed_checkpoint(only_witnesses, LOG_VERIFIER, WITNESSES, 1)
    assert info.value.reason is ReasonCode.NOTE_NO_VERIFIABLE_SIGNATURE


def test_witness_quorum_checks_the_origin() -> None:
    with pytest.raises(VerificationError) as info:
        verify_witnessed_checkpoint(_cosigned(0), LOG_VERIFIER, WITNESSES, 1, origin="x.example")
    assert info.value.reason is ReasonCode.CHECKPOINT_ORIGIN_MISMATCH


@pytest.mark.parametrize("quorum", [-1, 4])
def test_impossible_quorum_is_a_usage_error(quorum: int) -> None:
    with pytest.raises(UsageError):
        verify_witnessed_checkpoint(_cosigned(0), LOG_VERIFIER, WITNESSES, quorum)


def test_a_witness_configured_twice_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        verify_witnessed_checkpoint(_cosigned(0), LOG_VERIFIER, [WITNESSES[0], WITNESSES[0]], 2)
    assert info.value.reason is ReasonCode.NOTE_AMBIGUOUS_KEY


# -- properties --------------------------------------------------------------------------------

_line_char = st.characters(codec="utf-8").filter(lambda c: c >= " ")
_line = st.text(_line_char, min_size=1, max_size=40)
_checkpoints = st.builds(
    Checkpoint,
    origin=_line,
    size=st.integers(0, MAX_TREE_SIZE),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_line, max_size=3).map(tuple),
)


@given(_checkpoints)
def test_checkpoint_text_round_trips(checkpoint: Checkpoint) -> None:
    assert parse_checkpoint(checkpoint.to_text()) == checkpoint


@given(_checkpoints, st.integers(0, 2**40))
def test_cosigned_checkpoints_verify_for_any_checkpoint(checkpoint: Checkpoint, at: int) -> None:
    signer = CosignatureSigner("w.example", _seed("prop"), FixedClock(at))
    log = NoteSigner("log.example", _seed("prop-log"))
    note = sign_note(open_note(sign_checkpoint(checkpoint, [log]), [log.verifier()]), [signer])
    result = verify_witnessed_checkpoint(
        note, log.verifier(), [signer.verifier()], 1, now=FixedClock(at)
    )
    assert result.checkpoint == checkpoint
    assert [c.timestamp for c in result.cosignatures] == [at]


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_checkpoint_parser_raises_only_civic_errors(data: str | bytes) -> None:
    try:
        parse_checkpoint(data)
    except CivicError as error:
        assert error.reason is ReasonCode.MALFORMED_CHECKPOINT


@given(st.text(max_size=150))
def test_cosignature_parsers_raise_only_civic_errors(text: str) -> None:
    try:
        parse_cosignature(text)
    except CivicError as error:
        assert error.reason is ReasonCode.MALFORMED_COSIGNATURE
    with contextlib.suppress(CivicError):
        WITNESSES[0].verify_cosignature(CHECKPOINT.to_text(), text)
    for candidate in (text, "w+" + text):
        try:
            CosignatureVerifier.from_vkey(candidate)
        except CivicError as error:
            assert error.reason is ReasonCode.MALFORMED_NOTE_KEY
