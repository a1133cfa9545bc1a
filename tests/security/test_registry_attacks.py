"""Registry attacks: a lying log, lying witnesses, forged or bad entries, stale bundles, and
abuse of the registry's admin API (docs/registry.md).

Two surfaces:

- ``core``: :func:`civic.logsync.sync` and :func:`civic.logsync.verify_bundle` against a
  witnessed in-memory log (the ``World`` of tests/unit/test_logsync.py: governance 2 of 3,
  three witnesses, quorum 2) that misbehaves. After every failed sync the relying party's
  previous snapshot is unchanged and still syncs honestly (issue #3).
- ``registry``: the registry service over HTTP on 127.0.0.1 (tests/services/registry_harness),
  whose admin API must refuse bad entries with a 4xx and the reason code and append nothing,
  and a client syncing from it through a tampering man in the middle.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from civic.checkpoint import Checkpoint, CosignatureSigner
from civic.clock import FixedClock
from civic.encoding import json_dumps, json_dumps_canonical, json_loads
from civic.errors import CivicError, ReasonCode
from civic.jose import PrivateKey, sign_jws
from civic.logsync import LogSource, MemoryLog, TrustSnapshot, export_bundle, sync, verify_bundle
from civic.merkle import MerkleTree, leaf_hash
from civic.note import NoteSigner, sign_note
from civic.trust import EVENT_TYP, SignedEntry, sign_event
from registry.app import create_app
from registry.client import HttpLogSource, log_config_from_json
from registry.settings import RegistrySettings, load_runtime
from tests.security import Attack
from tests.security.verifier_site import IssuerKeys, Site, no_5xx, running_site
from tests.services.registry_harness import (
    ISSUER,
    RegistryFiles,
    ThreadServer,
    init_registry,
    issuer_key_add,
    post_entry,
    signed,
    tree_size,
    wait_for,
    wait_for_checkpoint,
)
from tests.services.test_registry import _issuer_event as issuer_event
from tests.services.test_registry import _raw_entry as signed_without_checks
from tests.services.verifier_deploy import AppServer, Deployment
from tests.unit.test_logsync import ORIGIN, Tampered, World
from tests.unit.test_trust import ISSUER as CORE_ISSUER
from tests.unit.test_trust import NOW, private_key
from verifier.app import build_services
from verifier.app import create_app as create_verifier_app
from verifier.settings import load_runtime as load_verifier_runtime

X25519_JWK = {"kty": "OKP", "crv": "X25519", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}

CORE_ATTACKS: tuple[Attack, ...] = (
    Attack("log_fork_same_size_other_root", ReasonCode.LOG_FORK, "core",
           "the log (with fooled witnesses) serves a second tree of the size already trusted"),
    Attack("log_fork_rewritten_history", ReasonCode.CONSISTENCY_PROOF_INVALID, "core",
           "a larger tree whose first entries differ from the trusted ones"),
    Attack("consistency_proof_tampered", ReasonCode.CONSISTENCY_PROOF_INVALID, "core",
           "an honest checkpoint with a consistency proof that has one hash flipped"),
    Attack("log_rollback_to_smaller_checkpoint", ReasonCode.LOG_ROLLBACK, "core",
           "an older, smaller (genuinely witnessed) checkpoint after a larger trusted one"),
    Attack("entry_signed_by_outsider_under_governance_kids",
           ReasonCode.GOVERNANCE_SIGNATURE_INVALID, "core",
           "a witnessed entry whose signatures name governance kids but are forged"),
    Attack("entry_under_governance_quorum", ReasonCode.GOVERNANCE_QUORUM_NOT_MET, "core",
           "a witnessed entry signed by one governance key where the quorum is two"),
    Attack("served_entry_tampered", ReasonCode.LOG_ROOT_MISMATCH, "core",
           "the log serves an entry with one field changed under an honest checkpoint"),
    Attack("served_entry_withheld", ReasonCode.LOG_ROOT_MISMATCH, "core",
           "the log leaves an entry out (e.g. a revocation) under an honest checkpoint"),
    Attack("checkpoint_short_of_witness_quorum", ReasonCode.WITNESS_QUORUM_NOT_MET, "core",
           "a checkpoint cosigned by one witness where the quorum is two"),
    Attack("cosignature_from_unknown_witness", ReasonCode.WITNESS_QUORUM_NOT_MET, "core",
           "a witness the relying party never configured makes up the quorum"),
    Attack("witness_name_with_another_key", ReasonCode.WITNESS_KEY_MISMATCH, "core",
           "a configured witness's name cosigning with a key the relying party does not know"),
    Attack("cosignature_over_another_checkpoint", ReasonCode.COSIGNATURE_INVALID, "core",
           "cosignature lines copied from an older checkpoint onto a new one"),
    Attack("checkpoint_signed_by_another_log_key", ReasonCode.NOTE_NO_VERIFIABLE_SIGNATURE, "core",
           "a checkpoint for our origin signed by a key that is not the log's"),
    Attack("witnessed_entry_with_wrong_key_type", ReasonCode.UNSUPPORTED_KEY_TYPE, "core",
           "a governance-signed, witnessed issuer key that is an X25519 (not a signing) key"),
    Attack("stale_offline_bundle", ReasonCode.TRUST_STALE, "core",
           "a genuine bundle a week old, past its maximum age of one day"),
    Attack("bundle_entries_not_matching_checkpoint", ReasonCode.LOG_ROOT_MISMATCH, "core",
           "a bundle whose entries were edited (a key window extended) under its checkpoint"),
    Attack("bundle_with_entries_dropped", ReasonCode.LOG_ROOT_MISMATCH, "core",
           "a bundle with its last entry (a revocation) cut off"),
)  # fmt: skip

HTTP_ATTACKS: tuple[Attack, ...] = (
    Attack("admin_duplicate_kid", ReasonCode.DUPLICATE_KID, "registry",
           "issuer.key.add for a kid the issuer already has, to swap in another key"),
    Attack("admin_retire_for_unknown_issuer", ReasonCode.ISSUER_UNKNOWN, "registry",
           "issuer.key.retire for an issuer the registry never accredited"),
    Attack("admin_revoke_for_unknown_issuer", ReasonCode.ISSUER_UNKNOWN, "registry",
           "issuer.key.revoke for an issuer the registry never accredited"),
    Attack("admin_revoke_unknown_kid", ReasonCode.KEY_UNKNOWN, "registry",
           "issuer.key.revoke of a kid the (known) issuer does not have"),
    Attack("admin_key_of_wrong_type", ReasonCode.UNSUPPORTED_KEY_TYPE, "registry",
           "an issuer key that is an X25519 key-agreement key"),
    Attack("admin_private_key_in_entry", ReasonCode.PRIVATE_KEY_MATERIAL, "registry",
           "an issuer key entry that carries the private key (d)"),
    Attack("admin_entry_under_quorum", ReasonCode.GOVERNANCE_QUORUM_NOT_MET, "registry",
           "an entry signed by one of the two governance keys the quorum needs"),
    Attack("admin_entry_forged_governance_signature", ReasonCode.GOVERNANCE_SIGNATURE_INVALID,
           "registry", "an entry whose second signature names a governance kid, by another key"),
    Attack("admin_entry_replayed", ReasonCode.REGISTRY_ENTRY_DUPLICATE, "registry",
           "an entry already in the log posted again (same event id)"),
    Attack("admin_revoke_already_revoked_key", ReasonCode.KEY_REVOKED, "registry",
           "issuer.key.revoke of a key already revoked (to rewrite its revoked_at)"),
    Attack("admin_retire_already_retired_key", ReasonCode.KEY_RETIRED, "registry",
           "issuer.key.retire of a retired key, moving retired_at later to cover more credentials"),
    Attack("admin_revoke_unknown_verifier", ReasonCode.VERIFIER_UNKNOWN, "registry",
           "verifier.revoke for a client_id the registry never accredited"),
    Attack("admin_remove_governance_below_quorum", ReasonCode.GOVERNANCE_QUORUM_NOT_MET,
           "registry", "governance.key.remove leaving fewer keys than the quorum"),
    Attack("admin_status_base_over_plain_http", ReasonCode.REGISTRY_ENTRY_MALFORMED, "registry",
           "an issuer key whose status base URL is plain http on a public host"),
    Attack("admin_call_without_token", ReasonCode.UNAUTHORIZED, "registry",
           "POST /entries with no Authorization header"),
    Attack("admin_call_with_wrong_token", ReasonCode.UNAUTHORIZED, "registry",
           "POST /entries with a guessed bearer token"),
    Attack("http_sync_entry_tampered_in_transit", ReasonCode.LOG_ROOT_MISMATCH, "registry",
           "a man in the middle edits an entry the registry serves to a syncing client"),
    Attack("http_sync_old_checkpoint_replayed", ReasonCode.LOG_ROLLBACK, "registry",
           "a man in the middle replays the registry's earlier, smaller checkpoint"),
)  # fmt: skip

SERVICE_ATTACKS: tuple[Attack, ...] = (
    Attack("verifier_sync_from_forked_log", ReasonCode.LOG_FORK, "verifier",
           "the log a running verifier syncs from serves another tree of the trusted size"),
    Attack("verifier_sync_from_rolled_back_log", ReasonCode.LOG_ROLLBACK, "verifier",
           "the log a running verifier syncs from goes back to an older, smaller checkpoint"),
    Attack("verifier_on_stale_bundle", ReasonCode.TRUST_STALE, "verifier",
           "a verifier left on a trust bundle older than its maximum age (a frozen registry)"),
)  # fmt: skip

ATTACKS: tuple[Attack, ...] = CORE_ATTACKS + HTTP_ATTACKS + SERVICE_ATTACKS


# --- core: a misbehaving witnessed log ----------------------------------------------------


def _seed(label: str) -> bytes:
    return hashlib.sha256(f"security/{label}".encode()).digest()


@dataclass
class Scene:
    """A log of 5 entries the client trusts (``previous``), grown to 9."""

    world: World
    previous: TrustSnapshot

    def attack(self, source: LogSource, previous: TrustSnapshot | None = None) -> ReasonCode:
        previous = previous or self.previous
        before = previous.to_json()
        with pytest.raises(CivicError) as caught:
            sync(source, self.world.config, previous, self.world.clock)
        # The failed sync leaves the trusted state as it was, and it still syncs honestly.
        assert previous.to_json() == before
        assert previous.state.root == previous.root_hash
        honest = sync(self.world.log, self.world.config, previous, self.world.clock)
        assert honest.size == self.world.log.tree.size()
        return caught.value.reason


def _scene(label: str) -> Scene:
    world = World(f"security-{label}")
    world.grow(5)
    previous = world.sync()
    world.grow(4)
    return Scene(world, previous)


def _raw_entry(world: World, event: dict[str, Any]) -> bytes:
    """A governance-signed entry, signed without the client-side validation of sign_event."""
    payload = json_dumps_canonical(event).encode()
    signatures = [
        sign_jws({"typ": EVENT_TYP, "kid": kid}, payload, world.gov.keys[kid])
        for kid in ("gov-0", "gov-1")
    ]
    return json_dumps_canonical({"event": event, "signatures": signatures}).encode()


def _bad_entry_in_log(scene: Scene, leaf: bytes | SignedEntry) -> ReasonCode:
    """The log really holds (and the witnesses cosigned) a bad entry after the trusted ones."""
    world = scene.world
    world.log.append(leaf)
    world.log.publish()
    before = scene.previous.to_json()
    with pytest.raises(CivicError) as caught:
        world.sync(scene.previous)
    assert scene.previous.to_json() == before
    assert caught.value.detail.startswith(f"entry {world.log.tree.size() - 1}: ")
    return caught.value.reason


def _fork_same_size(s: Scene) -> ReasonCode:
    fork = MerkleTree()
    fork.append_many(leaf_hash(leaf) for leaf in s.world.log.leaves[:4])
    fork.append(leaf_hash(s.world.gov.issuer_add("forked").leaf_bytes()))
    note = s.world.log.sign(Checkpoint(ORIGIN, 5, fork.root()))
    return s.attack(Tampered(s.world.log, note=note))


def _rewritten(s: Scene) -> ReasonCode:
    rewritten = MemoryLog(ORIGIN, s.world.log.log_signer, s.world.witnesses)
    for leaf in [s.world.gov.issuer_add("rewritten").leaf_bytes(), *s.world.log.leaves[1:]]:
        rewritten.append(leaf)
    rewritten.publish()
    return s.attack(rewritten)


def _flip_proof(s: Scene) -> ReasonCode:
    def flip(proof: list[bytes]) -> list[bytes]:
        return [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]

    return s.attack(Tampered(s.world.log, proof=flip))


def _rollback(s: Scene) -> ReasonCode:
    latest = s.world.sync()
    old_note = s.world.log.sign(s.world.log.checkpoint_at(5))
    return s.attack(Tampered(s.world.log, note=old_note), latest)


def _outsider_signed(s: Scene) -> ReasonCode:
    event = s.world.gov.event("issuer.key.revoke", issuer=CORE_ISSUER, kid="k1",
                              revoked_at=NOW)  # fmt: skip
    forged = sign_event(event, [("gov-0", private_key("x")), ("gov-1", private_key("y"))])
    return _bad_entry_in_log(s, forged)


def _under_quorum(s: Scene) -> ReasonCode:
    event = s.world.gov.event("issuer.key.revoke", issuer=CORE_ISSUER, kid="k1",
                              revoked_at=NOW)  # fmt: skip
    return _bad_entry_in_log(s, s.world.gov.sign(event, ["gov-0"]))


def _tampered_leaf(s: Scene) -> ReasonCode:
    leaves = list(s.world.log.leaves)
    leaves[6] = leaves[6].replace(b'"not_after":', b'"not_after":9')
    assert leaves[6] != s.world.log.leaves[6]
    return s.attack(Tampered(s.world.log, leaves))


def _withheld_leaf(s: Scene) -> ReasonCode:
    leaves = list(s.world.log.leaves)
    del leaves[7]
    return s.attack(Tampered(s.world.log, leaves))


def _short_quorum(s: Scene) -> ReasonCode:
    note = s.world.log.sign(s.world.log.checkpoint_at(), s.world.witnesses[:1])
    return s.attack(Tampered(s.world.log, note=note))


def _unknown_witness(s: Scene) -> ReasonCode:
    stranger = CosignatureSigner("witness9.example", _seed("stranger"), FixedClock(NOW))
    note = s.world.log.sign(s.world.log.checkpoint_at(), [s.world.witnesses[0], stranger])
    return s.attack(Tampered(s.world.log, note=note))


def _impostor_witness(s: Scene) -> ReasonCode:
    impostor = CosignatureSigner("witness1.example", _seed("impostor"), FixedClock(NOW))
    note = s.world.log.sign(s.world.log.checkpoint_at(), [s.world.witnesses[0], impostor])
    return s.attack(Tampered(s.world.log, note=note))


def _copied_cosignatures(s: Scene) -> ReasonCode:
    old = s.world.log.sign(s.world.log.checkpoint_at(5)).decode()
    lines = [line for line in old.split("\n") if line.startswith("— witness")]
    fresh = s.world.log.sign(s.world.log.checkpoint_at(), []).decode()
    note = (fresh.rstrip("\n") + "\n" + "\n".join(lines) + "\n").encode()
    return s.attack(Tampered(s.world.log, note=note))


def _other_log_key(s: Scene) -> ReasonCode:
    stranger = NoteSigner(ORIGIN, _seed("other-log"))
    note = sign_note(s.world.log.checkpoint_at().to_text(), [stranger, *s.world.witnesses])
    return s.attack(Tampered(s.world.log, note=note))


def _wrong_key_type(s: Scene) -> ReasonCode:
    event = s.world.gov.event(
        "issuer.key.add",
        issuer=CORE_ISSUER,
        kid="x25519",
        jwk=PrivateKey.generate().public_key,
        vct=["https://credentials.civic.example/residency"],
        status_base_url="https://status.seoul.example/lists/",
        not_before=NOW - 1000,
        not_after=NOW + 1000,
    )
    event["jwk"] = X25519_JWK
    return _bad_entry_in_log(s, _raw_entry(s.world, event))


def _bundle(s: Scene) -> dict[str, Any]:
    return export_bundle(s.world.sync(retain_entries=True))


def _bundle_reason(s: Scene, bundle: object, now: int = NOW) -> ReasonCode:
    with pytest.raises(CivicError) as caught:
        verify_bundle(bundle, s.world.config, FixedClock(now), max_age=86_400)  # type: ignore[arg-type]
    return caught.value.reason


def _stale_bundle(s: Scene) -> ReasonCode:
    late = NOW + 7 * 86_400
    snapshot = verify_bundle(_bundle(s), s.world.config, FixedClock(late), max_age=86_400)
    assert snapshot.stale  # still a correct view of the log, but too old to rely on
    with pytest.raises(CivicError) as caught:
        snapshot.ensure_fresh(late, 86_400)
    return caught.value.reason


def _edited_bundle(s: Scene) -> ReasonCode:
    bundle = json_loads(json_dumps(_bundle(s)))
    bundle["entries"][1]["event"]["not_after"] += 10 * 365 * 86_400
    return _bundle_reason(s, bundle)


def _cut_bundle(s: Scene) -> ReasonCode:
    bundle = _bundle(s)
    bundle["entries"] = bundle["entries"][:-1]
    return _bundle_reason(s, bundle)


CORE: dict[str, Callable[[Scene], ReasonCode]] = {
    "log_fork_same_size_other_root": _fork_same_size,
    "log_fork_rewritten_history": _rewritten,
    "consistency_proof_tampered": _flip_proof,
    "log_rollback_to_smaller_checkpoint": _rollback,
    "entry_signed_by_outsider_under_governance_kids": _outsider_signed,
    "entry_under_governance_quorum": _under_quorum,
    "served_entry_tampered": _tampered_leaf,
    "served_entry_withheld": _withheld_leaf,
    "checkpoint_short_of_witness_quorum": _short_quorum,
    "cosignature_from_unknown_witness": _unknown_witness,
    "witness_name_with_another_key": _impostor_witness,
    "cosignature_over_another_checkpoint": _copied_cosignatures,
    "checkpoint_signed_by_another_log_key": _other_log_key,
    "witnessed_entry_with_wrong_key_type": _wrong_key_type,
    "stale_offline_bundle": _stale_bundle,
    "bundle_entries_not_matching_checkpoint": _edited_bundle,
    "bundle_with_entries_dropped": _cut_bundle,
}


@pytest.mark.parametrize("attack", CORE_ATTACKS, ids=[a.name for a in CORE_ATTACKS])
def test_log_attack(attack: Attack) -> None:
    scene = _scene(attack.name)
    assert CORE[attack.name](scene) is attack.code


# --- registry service over HTTP ------------------------------------------------------------


@dataclass
class Registry:
    files: RegistryFiles
    url: str

    def post(self, entry: SignedEntry | dict[str, Any] | bytes, token: str | None = None) -> Any:
        response = post_entry(self.url, token or self.files.admin_token, entry)
        assert response.status_code < 500, response.text
        return response


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    files = init_registry(
        tmp_path_factory.mktemp("registry-attacks") / "data",
        "--governance-keys",
        "2",
        "--quorum",
        "2",
    )
    with ThreadServer(create_app(load_runtime(RegistrySettings(data_dir=files.data_dir)))) as s:
        registry = Registry(files, s.url)
        assert registry.post(issuer_key_add(files, kid="base-key")).status_code == 201
        yield registry


def _raw_http_entry(files: RegistryFiles, signers: Any = None, **changes: Any) -> dict[str, Any]:
    return signed_without_checks(files, issuer_event(**changes), signers)


def _replayed(r: Registry) -> SignedEntry:
    entry = issuer_key_add(r.files, kid=uuid.uuid4().hex)
    assert r.post(entry).status_code == 201
    return entry


def _changed_twice(r: Registry, kind: str) -> SignedEntry:
    """A fresh key, retired or revoked once (accepted), and the same change again."""
    kid = uuid.uuid4().hex
    assert r.post(issuer_key_add(r.files, kid=kid)).status_code == 201
    member = "retired_at" if kind == "issuer.key.retire" else "revoked_at"
    assert r.post(signed(r.files, kind, issuer=ISSUER, kid=kid, **{member: 1})).status_code == 201
    return signed(r.files, kind, issuer=ISSUER, kid=kid, **{member: 2})


ADMIN: dict[str, tuple[int, Callable[[Registry], Any]]] = {
    "admin_duplicate_kid": (409, lambda r: issuer_key_add(r.files, kid="base-key")),
    "admin_retire_for_unknown_issuer": (422, lambda r: signed(
        r.files, "issuer.key.retire", issuer="https://nobody.example", kid="k", retired_at=1)),
    "admin_revoke_for_unknown_issuer": (422, lambda r: signed(
        r.files, "issuer.key.revoke", issuer="https://nobody.example", kid="k", revoked_at=1)),
    "admin_revoke_unknown_kid": (422, lambda r: signed(
        r.files, "issuer.key.revoke", issuer=ISSUER, kid="no-such-kid", revoked_at=1)),
    "admin_key_of_wrong_type": (400, lambda r: _raw_http_entry(r.files, jwk=X25519_JWK)),
    "admin_private_key_in_entry": (400, lambda r: _raw_http_entry(
        r.files, jwk=PrivateKey.generate().export_private_jwk())),
    "admin_entry_under_quorum": (422, lambda r: _raw_http_entry(
        r.files, r.files.governance_keys()[:1])),
    "admin_entry_forged_governance_signature": (422, lambda r: _raw_http_entry(
        r.files, [r.files.governance_keys()[0],
                  (r.files.governance_keys()[1][0], PrivateKey.generate())])),
    "admin_entry_replayed": (409, _replayed),
    "admin_revoke_already_revoked_key": (422, lambda r: _changed_twice(r, "issuer.key.revoke")),
    "admin_retire_already_retired_key": (422, lambda r: _changed_twice(r, "issuer.key.retire")),
    "admin_revoke_unknown_verifier": (422, lambda r: signed(
        r.files, "verifier.revoke", verifier="rogue.example", revoked_at=1)),
    "admin_remove_governance_below_quorum": (422, lambda r: signed(
        r.files, "governance.key.remove", kid=r.files.governance_keys()[0][0])),
    "admin_status_base_over_plain_http": (400, lambda r: _raw_http_entry(
        r.files, status_base_url="http://status.district.example/lists")),
}  # fmt: skip


@pytest.mark.parametrize(
    "attack",
    [a for a in HTTP_ATTACKS if a.name in ADMIN],
    ids=[a.name for a in HTTP_ATTACKS if a.name in ADMIN],
)
def test_admin_api_attack(registry: Registry, attack: Attack) -> None:
    status, build = ADMIN[attack.name]
    entry = build(registry)
    before = tree_size(registry.url)
    response = registry.post(entry)
    assert (response.status_code, response.json()["error"]) == (status, attack.code.value)
    assert tree_size(registry.url) == before  # nothing appended


@pytest.mark.parametrize(
    ("attack", "authorization"),
    [(a, None if a.name == "admin_call_without_token" else "Bearer not-the-admin-token")
     for a in HTTP_ATTACKS if a.name.startswith("admin_call_")],
    ids=[a.name for a in HTTP_ATTACKS if a.name.startswith("admin_call_")],
)  # fmt: skip
def test_admin_api_needs_the_token(
    registry: Registry, attack: Attack, authorization: str | None
) -> None:
    before = tree_size(registry.url)
    body = json_dumps(issuer_key_add(registry.files, kid=uuid.uuid4().hex).to_json())
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.post(registry.url + "/entries", content=body, headers=headers, timeout=30)
    assert (response.status_code, response.json()["error"]) == (401, attack.code.value)
    assert tree_size(registry.url) == before


class InTransit:
    """A man in the middle between a client and the registry: rewrites what passes."""

    def __init__(
        self,
        inner: HttpLogSource,
        *,
        note: bytes | None = None,
        edit: Callable[[list[bytes], int], list[bytes]] | None = None,
    ) -> None:
        self.inner, self.note, self.edit = inner, note, edit

    def checkpoint(self) -> bytes:
        return self.note if self.note is not None else self.inner.checkpoint()

    def entries(self, start: int, end: int) -> list[bytes]:
        leaves = self.inner.entries(start, end)
        return self.edit(leaves, start) if self.edit is not None else leaves

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return self.inner.consistency_proof(old, new)


def _retarget(leaves: list[bytes], start: int) -> list[bytes]:
    # Point the newest issuer key at another status base: same length, one field changed.
    return [*leaves[:-1], leaves[-1].replace(b"district.example", b"districx.example")]


@pytest.mark.parametrize(
    "attack",
    [a for a in HTTP_ATTACKS if a.name.startswith("http_sync_")],
    ids=[a.name for a in HTTP_ATTACKS if a.name.startswith("http_sync_")],
)
def test_sync_from_the_registry_through_a_man_in_the_middle(
    registry: Registry, attack: Attack
) -> None:
    config = log_config_from_json(registry.files.trust_config())
    with HttpLogSource(registry.url) as source:
        size = tree_size(registry.url)
        wait_for_checkpoint(registry.url, size)
        old_note = source.checkpoint()
        previous = sync(source, config, None)
        before = previous.to_json()
        assert registry.post(issuer_key_add(registry.files, kid=uuid.uuid4().hex)).status_code == (
            201
        )
        wait_for_checkpoint(registry.url, size + 1)
        if attack.name == "http_sync_old_checkpoint_replayed":
            latest = sync(source, config, previous)
            before, previous = latest.to_json(), latest
            middle = InTransit(source, note=old_note)
        else:
            middle = InTransit(source, edit=_retarget)
        with pytest.raises(CivicError) as caught:
            sync(middle, config, previous)
        assert caught.value.reason is attack.code
        assert previous.to_json() == before  # the client keeps what it trusted
        assert sync(source, config, previous).size >= previous.size


# --- a running verifier syncing from a log that turns hostile -------------------------------


def _fork(log: MemoryLog) -> bytes:
    size = log.tree.size()
    fork = MerkleTree()
    fork.append_many(leaf_hash(leaf) for leaf in log.leaves[: size - 1])
    fork.append(leaf_hash(b'{"forked": true}'))
    return log.sign(Checkpoint(log.origin, size, fork.root()))


def _rollback_note(log: MemoryLog) -> bytes:
    return log.sign(log.checkpoint_at(log.tree.size() - 1))


@pytest.mark.parametrize("attack", SERVICE_ATTACKS[:2], ids=[a.name for a in SERVICE_ATTACKS[:2]])
def test_verifier_keeps_its_trust_when_its_log_turns_hostile(
    tmp_path: Path, attack: Attack
) -> None:
    deployment = Deployment.create(tmp_path / "verifier")
    city = deployment.city
    log, config = city.memory_log()
    (deployment.data_dir / "trust-config.json").write_text(
        json_dumps(city.trust_config_json(config))
    )
    runtime = load_verifier_runtime(deployment.settings(trust_bundle_file=None, sync_interval=0.05))
    services = build_services(runtime, now=FixedClock(city.now))
    site = Site(deployment, services, FixedClock(city.now), httpx.Client(timeout=15), IssuerKeys(
        *(PrivateKey.generate() for _ in range(7))))  # fmt: skip

    def health() -> dict[str, Any]:
        answer = no_5xx(site.client.get(deployment.url + "/healthz"))
        trust: dict[str, Any] = answer.json()["trust"]
        return trust

    try:
        with (
            AppServer(create_verifier_app(services, sync_source=log), deployment.port),
            site.client,
        ):
            size = len(city.entries)
            wait_for(lambda: health()["checkpoint_size"] == size, 15, "the first sync")
            if attack.code is ReasonCode.LOG_FORK:
                log.note = _fork(log)
            else:
                log.note = _rollback_note(log)
            wait_for(lambda: health()["last_error"] == attack.code.value, 15, "a failed sync")
            trust = health()
            assert (trust["checkpoint_size"], trust["stale"]) == (size, False)
            # Verdicts still rest on the trust the verifier had: a genuine credential is valid.
            assert site.verify(city.issue())["result"] == "valid"
    finally:
        deployment.close()


@pytest.mark.parametrize("attack", **{"argvalues": [SERVICE_ATTACKS[2]],
                                      "ids": [SERVICE_ATTACKS[2].name]})  # fmt: skip
def test_stale_trust_is_never_valid(tmp_path: Path, attack: Attack) -> None:
    with running_site(tmp_path / "verifier", trust_max_age=10) as site:
        assert no_5xx(site.client.get(site.url + "/healthz")).json()["trust"]["stale"] is True
        verdict = site.verify(site.city.issue())
        assert (verdict["result"], verdict["reason"]) == ("undetermined", attack.code.value)
        # What the stale log already says still counts: a revoked key stays invalid.
        revoked = site.city.issue(signer=site.keys.revoked, kid="revoked-1")
        assert (site.verify(revoked)["result"], site.verify(revoked)["reason"]) == (
            "invalid",
            "key_revoked",
        )


def test_every_attack_is_mounted() -> None:
    prefixes = ("admin_call_", "http_sync_")
    http = set(ADMIN) | {a.name for a in HTTP_ATTACKS if a.name.startswith(prefixes)}
    service = {a.name for a in SERVICE_ATTACKS}
    assert set(CORE) | http | service == {a.name for a in ATTACKS}
