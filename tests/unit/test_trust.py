"""The trust registry core: signed events, governance quorum, the folded trust state."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civic import trust
from civic.encoding import (
    b64url_decode,
    b64url_encode,
    json_dumps,
    json_dumps_canonical,
    json_loads,
)
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.jose import PrivateKey, sign_jws
from civic.merkle import EMPTY_ROOT, leaf_hash, root_from_leaf_hashes
from civic.trust import (
    EVENT_TYP,
    AllowedCredential,
    GovernanceConfig,
    IssuerKeyAdd,
    SignedEntry,
    TrustState,
    compact_range_append,
    compact_range_root,
    event_to_json,
    new_event,
    parse_entry,
    parse_event,
    sign_event,
)

NOW = 1_800_000_000
ISSUER = "https://district.seoul.example"
VERIFIER = "https://counter.seoul.example"
OTHER = "https://other.example"
RESIDENCY = "https://credentials.civic.example/residency"
YOUTH = "https://credentials.civic.example/youth-allowance"


def private_key(label: str) -> PrivateKey:
    return PrivateKey.from_ed25519_seed(hashlib.sha256(label.encode()).digest())


class Ids:
    """Deterministic event ids: a counter through SHA-256."""

    def __init__(self, label: str = "ids") -> None:
        self.label = label
        self.count = 0

    def __call__(self, n: int) -> bytes:
        self.count += 1
        return hashlib.sha256(f"{self.label}/{self.count}".encode()).digest()[:n]


class Governance:
    """Governance keys gov-0..gov-(n-1), a quorum, and helpers to build signed entries."""

    def __init__(self, n: int = 3, quorum: int = 2, label: str = "gov") -> None:
        self.keys = {f"gov-{i}": private_key(f"{label}/{i}") for i in range(n)}
        self.quorum = quorum
        self.ids = Ids(label)

    @property
    def config(self) -> GovernanceConfig:
        return GovernanceConfig(
            {kid: key.public_key for kid, key in self.keys.items()}, self.quorum
        )

    def genesis(self) -> TrustState:
        return TrustState.genesis(self.config)

    def event(self, kind: str, **members: Any) -> dict[str, Any]:
        return new_event(kind, now=lambda: NOW, random=self.ids, **members)

    def sign(self, event: dict[str, Any], kids: Sequence[str] | None = None) -> SignedEntry:
        chosen = list(self.keys)[: self.quorum] if kids is None else kids
        return sign_event(event, [(kid, self.keys[kid]) for kid in chosen])

    def issuer_add(
        self, kid: str = "k1", issuer: str = ISSUER, *, kids: Sequence[str] | None = None,
        **overrides: Any,
    ) -> SignedEntry:  # fmt: skip
        members: dict[str, Any] = {
            "issuer": issuer,
            "kid": kid,
            "jwk": private_key(f"issuer/{issuer}/{kid}").public_key,
            "vct": [RESIDENCY],
            "status_base_url": "https://status.seoul.example/lists/",
            "not_before": NOW - 1000,
            "not_after": NOW + 1000,
        }
        members.update(overrides)
        return self.sign(self.event("issuer.key.add", **members), kids)

    def issuer_change(
        self, kind: str, kid: str = "k1", at: int = NOW, issuer: str = ISSUER
    ) -> SignedEntry:
        member = "retired_at" if kind == "issuer.key.retire" else "revoked_at"
        return self.sign(self.event(kind, issuer=issuer, kid=kid, **{member: at}))

    def verifier_add(
        self, kid: str = "v1", verifier: str = VERIFIER, **overrides: Any
    ) -> SignedEntry:
        members: dict[str, Any] = {
            "verifier": verifier,
            "kid": kid,
            "jwk": private_key(f"verifier/{verifier}/{kid}").public_key,
            "purpose": "Youth allowance counter",
            "allowed": [
                {"vct": RESIDENCY, "claims": [["address", "locality"], ["age_over_19"]]},
                {"vct": YOUTH, "claims": [["programme"], ["periods", None, "start"]]},
            ],
            "not_before": NOW - 1000,
            "not_after": NOW + 1000,
        }
        members.update(overrides)
        return self.sign(self.event("verifier.add", **members))

    def verifier_revoke(self, verifier: str = VERIFIER) -> SignedEntry:
        return self.sign(self.event("verifier.revoke", verifier=verifier, revoked_at=NOW))


def fold(state: TrustState, *entries: SignedEntry) -> TrustState:
    for entry in entries:
        state = state.apply(entry)
    return state


def reason_of(action: Callable[[], object]) -> ReasonCode:
    with pytest.raises(CivicError) as caught:
        action()
    return caught.value.reason


GOV = Governance()
MALFORMED = ReasonCode.REGISTRY_ENTRY_MALFORMED


# --- entries: format, signing, parsing ----------------------------------------------------


def test_signed_entry_leaf_is_canonical_json_and_round_trips() -> None:
    entry = GOV.issuer_add()
    assert entry.leaf_bytes() == json_dumps_canonical(entry.to_json()).encode()
    assert entry.leaf_hash() == leaf_hash(entry.leaf_bytes())
    assert entry.event_bytes() == json_dumps_canonical(event_to_json(entry.event)).encode()
    again = parse_entry(entry.leaf_bytes(), require_canonical=True)
    assert again == entry and again.leaf_hash() == entry.leaf_hash()
    assert parse_entry(entry.to_json()) == entry
    assert parse_entry(entry.leaf_bytes().decode()) == entry
    assert isinstance(entry.event, IssuerKeyAdd) and entry.event.issuer == ISSUER
    assert entry.signer_kids == ("gov-0", "gov-1")


def test_signatures_are_jws_over_the_canonical_event() -> None:
    entry = GOV.issuer_add()
    header_b64, payload_b64, _ = entry.signatures[0].split(".")
    header = json_loads(b64url_decode(header_b64))
    assert header == {"alg": "EdDSA", "typ": EVENT_TYP, "kid": "gov-0"}
    assert b64url_decode(payload_b64) == entry.event_bytes()


def test_every_event_type_round_trips_through_json() -> None:
    gov = Governance(label="roundtrip")
    events = [
        gov.event("governance.key.add", kid="gov-9", jwk=private_key("g9").public_key, quorum=2),
        gov.event("governance.key.remove", kid="gov-2"),
        gov.issuer_add().to_json()["event"],
        gov.event("issuer.key.retire", issuer=ISSUER, kid="k1", retired_at=NOW),
        gov.event("issuer.key.revoke", issuer=ISSUER, kid="k1", revoked_at=NOW),
        gov.verifier_add().to_json()["event"],
        gov.event("verifier.revoke", verifier=VERIFIER, revoked_at=NOW),
    ]
    assert sorted(e["type"] for e in events) == sorted(trust.EVENT_TYPES)
    for event in events:
        assert event_to_json(parse_event(event)) == event


def test_new_event_fills_id_and_time_and_validates() -> None:
    event = new_event(
        "verifier.revoke", now=lambda: 1234, random=Ids("x"), verifier=VERIFIER, revoked_at=5
    )
    assert event["time"] == 1234 and len(b64url_decode(event["id"])) == 16
    with pytest.raises(UsageError):
        new_event("verifier.revoke", id="x", verifier=VERIFIER, revoked_at=5)
    with pytest.raises(MalformedError) as caught:
        new_event("verifier.revoke", verifier=VERIFIER)
    assert caught.value.reason is ReasonCode.REGISTRY_ENTRY_MALFORMED


def _event_variant(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    event = GOV.issuer_add().to_json()["event"]
    change(event)
    return event


MALFORMED_EVENTS: list[tuple[str, Callable[[dict[str, Any]], object], ReasonCode]] = [
    ("unknown type", lambda e: e.update(type="issuer.key.delete"), MALFORMED),
    ("missing member", lambda e: e.pop("vct"), MALFORMED),
    ("extra member", lambda e: e.update(note="x"), MALFORMED),
    ("missing id", lambda e: e.pop("id"), MALFORMED),
    ("short id", lambda e: e.update(id="AAAA"), MALFORMED),
    ("non-canonical id", lambda e: e.update(id="A" * 21 + "B"), MALFORMED),
    ("time is a bool", lambda e: e.update(time=True), MALFORMED),
    ("time is a float", lambda e: e.update(time=1.5), MALFORMED),
    ("negative time", lambda e: e.update(time=-1), MALFORMED),
    ("time too far", lambda e: e.update(time=10**12), MALFORMED),
    ("empty kid", lambda e: e.update(kid=""), MALFORMED),
    ("kid with newline", lambda e: e.update(kid="a\nb"), MALFORMED),
    ("kid not a string", lambda e: e.update(kid=7), MALFORMED),
    ("empty vct", lambda e: e.update(vct=[]), MALFORMED),
    ("vct twice", lambda e: e.update(vct=[RESIDENCY, RESIDENCY]), MALFORMED),
    ("vct not a list", lambda e: e.update(vct=RESIDENCY), MALFORMED),
    ("http issuer", lambda e: e.update(issuer="http://district.example"), MALFORMED),
    ("issuer not a URL", lambda e: e.update(issuer="district"), MALFORMED),
    ("URL with user", lambda e: e.update(issuer="https://a@b.example"), MALFORMED),
    ("URL with fragment", lambda e: e.update(status_base_url="https://s.example/#x"), MALFORMED),
    ("URL bad port", lambda e: e.update(status_base_url="https://s.example:99999/"), MALFORMED),
    ("ftp URL", lambda e: e.update(status_base_url="ftp://s.example/"), MALFORMED),
    ("window reversed", lambda e: e.update(not_before=NOW, not_after=NOW - 1), MALFORMED),
    ("jwk not an object", lambda e: e.update(jwk="key"), ReasonCode.MALFORMED_JWK),
    ("jwk bad x", lambda e: e["jwk"].update(x="AAAA"), ReasonCode.MALFORMED_JWK),
    (
        "jwk RSA",
        lambda e: e.update(jwk={"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
        ReasonCode.UNSUPPORTED_KEY_TYPE,
    ),
    ("jwk private", lambda e: e["jwk"].update(d="A" * 43), ReasonCode.PRIVATE_KEY_MATERIAL),
]


@pytest.mark.parametrize(
    ("change", "reason"),
    [(c, r) for _, c, r in MALFORMED_EVENTS],
    ids=[name for name, _, _ in MALFORMED_EVENTS],
)
def test_malformed_events_are_rejected_with_their_reason(
    change: Callable[[dict[str, Any]], object], reason: ReasonCode
) -> None:
    event = _event_variant(change)
    assert reason_of(lambda: parse_event(event)) is reason
    # The same event inside an entry fails the same way.
    entry = {"event": event, "signatures": GOV.issuer_add().signatures}
    assert reason_of(lambda: parse_entry(entry)) is reason


def test_loopback_http_urls_are_allowed_for_local_deployments() -> None:
    for url in ("http://localhost:8001", "http://127.0.0.1/status/", "http://[::1]:80/x?y=1"):
        entry = GOV.issuer_add(issuer=url, status_base_url=url)
        assert entry.event.issuer == url  # type: ignore[union-attr]


VERIFIER_MALFORMED: list[tuple[str, object]] = [
    ("allowed empty", []),
    ("allowed item extra member", [{"vct": RESIDENCY, "claims": [], "x": 1}]),
    ("claims not a list", [{"vct": RESIDENCY, "claims": "name"}]),
    ("empty path", [{"vct": RESIDENCY, "claims": [[]]}]),
    ("negative index", [{"vct": RESIDENCY, "claims": [["a", -1]]}]),
    ("bool component", [{"vct": RESIDENCY, "claims": [["a", True]]}]),
    ("float component", [{"vct": RESIDENCY, "claims": [["a", 1.0]]}]),
    ("path twice", [{"vct": RESIDENCY, "claims": [["a"], ["a"]]}]),
    ("vct twice", [{"vct": RESIDENCY, "claims": []}, {"vct": RESIDENCY, "claims": [["a"]]}]),
]


@pytest.mark.parametrize(
    "allowed", [a for _, a in VERIFIER_MALFORMED], ids=[n for n, _ in VERIFIER_MALFORMED]
)
def test_malformed_verifier_policies_are_rejected(allowed: object) -> None:
    event = GOV.verifier_add().to_json()["event"]
    event["allowed"] = allowed
    assert reason_of(lambda: parse_event(event)) is ReasonCode.REGISTRY_ENTRY_MALFORMED


def _resign_header(header: dict[str, Any]) -> str:
    payload = GOV.issuer_add().event_bytes()
    return sign_jws(header, payload, GOV.keys["gov-0"])


ENTRY_MALFORMED: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
    ("extra member", lambda e: e.update(extra=1)),
    ("no signatures member", lambda e: e.pop("signatures")),
    ("signatures empty", lambda e: e.update(signatures=[])),
    ("signatures not a list", lambda e: e.update(signatures="x.y.z")),
    ("signature not a string", lambda e: e["signatures"].append(5)),
    ("signature two parts", lambda e: e["signatures"].append("abc.def")),
    ("signature bad base64", lambda e: e["signatures"].append(e["signatures"][0] + "+")),
    ("signature header not JSON", lambda e: e["signatures"].append("bm9wZQ.e30.AAAA")),
    ("same kid twice", lambda e: e["signatures"].append(e["signatures"][0])),
    (
        "header extra member",
        lambda e: e.update(signatures=[_resign_header({"typ": EVENT_TYP, "kid": "gov-0", "x": 1})]),
    ),
    (
        "header wrong typ",
        lambda e: e.update(signatures=[_resign_header({"typ": "JWT", "kid": "gov-0"})]),
    ),
    (
        "header without kid",
        lambda e: e.update(signatures=[_resign_header({"typ": EVENT_TYP, "k": "gov-0"})]),
    ),
    (
        "header empty kid",
        lambda e: e.update(signatures=[_resign_header({"typ": EVENT_TYP, "kid": ""})]),
    ),
    (
        "too many signatures",
        lambda e: e.update(
            signatures=[_resign_header({"typ": EVENT_TYP, "kid": f"g{i}"}) for i in range(17)]
        ),
    ),
]


@pytest.mark.parametrize(
    "change", [c for _, c in ENTRY_MALFORMED], ids=[n for n, _ in ENTRY_MALFORMED]
)
def test_malformed_entries_are_rejected(change: Callable[[dict[str, Any]], object]) -> None:
    entry = GOV.issuer_add().to_json()
    change(entry)
    assert reason_of(lambda: parse_entry(entry)) is ReasonCode.REGISTRY_ENTRY_MALFORMED
    assert reason_of(lambda: parse_entry(json_dumps(entry))) is ReasonCode.REGISTRY_ENTRY_MALFORMED


def test_entry_bytes_are_parsed_strictly() -> None:
    leaf = GOV.issuer_add().leaf_bytes()
    for bad in (b"", b"[]", b"{", b"\xff", leaf + b"x", b'{"event":1,"event":2}', b"null"):
        assert reason_of(lambda bad=bad: parse_entry(bad)) is ReasonCode.REGISTRY_ENTRY_MALFORMED
    assert reason_of(lambda: parse_entry(b" " * (trust.MAX_ENTRY_BYTES + 1))) is (
        ReasonCode.INPUT_TOO_LARGE
    )
    assert reason_of(lambda: parse_entry(42)) is ReasonCode.REGISTRY_ENTRY_MALFORMED  # type: ignore[arg-type]


def test_log_leaves_must_be_canonical() -> None:
    entry = GOV.issuer_add()
    pretty = json_dumps(entry.to_json()).encode()  # same members, not sorted
    assert pretty != entry.leaf_bytes()
    assert parse_entry(pretty) == entry
    assert reason_of(lambda: parse_entry(pretty, require_canonical=True)) is (
        ReasonCode.REGISTRY_ENTRY_MALFORMED
    )
    assert reason_of(lambda: parse_entry(entry.to_json(), require_canonical=True)) is (
        ReasonCode.REGISTRY_ENTRY_MALFORMED
    )


def test_oversized_event_is_refused() -> None:
    huge = [{"vct": f"{RESIDENCY}/{i}", "claims": [["c" * 200]]} for i in range(40)]
    assert reason_of(lambda: GOV.verifier_add(allowed=huge)) is ReasonCode.INPUT_TOO_LARGE


def test_sign_event_refuses_bad_signer_lists() -> None:
    event = GOV.event("verifier.revoke", verifier=VERIFIER, revoked_at=NOW)
    with pytest.raises(UsageError):
        sign_event(event, [])
    with pytest.raises(UsageError):
        sign_event(event, [("gov-0", GOV.keys["gov-0"]), ("gov-0", GOV.keys["gov-1"])])
    # An Event object signs to the same entry as its JSON.
    parsed = parse_event(event)
    signers = [("gov-0", GOV.keys["gov-0"])]
    assert sign_event(parsed, signers) == sign_event(event, signers)


@settings(max_examples=150)
@given(st.data())
def test_mutated_leaves_parse_or_fail_with_a_civic_error(data: st.DataObject) -> None:
    leaf = bytearray(GOV.verifier_add().leaf_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(leaf) - 1))
        leaf[position] = data.draw(st.integers(0, 255))
    try:
        entry = parse_entry(bytes(leaf), require_canonical=True)
    except CivicError:
        return
    assert entry.leaf_bytes() == bytes(leaf)


def _parse_outcome(
    parse: Callable[[bytes, bool], SignedEntry], leaf: bytes, canonical: bool
) -> tuple[object, ...]:
    try:
        entry = parse(leaf, canonical)
    except CivicError as error:
        return ("error", type(error), error.reason, error.detail)
    return (
        "entry", entry.leaf_bytes(), entry.event_bytes(), entry.event, entry.signatures,
        entry._signatures,
    )  # fmt: skip


def _signed_leaf(event: dict[str, Any], kids: Sequence[str]) -> bytes:
    """The canonical leaf of ``event`` signed by governance ``kids``, whatever the event holds."""
    payload = json_dumps_canonical(event).encode()
    tokens = [sign_jws({"typ": EVENT_TYP, "kid": kid}, payload, GOV.keys[kid]) for kid in kids]
    return json_dumps_canonical({"event": event, "signatures": tokens}).encode()


def _parse_canonical(leaf: bytes, canonical: bool) -> SignedEntry:
    return parse_entry(leaf, require_canonical=canonical)


_P256_KEY = PrivateKey.generate("ES256")
_JSON_BYTES = st.sampled_from(
    [*b'"\\,:{}[]0123456789-+.eE aZ_/', 0x00, 0x1F, 0x7F, 0xC3, 0xA9, 0xFF]
)


@settings(max_examples=200)
@given(st.data())
def test_recognized_leaves_parse_as_the_json_parser_would(data: st.DataObject) -> None:
    # parse_entry reads the commonest leaf with one pattern: whatever the bytes, it must give
    # the strict parser's result (entry or error, reason and detail alike).
    safe = st.text(st.sampled_from("aZ09_-:/."), max_size=4)
    odd = st.text(st.sampled_from(["é", '"', "\\", "\x01", "a"]), min_size=1, max_size=2)
    odd_member = data.draw(st.sampled_from([None, None, None, "issuer", "kid", "status"]))

    def texts(member: str) -> str:
        return data.draw(odd if member == odd_member else safe)

    event: dict[str, Any] = {
        "type": "issuer.key.add",
        "id": data.draw(st.sampled_from([b64url_encode(bytes(16))] * 4 + ["short", "\\"])),
        "time": data.draw(st.sampled_from([NOW, NOW, 0, -1, 10**20])),
        "issuer": ISSUER + texts("issuer"),
        "kid": texts("kid") or "k",
        "jwk": data.draw(st.sampled_from([GOV.keys["gov-0"], _P256_KEY])).public_key.to_jwk(),
        "vct": [RESIDENCY, *data.draw(st.lists(st.sampled_from([YOUTH, RESIDENCY, ""])))],
        "status_base_url": "https://status.example/" + texts("status"),
        "not_before": NOW,
        "not_after": data.draw(st.sampled_from([NOW, NOW - 1, 2**63])),
    }
    extra: dict[str, Any] = data.draw(
        st.sampled_from(
            [{}, {}, {}, {"alg": "EdDSA"}, {"use": "sig"}, {"kid": "k"}, {"d": "AAAA"},
             {"key_ops": ["verify"]}, {"y": "AAAA"}, {"kty": "EC"}, {"crv": "P-256"}]
        )
    )  # fmt: skip
    event["jwk"] = {**event["jwk"], **extra}
    signers = data.draw(st.lists(st.sampled_from(sorted(GOV.keys)), min_size=1, max_size=3))
    leaf = bytearray(_signed_leaf(event, signers))
    for _ in range(data.draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        position = data.draw(st.integers(0, len(leaf)))
        action = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if action == "insert" or position == len(leaf):
            leaf.insert(position, data.draw(_JSON_BYTES))
        elif action == "set":
            leaf[position] = data.draw(_JSON_BYTES)
        else:
            del leaf[position]
    for canonical in (True, False):
        recognized = _parse_outcome(_parse_canonical, bytes(leaf), canonical)
        strict = _parse_outcome(trust._parse_entry_json, bytes(leaf), canonical)
        assert recognized == strict


_RECOGNIZED_LEAF = GOV.issuer_add(kid="near").leaf_bytes()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"", b""),
        (b'"not_before":', b'"not_before":0'),  # a leading zero
        (b'"time":1', b'"time":-1'),
        (b'"time":1800000000', b'"time":1800000000.0'),
        (b'"time":1800000000', b'"time":18e8'),
        (b'"time":1800000000', b'"time":NaN'),
        (b'"kid":"near"', b'"kid": "near"'),
        (b'"kid":"near"', b'"kid":"ne\\u0061r"'),
        (b'"kid":"near"', b'"kid":"ne\\/ar"'),
        (b'"kid":"near"', b'"kid":"ne\\"ar"'),
        (b'"kid":"near"', b'"kid":"ne\tar"'),
        (b'"kid":"near"', b'"kid":"n\xc3\xa9ar"'),
        (b'"kid":"near"', b'"kid":"n\xc3ar"'),
        (b'"kid":"near"', b'"kid":"near","kid":"near"'),
        (b'"kid":"near"', b'"kid":["near"]'),
        (b'"kid":"near"', b'"kid":"near","kie":1'),
        (b'"kty":"OKP"', b'"kty":"OKP","y":"AA"'),
        (b'"kty":"OKP"', b'"kty":"EC"'),
        (b'"vct":["', b'"vct":["","'),
        (b'"vct":["', b'"vct":[ "'),
        (b'"signatures":["', b'"signatures":["",'),
        (b'"signatures":["', b'"signatures":["a","'),
        (b'"signatures":["', b'"signatures":["a.b\\".c","'),
        (b'"]}', b'"] }'),
        (b'"]}', b'"]}\n'),
    ],
)
def test_leaves_near_the_commonest_shape_parse_as_the_json_parser_would(
    old: bytes, new: bytes
) -> None:
    assert old in _RECOGNIZED_LEAF
    leaf = _RECOGNIZED_LEAF.replace(old, new, 1)
    outcomes = [_parse_outcome(_parse_canonical, leaf, canonical) for canonical in (True, False)]
    for canonical, outcome in zip((True, False), outcomes, strict=True):
        assert outcome == _parse_outcome(trust._parse_entry_json, leaf, canonical)
    assert (outcomes[0][0] == "entry") is (old == new)  # only the leaf itself is canonical


@pytest.mark.parametrize(
    "members",
    [{"use": "sig"}, {"kid": "k"}, {"alg": "EdDSA"}, {"d": "AAAA"}, {"key_ops": ["verify"]},
     {"y": "AAAA"}, {"z": "AAAA"}, {"kty": "EC"}, {"crv": "P-256"}, {"x": "AAAA"}],
)  # fmt: skip
def test_signed_leaves_with_other_jwk_members_parse_as_the_json_parser_would(
    members: dict[str, Any],
) -> None:
    event = {**GOV.issuer_add(kid="near").to_json()["event"]}
    event["jwk"] = {**event["jwk"], **members}
    leaf = _signed_leaf(event, ["gov-0"])
    for canonical in (True, False):
        recognized = _parse_outcome(_parse_canonical, leaf, canonical)
        assert recognized == _parse_outcome(trust._parse_entry_json, leaf, canonical)


def test_the_commonest_leaves_are_recognized() -> None:
    ed25519 = GOV.issuer_add()
    p256 = GOV.issuer_add(jwk=_P256_KEY.public_key)
    for entry in (ed25519, p256):
        assert trust._recognize_leaf(entry.leaf_bytes()) is not None
        assert parse_entry(entry.leaf_bytes(), require_canonical=True) == entry
    assert trust._recognize_leaf(GOV.verifier_add().leaf_bytes()) is None
    with_alg = GOV.issuer_add(jwk={**ed25519.to_json()["event"]["jwk"], "alg": "EdDSA"}, kid="k2")
    assert trust._recognize_leaf(with_alg.leaf_bytes()) is None
    assert parse_entry(with_alg.leaf_bytes(), require_canonical=True) == with_alg


# --- governance ---------------------------------------------------------------------------


def test_governance_config_validation_and_json() -> None:
    config = GOV.config
    assert GovernanceConfig.from_json(json_loads(json_dumps(config.to_json()))) == config
    key = GOV.keys["gov-0"].public_key
    with pytest.raises(UsageError):
        GovernanceConfig({"a": key, "b": key}, 1)  # one key under two kids
    with pytest.raises(UsageError):
        GovernanceConfig({"a": key}, 2)
    with pytest.raises(UsageError):
        GovernanceConfig({"a": key}, 0)
    jwk = key.to_jwk()
    bad_configs: list[object] = [
        {},
        {"quorum": 1},
        {"quorum": 1, "keys": {}},
        {"quorum": "1", "keys": {"a": jwk}},
        {"quorum": 2, "keys": {"a": jwk}},
    ]
    for bad in bad_configs:
        with pytest.raises(MalformedError):
            GovernanceConfig.from_json(bad)


def test_quorum_of_distinct_current_governance_keys() -> None:
    state = GOV.genesis()
    event = GOV.event("verifier.revoke", verifier=VERIFIER, revoked_at=NOW)
    one = GOV.sign(event, ["gov-0"])
    assert reason_of(lambda: state.apply(one)) is ReasonCode.GOVERNANCE_QUORUM_NOT_MET
    # A signature by a key that is not a governance key counts for nothing.
    outsider = sign_event(event, [("gov-0", GOV.keys["gov-0"]), ("other", private_key("other"))])
    assert reason_of(lambda: state.apply(outsider)) is ReasonCode.GOVERNANCE_QUORUM_NOT_MET
    # Two distinct governance keys meet the quorum, in any order.
    two = GOV.sign(GOV.issuer_add().to_json()["event"], ["gov-2", "gov-0"])
    assert state.apply(two).size == 1


def test_forged_or_misdirected_governance_signatures() -> None:
    state = GOV.genesis()
    entry = GOV.issuer_add().to_json()
    # A governance kid with a signature by another key.
    forged = sign_event(entry["event"], [("gov-0", GOV.keys["gov-0"]), ("gov-1", private_key("x"))])
    assert reason_of(lambda: state.apply(forged)) is ReasonCode.GOVERNANCE_SIGNATURE_INVALID
    # A flipped signature byte.
    token = entry["signatures"][1]
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    bad = parse_entry({"event": entry["event"], "signatures": [entry["signatures"][0], flipped]})
    assert reason_of(lambda: state.apply(bad)) is ReasonCode.GOVERNANCE_SIGNATURE_INVALID
    # Valid signatures over another event: refused while parsing, whoever signed.
    other = GOV.issuer_add(kid="k2").signatures
    swapped = {"event": entry["event"], "signatures": list(other)}
    assert reason_of(lambda: parse_entry(swapped)) is ReasonCode.GOVERNANCE_SIGNATURE_INVALID
    outsider = sign_event(GOV.issuer_add(kid="k3").to_json()["event"], [("x", private_key("x"))])
    mixed_payloads = {
        "event": entry["event"],
        "signatures": [*entry["signatures"], *outsider.signatures],
    }
    assert reason_of(lambda: parse_entry(mixed_payloads)) is (
        ReasonCode.GOVERNANCE_SIGNATURE_INVALID
    )
    # A tampered event under the original signatures.
    tampered = {
        "event": dict(entry["event"], not_after=NOW + 10**6),
        "signatures": entry["signatures"],
    }
    assert reason_of(lambda: parse_entry(tampered)) is ReasonCode.GOVERNANCE_SIGNATURE_INVALID
    # An ES256 signature under an EdDSA governance kid: the algorithm is pinned to the key.
    es = PrivateKey.generate("ES256")
    mixed = sign_event(entry["event"], [("gov-0", GOV.keys["gov-0"]), ("gov-1", es)])
    assert reason_of(lambda: state.apply(mixed)) is ReasonCode.GOVERNANCE_SIGNATURE_INVALID


def test_es256_governance_keys() -> None:
    es = PrivateKey.generate("ES256")
    ed = private_key("ed")
    config = GovernanceConfig({"es": es.public_key, "ed": ed.public_key}, 2)
    event = GOV.event("verifier.revoke", verifier=VERIFIER, revoked_at=NOW)
    entry = sign_event(GOV.verifier_add().to_json()["event"], [("es", es), ("ed", ed)])
    state = TrustState.genesis(config).apply(entry)
    assert state.verifier(VERIFIER) is not None
    assert state.apply(sign_event(event, [("ed", ed), ("es", es)])).size == 2


def test_governance_key_add_and_remove() -> None:
    gov = Governance(n=2, quorum=2, label="rotation")
    newcomer = private_key("rotation/new")
    add = gov.sign(gov.event("governance.key.add", kid="gov-new", jwk=newcomer.public_key))
    state = gov.genesis().apply(add)
    assert set(state.governance.keys) == {"gov-0", "gov-1", "gov-new"}
    gov.keys["gov-new"] = newcomer
    # The new key counts from the next entry on.
    state = state.apply(gov.issuer_add(kids=["gov-new", "gov-1"]))
    remove = gov.sign(gov.event("governance.key.remove", kid="gov-0"), ["gov-0", "gov-1"])
    state = state.apply(remove)
    assert set(state.governance.keys) == {"gov-1", "gov-new"} and state.governance.quorum == 2
    # A removed key's signature no longer counts.
    late = gov.issuer_add(kid="k2", kids=["gov-0", "gov-1"])
    assert reason_of(lambda: state.apply(late)) is ReasonCode.GOVERNANCE_QUORUM_NOT_MET
    # Removing another key would leave fewer keys than the quorum.
    below = gov.sign(gov.event("governance.key.remove", kid="gov-1"), ["gov-1", "gov-new"])
    assert reason_of(lambda: state.apply(below)) is ReasonCode.GOVERNANCE_QUORUM_NOT_MET
    # ...unless the same entry lowers the quorum.
    lowered = gov.sign(
        gov.event("governance.key.remove", kid="gov-1", quorum=1), ["gov-1", "gov-new"]
    )
    state = state.apply(lowered)
    assert state.governance.quorum == 1
    assert state.apply(gov.issuer_add(kid="k3", kids=["gov-new"])).size == state.size + 1


def test_governance_changes_that_are_refused() -> None:
    gov = Governance(n=3, quorum=2, label="refused")
    state = gov.genesis()
    again = gov.sign(gov.event("governance.key.add", kid="gov-2", jwk=private_key("z").public_key))
    assert reason_of(lambda: state.apply(again)) is ReasonCode.DUPLICATE_KID
    same_key = gov.sign(
        gov.event("governance.key.add", kid="gov-x", jwk=gov.keys["gov-2"].public_key)
    )
    assert reason_of(lambda: state.apply(same_key)) is ReasonCode.DUPLICATE_KID
    too_high = gov.sign(
        gov.event("governance.key.add", kid="gov-y", jwk=private_key("y").public_key, quorum=5)
    )
    assert reason_of(lambda: state.apply(too_high)) is ReasonCode.GOVERNANCE_QUORUM_NOT_MET
    unknown = gov.sign(gov.event("governance.key.remove", kid="gov-9"))
    assert reason_of(lambda: state.apply(unknown)) is ReasonCode.KEY_UNKNOWN
    # A removed kid is never reused.
    removed = state.apply(gov.sign(gov.event("governance.key.remove", kid="gov-2")))
    readd = gov.sign(gov.event("governance.key.add", kid="gov-2", jwk=private_key("w").public_key))
    assert reason_of(lambda: removed.apply(readd)) is ReasonCode.DUPLICATE_KID


# --- issuers ------------------------------------------------------------------------------


def test_issuer_key_lifecycle_and_refusals() -> None:
    state = fold(GOV.genesis(), GOV.issuer_add("k1"), GOV.issuer_add("k2"), GOV.issuer_add("k3"))
    key = state.issuer_key(ISSUER, "k1")
    assert key is not None and key.status == "active" and key.added_index == 0
    assert key.public_key == private_key(f"issuer/{ISSUER}/k1").public_key
    assert key.jwk == key.public_key.to_jwk()
    assert (
        state.issuer_key(ISSUER, "nope") is None
        and state.issuer_key("https://x.example", "k1") is None
    )
    state = fold(
        state,
        GOV.issuer_change("issuer.key.retire", "k1", NOW - 10),
        GOV.issuer_change("issuer.key.revoke", "k2", NOW - 5),
        GOV.issuer_change("issuer.key.retire", "k3"),
        GOV.issuer_change("issuer.key.revoke", "k3"),  # a retired key may still be revoked
    )
    retired, revoked, both = (state.issuer_key(ISSUER, k) for k in ("k1", "k2", "k3"))
    assert retired is not None and retired.retired_at == NOW - 10 and retired.retired_index == 3
    assert revoked is not None and revoked.revoked_at == NOW - 5 and revoked.status == "revoked"
    assert both is not None and both.status == "revoked" and both.retired_at == NOW
    assert [k.kid for k in state.issuer_keys(ISSUER)] == ["k1", "k2", "k3"]
    for kid in ("k1", "k2", "k3"):  # active, retired or revoked: a kid is never reused
        assert (
            reason_of(lambda kid=kid: state.apply(GOV.issuer_add(kid))) is ReasonCode.DUPLICATE_KID
        )
    cases = [
        (GOV.issuer_change("issuer.key.retire", "k1", issuer=OTHER), ReasonCode.ISSUER_UNKNOWN),
        (GOV.issuer_change("issuer.key.revoke", "k1", issuer=OTHER), ReasonCode.ISSUER_UNKNOWN),
        (GOV.issuer_change("issuer.key.retire", "k9"), ReasonCode.KEY_UNKNOWN),
        (GOV.issuer_change("issuer.key.revoke", "k9"), ReasonCode.KEY_UNKNOWN),
        (GOV.issuer_change("issuer.key.retire", "k1"), ReasonCode.KEY_RETIRED),
        (GOV.issuer_change("issuer.key.retire", "k2"), ReasonCode.KEY_REVOKED),
        (GOV.issuer_change("issuer.key.revoke", "k2"), ReasonCode.KEY_REVOKED),
    ]
    for entry, reason in cases:
        with pytest.raises(VerificationError) as caught:
            state.apply(entry)
        assert caught.value.reason is reason
        assert caught.value.detail.startswith(f"entry {state.size}: ")
    # The same kid under another issuer is a different key.
    assert state.apply(GOV.issuer_add("k1", issuer="https://other.example")).size == state.size + 1


def test_check_issuer_key_semantics() -> None:
    state = fold(
        GOV.genesis(),
        GOV.issuer_add("active", vct=[RESIDENCY, YOUTH]),
        GOV.issuer_add("retired"),
        GOV.issuer_add("revoked"),
        GOV.issuer_change("issuer.key.retire", "retired", NOW - 100),
        GOV.issuer_change("issuer.key.revoke", "revoked", NOW + 500),
    )

    def check(
        kid: str, *, vct: str = RESIDENCY, iat: int | None = NOW - 200, now: int = NOW
    ) -> ReasonCode | None:
        try:
            key = state.check_issuer_key(ISSUER, kid, vct, iat, now)
        except VerificationError as error:
            return error.reason
        assert key.kid == kid
        return None

    assert check("active") is None and check("active", vct=YOUTH) is None
    assert check("active", now=NOW - 1000) is None and check("active", now=NOW + 1000) is None
    assert check("active", now=NOW - 1001) is ReasonCode.KEY_OUTSIDE_WINDOW
    assert check("active", now=NOW + 1001) is ReasonCode.KEY_OUTSIDE_WINDOW
    assert check("retired", vct=YOUTH) is ReasonCode.KEY_NOT_ACCREDITED_FOR_VCT
    # Retired: credentials issued before the retirement stay valid, later ones do not.
    assert check("retired", iat=NOW - 101) is None
    assert check("retired", iat=NOW - 100) is ReasonCode.KEY_RETIRED
    assert check("retired", iat=None) is ReasonCode.KEY_RETIRED
    # Revoked: every credential, whenever issued and whatever revoked_at says.
    assert check("revoked", iat=NOW - 999) is ReasonCode.KEY_REVOKED
    assert check("unknown") is ReasonCode.KEY_UNKNOWN
    with pytest.raises(VerificationError) as caught:
        state.check_issuer_key("https://nobody.example", "active", RESIDENCY, NOW, NOW)
    assert caught.value.reason is ReasonCode.ISSUER_UNKNOWN


# --- verifiers ----------------------------------------------------------------------------


def test_verifier_accreditation_and_requests() -> None:
    state = GOV.genesis().apply(GOV.verifier_add())
    accredited = state.verifier(VERIFIER)
    assert accredited is not None and accredited.purpose == "Youth allowance counter"
    assert accredited.allowed_for(YOUTH) == AllowedCredential(
        YOUTH, (("programme",), ("periods", None, "start"))
    )

    def check(
        vct: str, paths: list[list[Any]], now: int = NOW, client: str = VERIFIER
    ) -> ReasonCode | None:
        try:
            state.check_verifier_request(client, vct, paths, now)
        except VerificationError as error:
            return error.reason
        return None

    assert check(RESIDENCY, []) is None
    assert check(RESIDENCY, [["address", "locality"], ["age_over_19"]]) is None
    assert check(RESIDENCY, [["address", "locality", "x"]]) is None  # beneath an accredited path
    assert check(RESIDENCY, [["address"]]) is ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED
    assert check(RESIDENCY, [["address", "region"]]) is ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED
    assert check(RESIDENCY, [["birth_date"]]) is ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED
    assert check(YOUTH, [["periods", 0, "start"], ["periods", None, "start"]]) is None
    assert check(YOUTH, [["periods", 0, "end"]]) is ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED
    assert check(YOUTH, [["periods", "0", "start"]]) is ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED
    assert check("https://other.example/vct", []) is ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED
    assert check(RESIDENCY, [], now=NOW + 1001) is ReasonCode.KEY_OUTSIDE_WINDOW
    assert check(RESIDENCY, [], client="https://nobody.example") is ReasonCode.VERIFIER_UNKNOWN


def test_claim_path_coverage_with_wildcards() -> None:
    allowed = AllowedCredential(RESIDENCY, (("a", None), ("b", 1), ("c",)))
    assert (
        allowed.covers(("a", 0)) and allowed.covers(("a", None)) and allowed.covers(("a", 3, "x"))
    )
    assert not allowed.covers(("a", "x"))  # null selects array elements, not members
    assert (
        allowed.covers(("b", 1))
        and not allowed.covers(("b", None))
        and not allowed.covers(("b", 2))
    )
    assert not allowed.covers(("b",)) and allowed.covers(("c", "d", None))
    assert not allowed.covers(("a", True))  # type: ignore[arg-type]


def test_verifier_revocation_and_reaccreditation() -> None:
    state = GOV.genesis().apply(GOV.verifier_add())
    revoked = state.apply(GOV.verifier_revoke())
    with pytest.raises(VerificationError) as caught:
        revoked.check_verifier_request(VERIFIER, RESIDENCY, [], NOW)
    assert caught.value.reason is ReasonCode.VERIFIER_REVOKED
    assert reason_of(lambda: revoked.apply(GOV.verifier_revoke())) is ReasonCode.VERIFIER_REVOKED
    assert reason_of(lambda: state.apply(GOV.verifier_revoke("https://x.example"))) is (
        ReasonCode.VERIFIER_UNKNOWN
    )
    # Re-accreditation needs a new kid and lifts the revocation.
    assert reason_of(lambda: revoked.apply(GOV.verifier_add("v1"))) is ReasonCode.DUPLICATE_KID
    back = revoked.apply(GOV.verifier_add("v2"))
    again = back.verifier(VERIFIER)
    assert again is not None and again.kid == "v2" and again.revoked_at is None
    assert again.kids == frozenset({"v1", "v2"})
    assert back.check_verifier_request(VERIFIER, RESIDENCY, [["age_over_19"]], NOW) == again
    assert reason_of(lambda: back.apply(GOV.verifier_add("v1"))) is ReasonCode.DUPLICATE_KID


# --- the state as a whole -------------------------------------------------------------------


def test_replayed_event_ids_are_refused() -> None:
    entry = GOV.issuer_add()
    state = GOV.genesis().apply(entry)
    assert reason_of(lambda: state.apply(entry)) is ReasonCode.REGISTRY_ENTRY_DUPLICATE
    # Another event reusing the id.
    event = GOV.event("verifier.revoke", verifier=VERIFIER, revoked_at=NOW)
    event["id"] = entry.event.id
    assert reason_of(lambda: state.apply(GOV.sign(event))) is ReasonCode.REGISTRY_ENTRY_DUPLICATE


def test_apply_returns_a_new_state_and_failures_change_nothing() -> None:
    genesis = GOV.genesis()
    first = genesis.apply(GOV.issuer_add("k1"))
    second = first.apply(GOV.verifier_add())
    assert (genesis.size, first.size, second.size) == (0, 1, 2)
    assert genesis.issuer_key(ISSUER, "k1") is None and genesis.root == EMPTY_ROOT
    assert first.verifier(VERIFIER) is None and second.verifier(VERIFIER) is not None
    before = second.to_json()
    with pytest.raises(VerificationError):
        second.apply(GOV.issuer_add("k1"))
    assert second.to_json() == before
    with pytest.raises(UsageError):
        TrustState()
    with pytest.raises(UsageError):
        genesis.apply({"event": {}})  # type: ignore[arg-type]


def test_listings_and_summary_hold_public_data_only() -> None:
    state = fold(
        GOV.genesis(),
        GOV.issuer_add("k1", issuer="https://b.example"),
        GOV.issuer_add("k1"),
        GOV.issuer_add("k2"),
        GOV.verifier_add(),
        GOV.verifier_add("v1", verifier="https://a.example"),
    )
    assert [(k.issuer, k.kid) for k in state.issuers()] == [
        ("https://b.example", "k1"),
        (ISSUER, "k1"),
        (ISSUER, "k2"),
    ]
    assert [v.verifier for v in state.verifiers()] == ["https://a.example", VERIFIER]
    summary = state.to_json()
    assert summary["size"] == 5 and summary["governance"] == GOV.config.to_json()
    assert summary["issuers"][0]["entries"] == [0] and summary["verifiers"][1]["entries"] == [3]
    text = json_dumps(summary)
    assert '"d"' not in text
    assert repr(state).startswith("TrustState(size=5")
    assert "gov-0" in repr(GOV.issuer_add())


ENTRY_KINDS = st.sampled_from(["issuer", "retire", "revoke", "verifier", "verifier-revoke", "junk"])


@settings(max_examples=25)
@given(st.lists(ENTRY_KINDS, max_size=24))
def test_state_root_is_the_rfc9162_root_of_the_folded_leaves(kinds: list[str]) -> None:
    gov = Governance(n=1, quorum=1, label="root-prop")
    state = gov.genesis()
    leaves: list[bytes] = []
    for i, kind in enumerate(kinds):
        if kind == "issuer":
            entry = gov.issuer_add(f"k{i}")
        elif kind in ("retire", "revoke"):
            entry = gov.issuer_change(f"issuer.key.{kind}", f"k{i - 1}")
        elif kind == "verifier":
            entry = gov.verifier_add(f"v{i}")
        elif kind == "verifier-revoke":
            entry = gov.verifier_revoke()
        else:
            entry = gov.issuer_change("issuer.key.retire", "none")
        try:
            state = state.apply(entry)
        except VerificationError:
            continue
        leaves.append(entry.leaf_bytes())
    assert state.size == len(leaves)
    assert state.root == root_from_leaf_hashes([leaf_hash(leaf) for leaf in leaves])


@settings(max_examples=60)
@given(st.lists(st.binary(min_size=1, max_size=8), max_size=40), st.data())
def test_compact_ranges_extend_to_the_same_root(leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(leaf) for leaf in leaves]
    split = data.draw(st.integers(0, len(hashes)))
    first = compact_range_append((), 0, hashes[:split])
    assert compact_range_root(first) == root_from_leaf_hashes(hashes[:split])
    both = compact_range_append(first, split, hashes[split:])
    assert compact_range_root(both) == root_from_leaf_hashes(hashes)
    assert len(both) == len(hashes).bit_count()
    with pytest.raises(UsageError):
        compact_range_append(first, 2 * split + 1, [])


class _Collider:
    """Keys with a chosen hash, to drive the trie into full-hash collisions."""

    def __init__(self, name: str, digest: int) -> None:
        self.name, self.digest = name, digest

    def __hash__(self) -> int:
        return self.digest

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Collider) and other.name == self.name

    def __repr__(self) -> str:
        return self.name


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers()), max_size=200), st.booleans())
def test_persistent_map_matches_a_dict_and_keeps_old_versions(
    operations: list[tuple[int, int]], colliding: bool
) -> None:
    versions: list[tuple[trust._PersistentMap[Any, int], dict[Any, int]]] = []
    current: trust._PersistentMap[Any, int] = trust._PersistentMap()
    expected: dict[Any, int] = {}
    for key_number, value in operations:
        key: Any = _Collider(f"k{key_number}", key_number % 3) if colliding else f"k{key_number}"
        versions.append((current, dict(expected)))
        current = current.set(key, value)
        expected[key] = value
    versions.append((current, expected))
    for mapping, snapshot in [*versions[:: max(1, len(versions) // 10)], versions[-1]]:
        assert len(mapping) == len(snapshot)
        assert dict(mapping.items()) == snapshot
        for key, value in snapshot.items():
            assert mapping.get(key) == value and key in mapping
    assert current.get("absent") is None


def _trie_shape(node: tuple[Any, ...]) -> Any:
    return tuple(
        None if child is None else dict(child) if type(child) is dict else _trie_shape(child)
        for child in node
    )


@settings(max_examples=60)
@given(
    st.lists(st.tuples(st.integers(0, 300), st.integers()), max_size=120),
    st.lists(st.dictionaries(st.integers(0, 400), st.integers(), max_size=150), max_size=4),
    st.booleans(),
)
def test_persistent_map_update_equals_one_set_at_a_time(
    first: list[tuple[int, int]], batches: list[dict[int, int]], colliding: bool
) -> None:
    def key(number: int) -> Any:
        return _Collider(f"k{number}", number % 5) if colliding else f"k{number}"

    base: trust._PersistentMap[Any, int] = trust._PersistentMap()
    for number, value in first:
        base = base.set(key(number), value)
    before = dict(base.items())
    stepped, merged = base, base
    for batch in batches:
        items = {key(number): value for number, value in batch.items()}
        for item_key, value in items.items():
            stepped = stepped.set(item_key, value)
        merged = merged.update(items)
        assert len(merged) == len(stepped)
        assert dict(merged.items()) == dict(stepped.items())
        # The same trie, not merely the same items: bulk merges keep buckets small.
        assert _trie_shape(merged._root) == _trie_shape(stepped._root)
    assert dict(base.items()) == before  # older versions untouched
    assert base.update({}) is base


@settings(max_examples=50)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=8,
    )
)
def test_canonical_json_matches_the_encoding_module(value: Any) -> None:
    assert trust._canonical_json(value) == json_dumps_canonical(value)


def test_entry_text_that_is_not_unicode_is_malformed() -> None:
    with pytest.raises(MalformedError) as caught:
        parse_entry("\ud800")
    assert caught.value.reason is ReasonCode.REGISTRY_ENTRY_MALFORMED


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Exercise the threaded and process paths without signing thousands of entries.
    monkeypatch.setattr(trust, "_CHUNK", 8)
    monkeypatch.setattr(trust, "_PROCESS_CHUNK", 8)


class _CountingCheckers(trust.Checkers):
    """The real checker processes, counting the batches they answered."""

    answered = 0

    def submit(self, checks: Sequence[Any]) -> Callable[[], bytes | None]:
        outcomes = super().submit(checks)

        def counted() -> bytes | None:
            answer = outcomes()
            _CountingCheckers.answered += answer is not None
            return answer

        return counted


@pytest.fixture(params=["threads", "processes"])
def signature_checkers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Fold through threads, or through checker processes (every fold large enough)."""
    if request.param == "processes":
        monkeypatch.setattr(trust, "_PROCESS_MIN_ENTRIES", 1)
        monkeypatch.setattr(trust, "Checkers", _CountingCheckers)
        _CountingCheckers.answered = 0
    return str(request.param)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("workers", [0, 1, 3])
