"""No uncaught exception: signed notes, checkpoints, cosignatures, the witness protocol, registry
entries and offline trust bundles."""

from __future__ import annotations

from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from civic.checkpoint import (
    CosignatureVerifier,
    open_checkpoint,
    parse_checkpoint,
    parse_cosignature,
    verify_witnessed_checkpoint,
)
from civic.encoding import json_dumps, json_dumps_canonical, json_loads
from civic.errors import CivicError
from civic.logsync import sync, verify_bundle
from civic.note import NoteVerifier, decode_vkey, open_note, parse_unverified_note, sign_note
from civic.trust import EVENT_TYP, GovernanceConfig, SignedEntry, TrustState, parse_entry
from civic.witness import (
    LogState,
    check_against_state,
    open_submitted_checkpoint,
    parse_add_checkpoint_request,
    parse_cosignature_lines,
    parse_tlog_size,
    verify_witness_response,
)
from tests.fuzz import samples
from tests.fuzz.harness import civic_only, fuzz
from tests.fuzz.mutate import any_bytes, mutated_bytes, mutated_json, mutated_text

LOG = samples.NOTE_SIGNER.verifier()
OTHER = samples.OTHER_NOTE_SIGNER.verifier()
WITNESSES = [witness.verifier() for witness in samples.WITNESSES]
ORIGIN = samples.CHECKPOINT.origin

# --- signed notes and their keys ------------------------------------------------------------


def _check_note(note: bytes) -> None:
    civic_only(parse_unverified_note, note)
    civic_only(open_note, note, [LOG, OTHER])
    civic_only(open_note, note, [OTHER, *WITNESSES])


@fuzz(mutated_bytes(samples.note()))
def test_note_mutated(note: bytes) -> None:
    _check_note(note)


@fuzz(mutated_text("line one\nline two\n", seps="\n"))
def test_note_resigned_text(text: str) -> None:
    """Any text, signed: the parser sees a valid signature over a hostile body."""
    note = civic_only(
        sign_note,
        text.encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
        [samples.NOTE_SIGNER],
    )
    assume(note is not None)
    assert note is not None
    _check_note(note)


@fuzz(
    st.sampled_from([LOG.vkey, WITNESSES[0].vkey]).flatmap(
        lambda vkey: mutated_text(vkey, seps="+")
    )
)
def test_note_keys_mutated(vkey: str) -> None:
    civic_only(decode_vkey, vkey)
    civic_only(NoteVerifier.from_vkey, vkey)
    civic_only(CosignatureVerifier.from_vkey, vkey)


# --- checkpoints and cosignatures -----------------------------------------------------------


def _check_checkpoint(note: bytes | str) -> None:
    civic_only(open_checkpoint, note, LOG, ORIGIN)
    civic_only(
        verify_witnessed_checkpoint, note, LOG, WITNESSES, 2, origin=ORIGIN, now=samples.CLOCK
    )


@fuzz(any_bytes())
def test_checkpoint_random_bytes(note: bytes) -> None:
    _check_checkpoint(note)


@fuzz(mutated_bytes(samples.cosigned_checkpoint()))
def test_checkpoint_mutated(note: bytes) -> None:
    _check_checkpoint(note)


@fuzz(mutated_text(samples.CHECKPOINT.to_text(), seps="\n"))
def test_checkpoint_resigned_body(text: str) -> None:
    """A mutated checkpoint body signed by the log and both witnesses."""
    civic_only(parse_checkpoint, text)
    signed = _sign_any(text, [samples.NOTE_SIGNER, *samples.WITNESSES])
    _check_checkpoint(signed)


def _sign_any(text: str, signers: list[Any]) -> bytes:
    note = civic_only(sign_note, text.encode("utf-8", "replace").decode("utf-8"), signers)
    if note is None:  # sign_note refuses some text (a UsageError is the signer's own business)
        try:
            note = sign_note(samples.CHECKPOINT.to_text(), signers)
        except CivicError:
            raise AssertionError("signing a plain note failed") from None
    return note


def _cosignature_b64() -> str:
    note = parse_unverified_note(samples.cosigned_checkpoint())
    return note.unverified[1].signature_b64


@fuzz(mutated_text(_cosignature_b64(), seps=""))
def test_cosignature_mutated(signature_b64: str) -> None:
    civic_only(parse_cosignature, signature_b64)
    civic_only(WITNESSES[0].verify_cosignature, samples.CHECKPOINT.to_text(), signature_b64)


# --- the witness protocol (tlog-witness) ----------------------------------------------------


def _check_add_checkpoint(body: bytes) -> None:
    request = civic_only(parse_add_checkpoint_request, body)
    if request is None:
        return
    signed = civic_only(open_submitted_checkpoint, request.checkpoint_note, {ORIGIN: [LOG]})
    if signed is not None:
        for stored in (LogState(0, b""), LogState(3, bytes(32)), LogState(7, bytes(32))):
            civic_only(check_against_state, request, signed.checkpoint, stored)


@fuzz(any_bytes())
def test_add_checkpoint_random_bytes(body: bytes) -> None:
    _check_add_checkpoint(body)
    civic_only(parse_tlog_size, body)
    civic_only(parse_cosignature_lines, body)


@fuzz(mutated_bytes(samples.add_checkpoint_body()))
def test_add_checkpoint_mutated(body: bytes) -> None:
    _check_add_checkpoint(body)


def _witness_response() -> bytes:
    note = parse_unverified_note(samples.cosigned_checkpoint())
    return "".join(signature.line() + "\n" for signature in note.unverified[1:]).encode()


