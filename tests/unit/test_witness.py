"""civic.witness: the tlog-witness add-checkpoint body, the witness's checks, cosignature lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civic.checkpoint import (
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    generate_cosignature_key,
    sign_checkpoint,
    verify_witnessed_checkpoint,
)
from civic.clock import FixedClock
from civic.encoding import b64std_encode
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.merkle import EMPTY_ROOT, MerkleTree, leaf_hash
from civic.note import NoteSigner, NoteVerifier, generate_note_key, parse_unverified_note
from civic.witness import (
    EMPTY_LOG_STATE,
    MAX_PROOF_LINES,
    AddCheckpointRequest,
    LogState,
    WitnessSizeConflict,
    attach_cosignatures,
    check_against_state,
    cosignature_lines,
    encode_add_checkpoint_request,
    encode_tlog_size,
    open_submitted_checkpoint,
    parse_add_checkpoint_request,
    parse_cosignature_lines,
    parse_tlog_size,
    status_for,
    verify_witness_response,
)

ORIGIN = "log.example/unit"
T0 = 1_800_000_000

LOG_SKEY, LOG_VKEY = generate_note_key(ORIGIN)
LOG_SIGNER = NoteSigner.from_skey(LOG_SKEY)
LOGS = {ORIGIN: (NoteVerifier.from_vkey(LOG_VKEY),)}
WITNESS_SKEY, WITNESS_VKEY = generate_cosignature_key("witness.example/w1")
WITNESS = CosignatureVerifier.from_vkey(WITNESS_VKEY)

TREE = MerkleTree()
TREE.append_many(leaf_hash(b"entry %d" % i) for i in range(40))


def checkpoint(size: int, tree: MerkleTree = TREE) -> Checkpoint:
    return Checkpoint(ORIGIN, size, tree.root(size))


def note(size: int, tree: MerkleTree = TREE) -> bytes:
    return sign_checkpoint(checkpoint(size, tree), [LOG_SIGNER])


def request(old: int, new: int, proof: list[bytes] | None = None) -> AddCheckpointRequest:
    if proof is None:
        proof = TREE.consistency_proof(old, new) if 0 < old < new else []
    return AddCheckpointRequest(old, tuple(proof), note(new))


def signer(at: int = T0) -> CosignatureSigner:
    return CosignatureSigner.from_skey(WITNESS_SKEY, FixedClock(at))


# -- the request body ----------------------------------------------------------------------


def test_spec_example_body_parses() -> None:
    body = (
        b"old 20852014\n"
        b"PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
        b"jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
        b"\n"
        b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        b"\n\xe2\x80\x94 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeO"
        b"oRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    )
    parsed = parse_add_checkpoint_request(body)
    assert parsed.old_size == 20852014
    assert [b64std_encode(node) for node in parsed.proof] == [
        "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=",
        "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=",
    ]
    assert parsed.checkpoint_note.startswith(b"example.com/behind-the-sofa\n20852163\n")
    assert parse_unverified_note(parsed.checkpoint_note).text.endswith("q2I=\n")


@given(
    old=st.integers(min_value=0, max_value=(1 << 64) - 1),
    proof=st.lists(st.binary(min_size=32, max_size=32), max_size=MAX_PROOF_LINES),
    checkpoint_note=st.binary(min_size=1, max_size=200),
)
def test_request_round_trip(old: int, proof: list[bytes], checkpoint_note: bytes) -> None:
    body = encode_add_checkpoint_request(old, proof, checkpoint_note)
    assert parse_add_checkpoint_request(body) == AddCheckpointRequest(
        old, tuple(proof), checkpoint_note
    )


_framed_bodies = st.builds(
    lambda header, lines, rest: header + b"".join(line + b"\n" for line in lines) + b"\n" + rest,
    st.sampled_from([b"old 0\n", b"old 7\n", b"old 07\n", b"old \n", b"old 1"]),
    st.lists(
        st.one_of(
            st.binary(min_size=32, max_size=32).map(lambda node: b64std_encode(node).encode()),
            st.binary(max_size=48),
        ),
        max_size=4,
    ),
    st.binary(max_size=60),
)


@given(st.one_of(st.binary(max_size=300), _framed_bodies))
def test_parser_raises_only_civic_errors(body: bytes) -> None:
    try:
        parsed = parse_add_checkpoint_request(body)
    except CivicError:
        return
    # Whatever parses re-encodes to the same bytes: there is one spelling of each request.
    assert (
        encode_add_checkpoint_request(parsed.old_size, parsed.proof, parsed.checkpoint_note) == body
    )


@pytest.mark.parametrize(
    "body",
    [
        b"old 1\nnote",  # no empty line
        b"old 01\n\nnote",  # leading zero
        b"old -1\n\nnote",
        b"old 1 \n\nnote",
        b"Old 1\n\nnote",
        b"old\n\nnote",
        b"old 18446744073709551616\n\nnote",  # 2^64
        b"old 1\n\n",  # no checkpoint
        b"old 1\r\n\nnote",
        b"old \xd9\xa1\n\nnote",  # Arabic-Indic digit one
        b"old 1\n" + b64std_encode(bytes(31)).encode() + b"\n\nnote",  # 31-byte hash
        b"old 1\nAAAA\n\nnote",
        b"old 1\n" + b64std_encode(bytes(32)).rstrip("=").encode() + b"\n\nnote",  # no padding
        b"old 1\n" + b"A" * 42 + b"B=\n\nnote",  # non-canonical trailing bits
        b"old 1\n" + (b64std_encode(bytes(32)).encode() + b"\n") * 64 + b"\nnote",  # 64 lines
    ],
)
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(MalformedError) as caught:
        parse_add_checkpoint_request(body)
    assert caught.value.reason is ReasonCode.MALFORMED_INPUT
    assert status_for(caught.value) == 400


def test_sixty_three_proof_lines_are_allowed() -> None:
    body = b"old 1\n" + (b64std_encode(bytes(32)).encode() + b"\n") * 63 + b"\nnote"
    assert len(parse_add_checkpoint_request(body).proof) == 63


def test_body_size_bound() -> None:
    body = encode_add_checkpoint_request(0, [], note(3))
    with pytest.raises(MalformedError) as caught:
        parse_add_checkpoint_request(body, max_bytes=len(body) - 1)
    assert caught.value.reason is ReasonCode.INPUT_TOO_LARGE
    assert status_for(caught.value) == 413
    assert parse_add_checkpoint_request(body, max_bytes=len(body)).old_size == 0


@pytest.mark.parametrize(
    ("old", "proof"),
    [(-1, []), (1 << 64, []), (True, []), (1, [bytes(31)]), (1, [bytes(32)] * 64)],
)
def test_encoder_refuses_bad_input(old: int, proof: list[bytes]) -> None:
    with pytest.raises(UsageError):
        encode_add_checkpoint_request(old, proof, b"note")


# -- the 409 body ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 5, (1 << 64) - 1])
def test_tlog_size_round_trip(size: int) -> None:
    assert parse_tlog_size(encode_tlog_size(size)) == size


@pytest.mark.parametrize(
    "body", [b"", b"5", b"05\n", b"5\r\n", b" 5\n", b"-5\n", b"18446744073709551616\n", b"\xff\n"]
)
def test_tlog_size_malformed(body: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_tlog_size(body)


# -- the witness's checks ----------------------------------------------------------------------


def test_open_submitted_checkpoint_verifies_the_log_signature() -> None:
    opened = open_submitted_checkpoint(note(7), LOGS)
    assert opened.checkpoint == checkpoint(7)
    assert [signature.name for signature in opened.note.verified] == [ORIGIN]


def test_open_submitted_checkpoint_ignores_other_signatures() -> None:
    # A checkpoint that already carries a cosignature by a witness we do not know.
    cosigned = attach_cosignatures(note(7), cosignature_lines(checkpoint(7).to_text(), [signer()]))
    opened = open_submitted_checkpoint(cosigned, LOGS)
    assert [signature.name for signature in opened.note.unverified] == [WITNESS.name]


def test_unknown_origin() -> None:
    other_skey, _ = generate_note_key("other.example/log")
    other = sign_checkpoint(
        Checkpoint("other.example/log", 1, TREE.root(1)), [NoteSigner.from_skey(other_skey)]
    )
    with pytest.raises(VerificationError) as caught:
        open_submitted_checkpoint(other, LOGS)
    assert caught.value.reason is ReasonCode.LOG_ORIGIN_UNKNOWN
    assert status_for(caught.value) == 404


def test_signature_by_another_key_under_the_origin_name() -> None:
    impostor_skey, _ = generate_note_key(ORIGIN)
    forged = sign_checkpoint(checkpoint(7), [NoteSigner.from_skey(impostor_skey)])
    with pytest.raises(VerificationError) as caught:
        open_submitted_checkpoint(forged, LOGS)
    assert caught.value.reason is ReasonCode.NOTE_NO_VERIFIABLE_SIGNATURE
    assert status_for(caught.value) == 403


def test_failing_signature_by_the_trusted_key() -> None:
    # Same key, other text: the signature line names the trusted key but does not verify.
    signatures = note(7).partition(b"\n\n")[2]
    tampered = checkpoint(8).to_text().encode() + b"\n" + signatures
    with pytest.raises(VerificationError) as caught:
        open_submitted_checkpoint(tampered, LOGS)
    assert caught.value.reason is ReasonCode.NOTE_SIGNATURE_INVALID
    assert status_for(caught.value) == 403


def test_advance_from_empty_and_onward() -> None:
    state = check_against_state(request(0, 5), checkpoint(5), EMPTY_LOG_STATE)
    assert state == LogState(5, TREE.root(5))
    state = check_against_state(request(5, 13), checkpoint(13), state)
    assert state == LogState(13, TREE.root(13))
    # Re-submitting the checkpoint already cosigned is fine (and re-cosigned).
    assert check_against_state(request(13, 13), checkpoint(13), state) == state


def test_stale_old_size_is_a_conflict_with_the_current_size() -> None:
    stored = LogState(9, TREE.root(9))
    with pytest.raises(WitnessSizeConflict) as caught:
        check_against_state(request(5, 13), checkpoint(13), stored)
    assert caught.value.current_size == 9
    assert caught.value.reason is ReasonCode.WITNESS_SIZE_CONFLICT
    assert status_for(caught.value) == 409


def test_old_size_above_checkpoint_size_is_a_bad_request() -> None:
    stored = LogState(9, TREE.root(9))
    with pytest.raises(VerificationError) as caught:
        check_against_state(request(9, 5, []), checkpoint(5), stored)
    assert caught.value.reason is ReasonCode.LOG_ROLLBACK
    assert status_for(caught.value) == 400


def test_empty_checkpoint_needs_the_empty_root() -> None:
    assert check_against_state(
        AddCheckpointRequest(0, (), b""), Checkpoint(ORIGIN, 0, EMPTY_ROOT), EMPTY_LOG_STATE
    ) == LogState(0, EMPTY_ROOT)
    with pytest.raises(VerificationError) as caught:
        check_against_state(
            AddCheckpointRequest(0, (), b""), Checkpoint(ORIGIN, 0, TREE.root(1)), EMPTY_LOG_STATE
        )
    assert caught.value.reason is ReasonCode.LOG_ROOT_MISMATCH
    assert status_for(caught.value) == 422


def test_proof_with_old_size_zero_is_refused() -> None:
    with pytest.raises(VerificationError) as caught:
        check_against_state(request(0, 5, [bytes(32)]), checkpoint(5), EMPTY_LOG_STATE)
    assert caught.value.reason is ReasonCode.MALFORMED_PROOF
    assert status_for(caught.value) == 422


def test_second_root_at_the_same_size_is_a_fork() -> None:
    stored = LogState(9, TREE.root(9))
    fork = Checkpoint(ORIGIN, 9, leaf_hash(b"fork"))
    with pytest.raises(VerificationError) as caught:
        check_against_state(AddCheckpointRequest(9, (), b""), fork, stored)
    assert caught.value.reason is ReasonCode.LOG_FORK
    assert status_for(caught.value) == 422


def test_proof_at_equal_sizes_is_refused() -> None:
    stored = LogState(9, TREE.root(9))
    with pytest.raises(VerificationError) as caught:
        check_against_state(request(9, 9, [bytes(32)]), checkpoint(9), stored)
    assert status_for(caught.value) == 422


@pytest.mark.parametrize("damage", ["flip", "short", "long"])
def test_bad_consistency_proof(damage: str) -> None:
    stored = LogState(5, TREE.root(5))
    proof = TREE.consistency_proof(5, 13)
    if damage == "flip":
        proof[1] = bytes([proof[1][0] ^ 1]) + proof[1][1:]
    elif damage == "short":
        proof = proof[:-1]
    else:
        proof = [*proof, bytes(32)]
    with pytest.raises(CivicError) as caught:
        check_against_state(request(5, 13, proof), checkpoint(13), stored)
    assert caught.value.reason in (
        ReasonCode.CONSISTENCY_PROOF_INVALID,
        ReasonCode.MALFORMED_PROOF,
    )
    assert status_for(caught.value) == 422


def test_history_rewritten_under_a_consistent_size_is_caught() -> None:
    # A second tree sharing nothing with the first: its proof cannot lead from the stored root.
    forked = MerkleTree()
    forked.append_many(leaf_hash(b"forked %d" % i) for i in range(13))
    stored = LogState(5, TREE.root(5))
    fork_request = AddCheckpointRequest(5, tuple(forked.consistency_proof(5, 13)), b"")
    with pytest.raises(VerificationError) as caught:
        check_against_state(fork_request, checkpoint(13, forked), stored)
    assert caught.value.reason is ReasonCode.CONSISTENCY_PROOF_INVALID


# -- cosignature lines -----------------------------------------------------------------------


def test_cosignature_lines_verify_with_the_witness_key() -> None:
    text = checkpoint(13).to_text()
    lines = cosignature_lines(text, [signer(T0 + 7)])
    assert len(lines) == 1
    assert lines[0].startswith("\u2014 witness.example/w1 ")
    assert lines[0].endswith("\n")
    assert verify_witness_response(lines[0].encode(), text, WITNESS) == lines
    parsed = parse_cosignature_lines(lines[0].encode())
    assert WITNESS.verify_cosignature(text, parsed[0].signature_b64) == T0 + 7


def test_zero_timestamp_is_never_produced() -> None:
    with pytest.raises(UsageError):
        cosignature_lines(checkpoint(13).to_text(), [signer(0)])


def test_witness_response_drops_unknown_keys_and_checks_known_ones() -> None:
    text = checkpoint(13).to_text()
    other_skey, _ = generate_cosignature_key("witness.example/other")
    other_line = cosignature_lines(text, [CosignatureSigner.from_skey(other_skey, FixedClock(T0))])
    own_line = cosignature_lines(text, [signer()])
    body = "".join(other_line + own_line).encode()
    assert verify_witness_response(body, text, WITNESS) == own_line

    with pytest.raises(VerificationError) as caught:
        verify_witness_response("".join(other_line).encode(), text, WITNESS)
    assert caught.value.reason is ReasonCode.COSIGNATURE_INVALID

    # The witness's line over another checkpoint: its key ID matches, the signature fails.
    stale = cosignature_lines(checkpoint(12).to_text(), [signer()])
    with pytest.raises(VerificationError) as caught:
        verify_witness_response("".join(stale).encode(), text, WITNESS)
    assert caught.value.reason is ReasonCode.COSIGNATURE_INVALID


def test_witness_response_with_zero_timestamp_is_refused() -> None:
    text = checkpoint(13).to_text()
    zero = signer(0)
    raw = zero.key_id.to_bytes(4, "big") + zero.sign(text.encode())
    line = f"\u2014 {zero.name} {b64std_encode(raw)}\n"
    with pytest.raises(VerificationError):
        verify_witness_response(line.encode(), text, WITNESS)


@pytest.mark.parametrize(
    "body",
    [b"", b"\xe2\x80\x94 w AAAAAAAA", b"- w AAAAAAAAAA==\n", b"\xe2\x80\x94 w AAAA\n", b"\xff\n"],
)
def test_malformed_witness_responses(body: bytes) -> None:
    with pytest.raises(MalformedError) as caught:
        parse_cosignature_lines(body)
    assert caught.value.reason is ReasonCode.MALFORMED_COSIGNATURE


def test_attached_cosignatures_make_a_witnessed_checkpoint() -> None:
    signed = note(13)
    lines = cosignature_lines(checkpoint(13).to_text(), [signer()])
    witnessed = attach_cosignatures(signed, lines)
    assert witnessed.startswith(signed)
    assert attach_cosignatures(witnessed, lines) == witnessed
    result = verify_witnessed_checkpoint(
        witnessed, LOGS[ORIGIN][0], [WITNESS], 1, origin=ORIGIN, now=FixedClock(T0)
    )
    assert result.checkpoint == checkpoint(13)
    assert [cosignature.timestamp for cosignature in result.cosignatures] == [T0]


def test_attach_refuses_what_is_not_one_signature_line() -> None:
    with pytest.raises(CivicError):
        attach_cosignatures(note(13), ["not a line\n"])