def test_apply_many_equals_chained_apply(workers: int, signature_checkers: str) -> None:
    gov = Governance(n=2, quorum=1, label="many")
    genesis = gov.genesis()
    newcomer = private_key("many/new")
    entries = [gov.issuer_add(f"k{i}") for i in range(10)]
    # A governance change mid-chunk: later entries are signed by a key the workers never saw,
    # and the removed key's signatures must stop counting at once.
    entries.append(
        gov.sign(gov.event("governance.key.add", kid="gov-new", jwk=newcomer.public_key))
    )
    entries.append(gov.sign(gov.event("governance.key.remove", kid="gov-0"), ["gov-1"]))
    gov.keys["gov-new"] = newcomer
    removed = gov.keys.pop("gov-0")
    entries += [gov.issuer_add(f"n{i}", kids=["gov-new"]) for i in range(6)]
    entries += [gov.verifier_add(f"v{i}", verifier=f"https://v{i}.example") for i in range(8)]
    chained = fold(genesis, *entries)
    # A list is sized: with processes, the fold knows it is large enough for them.
    batched = genesis.apply_many(list(entries), workers=workers)
    assert batched.to_json() == chained.to_json() and batched.root == chained.root
    if signature_checkers == "processes" and workers:
        assert _CountingCheckers.answered == -(-len(entries) // trust._PROCESS_CHUNK)
    # A removed key's signature after the removal fails the same way in both.
    gov.keys["gov-0"] = removed
    stale = gov.issuer_add("late", kids=["gov-0"])
    errors = []
    for run in (lambda: fold(genesis, *entries, stale),
                lambda: genesis.apply_many([*entries, stale], workers=workers)):  # fmt: skip
        with pytest.raises(VerificationError) as caught:
            run()
        errors.append((caught.value.reason, caught.value.detail))
    assert errors[0] == errors[1]
    assert errors[0][0] is ReasonCode.GOVERNANCE_QUORUM_NOT_MET
    assert errors[0][1].startswith(f"entry {len(entries)}: ")


@pytest.mark.usefixtures("small_chunks", "signature_checkers")
def test_apply_many_reports_the_first_bad_signature() -> None:
    gov = Governance(n=1, quorum=1, label="many-bad")
    entries = [gov.issuer_add(f"k{i}") for i in range(20)]
    event = entries[13].to_json()
    forged = sign_event(event["event"], [("gov-0", private_key("forger"))])
    entries[13] = forged
    with pytest.raises(VerificationError) as caught:
        gov.genesis().apply_many(entries, workers=2)
    assert caught.value.reason is ReasonCode.GOVERNANCE_SIGNATURE_INVALID
    assert caught.value.detail.startswith("entry 13: ")
    with pytest.raises(UsageError):
        gov.genesis().apply_many([*entries[:12], "x"], workers=2)  # type: ignore[list-item]


class _DyingCheckers(trust.Checkers):
    """Checker processes killed as soon as they start: every batch comes back unchecked."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        for child in self._children:
            child.kill()
            child.wait()


@pytest.mark.usefixtures("small_chunks")
def test_a_dead_checker_process_costs_time_never_a_wrong_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trust, "_PROCESS_MIN_ENTRIES", 1)
    monkeypatch.setattr(trust, "Checkers", _DyingCheckers)
    gov = Governance(n=1, quorum=1, label="many-dead")
    entries = [gov.issuer_add(f"k{i}") for i in range(20)]
    folded = gov.genesis().apply_many(entries, workers=1)
    assert folded.to_json() == fold(gov.genesis(), *entries).to_json()
    entries[13] = sign_event(entries[13].to_json()["event"], [("gov-0", private_key("forger"))])
    with pytest.raises(VerificationError) as caught:
        gov.genesis().apply_many(entries, workers=1)
    assert caught.value.reason is ReasonCode.GOVERNANCE_SIGNATURE_INVALID
    assert caught.value.detail.startswith("entry 13: ")


def test_event_ids_use_base64url() -> None:
    assert trust._EVENT_ID.fullmatch(b64url_encode(bytes(range(16))))
    for n in (15, 17):
        assert not trust._EVENT_ID.fullmatch(b64url_encode(bytes(n)))