@fuzz(mutated_bytes(_witness_response(), seps="\n "))
def test_witness_response_mutated(body: bytes) -> None:
    civic_only(parse_cosignature_lines, body)
    for witness in WITNESSES:
        civic_only(verify_witness_response, body, samples.CHECKPOINT.to_text(), witness)


@fuzz(mutated_bytes(b"12345\n", seps=""))
def test_tlog_size_mutated(body: bytes) -> None:
    civic_only(parse_tlog_size, body)


# --- registry entries and governance --------------------------------------------------------


def _state() -> TrustState:
    gov = samples.governance()
    return gov.genesis().apply_many(
        [gov.issuer_add("k1"), gov.verifier_add("v1"), gov.issuer_add("k2")], workers=0
    )


_STATE = _state()


def _check_entry(data: bytes | str | Any) -> None:
    for canonical in (False, True):
        entry = civic_only(parse_entry, data, require_canonical=canonical)
        if isinstance(entry, SignedEntry):
            civic_only(_STATE.apply, entry)


def _leaves() -> list[bytes]:
    gov = samples.governance()
    return [
        gov.issuer_add("k3").leaf_bytes(),
        gov.issuer_change("issuer.key.revoke", "k1").leaf_bytes(),
        gov.issuer_change("issuer.key.retire", "k2").leaf_bytes(),
        gov.verifier_add("v2", verifier="https://v2.example").leaf_bytes(),
        gov.verifier_revoke().leaf_bytes(),
    ]


@fuzz(any_bytes())
def test_entry_random_bytes(data: bytes) -> None:
    _check_entry(data)


@fuzz(st.sampled_from(_leaves()).flatmap(lambda leaf: mutated_bytes(leaf, seps=",:")))
def test_entry_mutated_bytes(data: bytes) -> None:
    _check_entry(data)


@fuzz(st.sampled_from([json_loads(leaf) for leaf in _leaves()]).flatmap(mutated_json))
def test_entry_mutated_json(entry: Any) -> None:
    _check_entry(entry)
    _check_entry(json_dumps(entry))


@fuzz(st.sampled_from([json_loads(leaf)["event"] for leaf in _leaves()]).flatmap(mutated_json))
def test_entry_resigned_event(event: Any) -> None:
    """A mutated event signed by a governance quorum: the event checks behind the signatures."""
    gov = samples.governance()
    payload = json_dumps_canonical(event).encode("utf-8", "surrogatepass")
    signatures = [
        samples.sign_raw(
            {"alg": gov.keys[kid].alg, "kid": kid, "typ": EVENT_TYP}, payload, gov.keys[kid]
        )
        for kid in ("gov-0", "gov-1")
    ]
    _check_entry({"event": event, "signatures": signatures})
    text = (
        '{"event":'
        + payload.decode("utf-8", "surrogatepass")
        + ',"signatures":'
        + json_dumps(signatures)
        + "}"
    )
    _check_entry(text.encode("utf-8", "surrogatepass"))


@fuzz(mutated_json(samples.governance().config.to_json()))
def test_governance_config_mutated(value: Any) -> None:
    civic_only(GovernanceConfig.from_json, value)


# --- offline trust bundles ------------------------------------------------------------------


def _check_bundle(bundle: Any) -> None:
    world = samples.world()
    civic_only(verify_bundle, bundle, world.config, world.clock, 3600, workers=0)


@fuzz(any_bytes())
def test_bundle_random_bytes(data: bytes) -> None:
    _check_bundle(data)


@fuzz(mutated_json(samples.bundle()))
def test_bundle_mutated_json(bundle: Any) -> None:
    _check_bundle(bundle)


@fuzz(mutated_text(json_dumps(samples.bundle()), seps=",\n"))
def test_bundle_mutated_text(text: str) -> None:
    _check_bundle(text)


@fuzz(mutated_bytes(samples.bundle()["checkpoint"].encode(), seps="\n"))
def test_bundle_mutated_checkpoint(note: bytes) -> None:
    _check_bundle({**samples.bundle(), "checkpoint": note.decode("utf-8", "surrogateescape")})


# --- client sync against a hostile log ------------------------------------------------------


class _Hostile:
    """The grown log's LogSource, serving a changed checkpoint, leaves or proof."""

    def __init__(self, note: bytes, leaves: list[bytes], proof: list[bytes]) -> None:
        self.note, self.leaves, self.proof = note, leaves, proof

    def checkpoint(self) -> bytes:
        return self.note

    def entries(self, start: int, end: int) -> list[bytes]:
        return self.leaves[start:end]

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return self.proof


@fuzz(st.data())
def test_sync_from_a_hostile_log(data: st.DataObject) -> None:
    world, previous = samples.grown_world()
    note, leaves = world.log.checkpoint(), list(world.log.leaves)
    proof = world.log.consistency_proof(previous.size, len(leaves))
    target = data.draw(st.sampled_from(["note", "leaf", "proof"]))
    if target == "note":
        note = data.draw(mutated_bytes(note, seps="\n"))
    elif target == "leaf":
        index = data.draw(st.integers(0, len(leaves) - 1))
        leaves[index] = data.draw(mutated_bytes(leaves[index], seps=",:"))
    else:
        proof = data.draw(st.lists(st.sampled_from(proof) | st.binary(max_size=40), max_size=6))
    source = _Hostile(note, leaves, proof)
    for start in (None, previous):
        civic_only(sync, source, world.config, start, world.clock, page_size=2)
