"""Signed notes and note keys: golang/mod and C2SP vectors, plus property tests."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    compute_key_id,
    generate_note_key,
    is_valid_key_name,
    open_note,
    parse_unverified_note,
    sign_note,
)
from tests.vectors import load_json


def _vectors() -> dict[str, Any]:
    data: dict[str, Any] = load_json("signed_note", "signed_note_vectors.json")
    return data


def _golang() -> dict[str, Any]:
    golang: dict[str, Any] = _vectors()["golang_mod_sumdb_note"]
    return golang


def _seeded_random(label: str) -> Any:
    """Deterministic 'randomness' so keys in property tests are reproducible."""

    def random(n: int) -> bytes:
        return hashlib.sha256(label.encode()).digest()[:n]

    return random


def _key_pair(name: str) -> tuple[NoteSigner, NoteVerifier]:
    skey, vkey = generate_note_key(name, _seeded_random(name))
    return NoteSigner.from_skey(skey), NoteVerifier.from_vkey(vkey)


ALICE_SIGNER, ALICE_VERIFIER = _key_pair("alice.example/log")
BOB_SIGNER, BOB_VERIFIER = _key_pair("bob.example/witness")


# -- keys --------------------------------------------------------------------------------------


def test_peter_keys_decode_to_the_published_seed_public_key_and_id() -> None:
    peter = _golang()["keys"]["PeterNeumann"]
    signer = NoteSigner.from_skey(peter["skey"])
    verifier = NoteVerifier.from_vkey(peter["vkey"])
    assert signer.name == verifier.name == peter["name"]
    assert f"{signer.key_id:08x}" == f"{verifier.key_id:08x}" == peter["key_id"]
    assert verifier.public_key == base64.b64decode(peter["ed25519_public_b64"])
    assert signer.verifier() == verifier
    assert signer.vkey == peter["vkey"]
    assert verifier.vkey == peter["vkey"]


def test_key_id_is_sha256_of_name_newline_type_and_key() -> None:
    peter = _golang()["keys"]["PeterNeumann"]
    public_key = base64.b64decode(peter["ed25519_public_b64"])
    assert f"{compute_key_id(peter['name'], 0x01, public_key):08x}" == peter["key_id"]


def test_enoch_root_key_derives_from_the_zero_seed() -> None:
    enoch = _golang()["keys"]["EnochRoot"]
    skey, vkey = generate_note_key(enoch["name"], bytes)
    assert skey == enoch["skey_derived"]
    assert vkey == enoch["vkey"]
    assert NoteSigner.from_skey(skey).vkey == enoch["vkey"]


def test_generated_keys_round_trip_through_their_encodings() -> None:
    skey, vkey = generate_note_key("example.org/log")
    assert skey.startswith("PRIVATE+KEY+example.org/log+")
    signer = NoteSigner.from_skey(skey)
    assert signer.verifier() == NoteVerifier.from_vkey(vkey)
    assert signer.vkey == vkey


def test_signer_repr_never_shows_the_seed() -> None:
    skey = _golang()["keys"]["PeterNeumann"]["skey"]
    text = repr(NoteSigner.from_skey(skey)) + str(NoteSigner.from_skey(skey))
    seed_b64 = skey.rsplit("+", 1)[-1]
    assert "c74f20a3" in text
    assert seed_b64 not in text
    assert seed_b64[1:12] not in text


@pytest.mark.parametrize("case", range(2))
def test_explicit_bad_vkeys_are_rejected(case: int) -> None:
    bad = _golang()["new_verifier_must_fail"]["explicit"][case]
    with pytest.raises(MalformedError) as info:
        NoteVerifier.from_vkey(bad["vkey"])
    assert info.value.reason is ReasonCode.MALFORMED_NOTE_KEY


def test_every_byte_incremented_vkey_and_skey_is_rejected() -> None:
    golang = _golang()
    vkeys = golang["new_verifier_must_fail"]["byte_incremented"]
    skeys = golang["new_signer_must_fail"]["byte_incremented"]
    assert (len(vkeys), len(skeys)) == (66, 78)
    for vkey in vkeys:
        with pytest.raises(MalformedError) as info:
            NoteVerifier.from_vkey(vkey)
        assert info.value.reason is ReasonCode.MALFORMED_NOTE_KEY, vkey
    for skey in skeys:
        with pytest.raises(MalformedError) as info:
            NoteSigner.from_skey(skey)
        assert info.value.reason is ReasonCode.MALFORMED_NOTE_KEY


def test_every_proper_substring_of_the_peter_keys_is_rejected() -> None:
    peter = _golang()["keys"]["PeterNeumann"]
    for key, parse in (
        (peter["vkey"], NoteVerifier.from_vkey),
        (peter["skey"], NoteSigner.from_skey),
    ):
        parse(key)
        for start in range(len(key)):
            for end in range(start + 1, len(key) + 1):
                if (start, end) == (0, len(key)):
                    continue
                with pytest.raises(MalformedError) as info:
                    parse(key[start:end])
                assert info.value.reason is ReasonCode.MALFORMED_NOTE_KEY


def test_a_cosignature_vkey_is_not_a_note_verifier() -> None:
    remora = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
    with pytest.raises(MalformedError, match="unsupported signature type 0x04"):
        NoteVerifier.from_vkey(remora)


def test_uppercase_key_id_is_rejected() -> None:
    vkey = _golang()["keys"]["PeterNeumann"]["vkey"].replace("c74f20a3", "C74F20A3")
    with pytest.raises(MalformedError):
        NoteVerifier.from_vkey(vkey)


@pytest.mark.parametrize(
    "name",
    ["", "a+b", "a b", "tab\there", "nbsp\u00a0name", "line\u2028sep", "ideo\u3000space", "\ud800"],
)
def test_invalid_key_names_are_refused(name: str) -> None:
    assert not is_valid_key_name(name)
    with pytest.raises(UsageError):
        generate_note_key(name)


@pytest.mark.parametrize("name", ["example.com/log", "서울.kr/registry", "a—b", "x"])
def test_valid_key_names_are_accepted(name: str) -> None:
    assert is_valid_key_name(name)
    _skey, vkey = generate_note_key(name)
    assert NoteVerifier.from_vkey(vkey).name == name


def test_verifier_constructor_checks_its_key_id() -> None:
    with pytest.raises(UsageError):
        NoteVerifier(ALICE_VERIFIER.name, ALICE_VERIFIER.key_id ^ 1, ALICE_VERIFIER.public_key)


# -- signing -----------------------------------------------------------------------------------


def test_peter_note_is_reproduced_byte_for_byte() -> None:
    sign = _golang()["sign"]
    note = sign_note(sign["text"], [NoteSigner.from_skey(sign["signer_skey"])])
    assert note == sign["expected_signed_note"].encode()
    assert note.decode().endswith(sign["expected_signature_line"])


def test_adding_a_signature_appends_it_after_the_existing_ones() -> None:
    golang = _golang()
    peter = NoteVerifier.from_vkey(golang["keys"]["PeterNeumann"]["vkey"])
    enoch = NoteSigner.from_skey(golang["keys"]["EnochRoot"]["skey_derived"])
    opened = open_note(golang["sign"]["expected_signed_note"].encode(), [peter])
    assert sign_note(opened, [enoch]) == golang["sign_add_enoch"]["expected_signed_note"].encode()


def test_resigning_with_the_same_key_replaces_the_old_signature() -> None:
    note = sign_note("hello\n", [ALICE_SIGNER, BOB_SIGNER])
    opened = open_note(note, [ALICE_VERIFIER])
    again = sign_note(opened, [ALICE_SIGNER])
    assert again.decode().count(ALICE_SIGNER.name) == 1
    assert open_note(again, [ALICE_VERIFIER, BOB_VERIFIER]).text == "hello\n"


def test_text_without_final_newline_cannot_be_signed() -> None:
    case = _golang()["sign_must_fail"][0]
    with pytest.raises(MalformedError) as info:
        sign_note(case["text"], [ALICE_SIGNER])
    assert info.value.reason is ReasonCode.MALFORMED_NOTE


@pytest.mark.parametrize("text", ["tab\there\n", "cr\r\n", "nul\x00\n", "bad \ud800\n", ""])
def test_text_with_control_characters_or_bad_utf8_cannot_be_signed(text: str) -> None:
    with pytest.raises(MalformedError) as info:
        sign_note(text, [ALICE_SIGNER])
    assert info.value.reason is ReasonCode.MALFORMED_NOTE


def test_signing_needs_distinct_signers() -> None:
    with pytest.raises(UsageError):
        sign_note("x\n", [])
    with pytest.raises(UsageError):
        sign_note("x\n", [ALICE_SIGNER, ALICE_SIGNER])


def test_text_may_contain_blank_lines_and_delete() -> None:
    text = "first\n\nsecond \x7f\n\n"
    note = sign_note(text, [ALICE_SIGNER])
    assert open_note(note, [ALICE_VERIFIER]).text == text


# -- opening -----------------------------------------------------------------------------------

_GO_ERRORS = {
    "malformed note": (MalformedError, ReasonCode.MALFORMED_NOTE),
    "note has no verifiable signatures": (
        VerificationError,
        ReasonCode.NOTE_NO_VERIFIABLE_SIGNATURE,
    ),
    "invalid signature for key": (VerificationError, ReasonCode.NOTE_SIGNATURE_INVALID),
    "ambiguous key": (VerificationError, ReasonCode.NOTE_AMBIGUOUS_KEY),
}


def _as_dicts(signatures: tuple[NoteSignature, ...]) -> list[dict[str, str]]:
    return [
        {"name": s.name, "key_id": f"{s.key_id:08x}", "sig_b64": s.signature_b64}
        for s in signatures
    ]


@pytest.mark.parametrize("index", range(16))
def test_golang_open_cases(index: int) -> None:
    cases = _golang()["open"]
    assert len(cases) == 16
    case = cases[index]
    note = base64.b64decode(case["note_b64"])
    verifiers = [NoteVerifier.from_vkey(vkey) for vkey in case["verifiers"]]
    expect = case["expect"]
    if expect["ok"]:
        opened = open_note(note, verifiers)
        assert opened.text == expect["text"]
        assert _as_dicts(opened.verified) == expect["verified"]
        assert _as_dicts(opened.unverified) == expect["unverified"]
        return
    error_class, reason = next(v for k, v in _GO_ERRORS.items() if expect["error"].startswith(k))
    with pytest.raises(error_class) as info:
        open_note(note, verifiers)
    assert info.value.reason is reason
    assert info.value.detail == expect["error"] or reason is ReasonCode.MALFORMED_NOTE
    if "unverified" in expect:
        assert _as_dicts(parse_unverified_note(note).unverified) == expect["unverified"]


def test_c2sp_example_note_verifies() -> None:
    example = _vectors()["c2sp_signed_note"]["verifiable_example"]
    opened = open_note(example["note"].encode(), [NoteVerifier.from_vkey(example["vkey"])])
    assert opened.text == example["text"]
    assert [f"{s.key_id:08x}" for s in opened.verified] == [example["key_id"]]


def test_c2sp_quasimodo_note_splits_at_the_last_blank_line() -> None:
    example = _vectors()["c2sp_signed_note"]["format_only_example"]
    parsed = parse_unverified_note(example["note"])
    assert parsed.text == example["text"]
    assert parsed.verified == ()
    assert [f"{s.key_id:08x}" for s in parsed.unverified] == [example["signature_key_id"]]


def test_same_name_other_key_is_ignored_not_failed() -> None:
    impostor_signer, _ = _key_pair(ALICE_SIGNER.name + "-twin")
    twin = NoteSigner(ALICE_SIGNER.name, hashlib.sha256(b"twin").digest())
    note = sign_note("x\n", [twin, ALICE_SIGNER])
    opened = open_note(note, [ALICE_VERIFIER])
    assert [s.key_id for s in opened.verified] == [ALICE_VERIFIER.key_id]
    assert [s.key_id for s in opened.unverified] == [twin.key_id]
    with pytest.raises(VerificationError) as info:
        open_note(sign_note("x\n", [twin, impostor_signer]), [ALICE_VERIFIER])
    assert info.value.reason is ReasonCode.NOTE_NO_VERIFIABLE_SIGNATURE


def test_at_least_sixteen_and_at_most_a_hundred_signatures() -> None:
    signers = [NoteSigner(f"s{i}.example", bytes([i]) * 32) for i in range(MAX_SIGNATURES + 1)]
    hundred = sign_note("x\n", signers[:MAX_SIGNATURES])
    opened = open_note(hundred, [signers[0].verifier(), signers[99].verifier()])
    assert len(opened.verified) == 2
    assert len(opened.unverified) == MAX_SIGNATURES - 2
    with pytest.raises(UsageError):
        sign_note("x\n", signers)
    extra = hundred + signers[100].name.join(["\u2014 ", " AAAAAAA=\n"]).encode()
    with pytest.raises(MalformedError):
        open_note(extra, [signers[0].verifier()])


def _alice_note(text: str = "hello\n") -> str:
    return sign_note(text, [ALICE_SIGNER]).decode()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda n: n.replace(f"\u2014 {ALICE_SIGNER.name}", "\u2014 bad name"),
        lambda n: n.replace("\u2014 ", "- "),
        lambda n: n[:-3] + "B=\n",  # non-zero unused bits: non-canonical base64
        lambda n: n.replace("=\n", "\n"),  # unpadded
        lambda n: n.rsplit(" ", 1)[0] + " \n",  # empty signature
        lambda n: n.rsplit(" ", 1)[0] + " AAAAAA==\n",  # 4 bytes: key ID only
        lambda n: n + "\n",
        lambda n: n.replace("\n\n", "\n"),
    ],
)
def test_malformed_signature_lines_are_rejected(mangle: Any) -> None:
    with pytest.raises(MalformedError) as info:
        open_note(mangle(_alice_note()).encode(), [ALICE_VERIFIER])
    assert info.value.reason is ReasonCode.MALFORMED_NOTE


def test_oversized_note_is_rejected_before_parsing() -> None:
    huge = b"x" * MAX_NOTE_BYTES + _alice_note().encode()
    with pytest.raises(MalformedError) as info:
        open_note(huge, [ALICE_VERIFIER])
    assert info.value.reason is ReasonCode.INPUT_TOO_LARGE


def test_signature_list_and_text_are_accessible() -> None:
    opened = open_note(_alice_note(), [ALICE_VERIFIER])
    assert opened == Note(
        "hello\n",
        (NoteSignature(ALICE_SIGNER.name, ALICE_SIGNER.key_id, opened.verified[0].signature_b64),),
        (),
    )
    assert len(opened.verified[0].signature) == 64


# -- properties --------------------------------------------------------------------------------

_note_char = st.characters(codec="utf-8").filter(lambda c: c == "\n" or c >= " ")
_note_text = st.text(_note_char, max_size=200).map(lambda s: s + "\n")


@given(_note_text)
def test_sign_then_open_round_trips(text: str) -> None:
    note = sign_note(text, [ALICE_SIGNER, BOB_SIGNER])
    opened = open_note(note, [BOB_VERIFIER, ALICE_VERIFIER])
    assert opened.text == text
    assert [s.name for s in opened.verified] == [ALICE_SIGNER.name, BOB_SIGNER.name]
    assert parse_unverified_note(note).text == text


@given(_note_text, st.data())
def test_any_single_byte_change_is_caught(text: str, data: st.DataObject) -> None:
    note = bytearray(sign_note(text, [ALICE_SIGNER]))
    position = data.draw(st.integers(0, len(note) - 1))
    value = data.draw(st.integers(0, 255))
    assume(note[position] != value)
    note[position] = value
    with pytest.raises((MalformedError, VerificationError)):
        open_note(bytes(note), [ALICE_VERIFIER])


@given(st.binary(max_size=300))
def test_open_note_on_arbitrary_bytes_raises_only_civic_errors(data: bytes) -> None:
    with contextlib.suppress(CivicError):
        open_note(data, [ALICE_VERIFIER])
    with contextlib.suppress(CivicError):
        parse_unverified_note(data)


@given(st.text(max_size=100), st.text(max_size=100))
def test_open_note_on_note_shaped_text_raises_only_civic_errors(text: str, tail: str) -> None:
    with contextlib.suppress(CivicError):
        open_note(text + "\n\n\u2014 " + tail, [ALICE_VERIFIER])


@given(st.text(max_size=120))
def test_key_parsers_raise_only_civic_errors(text: str) -> None:
    for parse in (NoteVerifier.from_vkey, NoteSigner.from_skey):
        for candidate in (text, "PRIVATE+KEY+" + text, "n+" + text):
            try:
                parse(candidate)
            except CivicError as error:
                assert error.reason is ReasonCode.MALFORMED_NOTE_KEY
