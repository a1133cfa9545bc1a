"""Valid inputs for every parser, built once, deterministically, with the real components.

Mutations start from these; the ``resign_*`` helpers put a mutated JSON body back under a valid
signature so that fuzzing reaches the checks behind the signature.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from civic.checkpoint import Checkpoint, CosignatureSigner, sign_checkpoint
from civic.clock import FixedClock
from civic.encoding import b64url_decode, b64url_encode, json_dumps, json_loads
from civic.jose import PrivateKey, Signer
from civic.logsync import export_bundle
from civic.note import NoteSigner, sign_note
from civic.qr import pack
from civic.sdjwt import KB_JWT_TYP, KeyBindingExpectation, create_presentation, sd_hash
from civic.sdjwtvc import issue_credential
from civic.statuslist import StatusList, sign_status_list_token
from civic.witness import encode_add_checkpoint_request
from tests.unit.test_logsync import World
from tests.unit.test_trust import NOW, Governance

ISSUER = "https://district.seoul.example"
VCT = "https://credentials.civic.example/residency"
AUDIENCE = "https://counter.seoul.example"
NONCE = "n-0S6_WzA2Mj"
STATUS_URI = "https://status.seoul.example/lists/7"
CLOCK = FixedClock(NOW)
POLICIES = Path(__file__).resolve().parents[2] / "verifier" / "policies"


def _seed(label: str) -> bytes:
    return hashlib.sha256(f"fuzz/{label}".encode()).digest()


def _random(label: str) -> Any:
    counter = [0]

    def random(n: int) -> bytes:
        counter[0] += 1
        return hashlib.sha256(f"{label}/{counter[0]}".encode()).digest()[:n]

    return random


ISSUER_KEY = PrivateKey.from_ed25519_seed(_seed("issuer"))
HOLDER_KEY = PrivateKey.from_ed25519_seed(_seed("holder"))
P256_KEY = PrivateKey.generate("ES256", random=_random("p256"))
KB = KeyBindingExpectation(audience=AUDIENCE, nonce=NONCE)

SUBJECT = {
    "given_name": "Minji",
    "address": {"locality": "Jongno-gu", "region": "Seoul"},
    "age_over_19": True,
    "periods": [{"start": 2024}, {"start": 2025}],
}


def sign_raw(header: Any, payload: bytes, key: Signer) -> str:
    """A compact JWS over any header and payload (``alg`` as given, even a wrong one)."""
    encoded_header = json_dumps(header).encode("utf-8", "surrogatepass")
    signing_input = b64url_encode(encoded_header) + "." + b64url_encode(payload)
    return signing_input + "." + b64url_encode(key.sign(signing_input.encode("ascii")))


def sign_json(header: Any, claims: Any, key: PrivateKey) -> str:
    return sign_raw(header, json_dumps(claims).encode("utf-8", "surrogatepass"), key)


def jws_parts(token: str) -> tuple[dict[str, Any], Any]:
    header, payload, _ = token.split(".")
    return json_loads(b64url_decode(header)), json_loads(b64url_decode(payload))


@cache
def credential() -> str:
    """An issued SD-JWT VC (every subject claim disclosable), without key binding."""
    return issue_credential(
        issuer=ISSUER,
        vct=VCT,
        subject_claims=SUBJECT,
        signer=ISSUER_KEY,
        kid="k1",
        holder_key=HOLDER_KEY.public_key,
        lifetime=3600,
        status={"status_list": {"idx": 3, "uri": STATUS_URI}},
        now=CLOCK,
        random=_random("credential"),
        decoys=(1, 2),
    )


@cache
def presentation() -> str:
    """A presentation of some of :func:`credential`'s claims, with a KB-JWT."""
    return create_presentation(
        credential(),
        reveal=[("address", "locality"), ("age_over_19",), ("periods", 1, "start")],
        holder=HOLDER_KEY,
        audience=AUDIENCE,
        nonce=NONCE,
        now=CLOCK,
    )


def kb_jwt(prefix: str, claims: Any | None = None, header: Any | None = None) -> str:
    """A KB-JWT by the holder over ``prefix`` (its correct sd_hash unless ``claims`` is given)."""
    if claims is None:
        claims = {"iat": NOW, "aud": AUDIENCE, "nonce": NONCE, "sd_hash": sd_hash(prefix)}
    return sign_json(header or {"alg": "EdDSA", "typ": KB_JWT_TYP}, claims, HOLDER_KEY)


@cache
def status_list() -> StatusList:
    values = StatusList(64, 2)
    for index, status in ((1, 1), (3, 2), (9, 3), (63, 1)):
        values.set(index, status)
    return values


@cache
def status_token() -> str:
    return sign_status_list_token(
        status_list(),
        subject_uri=STATUS_URI,
        signer=ISSUER_KEY,
        kid="k1",
        now=CLOCK,
        ttl=300,
        lifetime=3600,
    )


NOTE_SIGNER = NoteSigner("log.civic.example", _seed("note"))
OTHER_NOTE_SIGNER = NoteSigner("other.civic.example", _seed("other-note"))
WITNESSES = [
    CosignatureSigner(f"w{i}.civic.example", _seed(f"witness{i}"), FixedClock(NOW - i))
    for i in range(2)
]
CHECKPOINT = Checkpoint("log.civic.example", 7, hashlib.sha256(b"root").digest())


@cache
def note() -> bytes:
    return sign_note("line one\nline two\n", [NOTE_SIGNER, OTHER_NOTE_SIGNER])


@cache
def cosigned_checkpoint() -> bytes:
    return sign_checkpoint(CHECKPOINT, [NOTE_SIGNER, *WITNESSES])


@cache
def add_checkpoint_body() -> bytes:
    proof = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    return encode_add_checkpoint_request(3, proof, sign_checkpoint(CHECKPOINT, [NOTE_SIGNER]))


@cache
def governance() -> Governance:
    return Governance(label="fuzz")


@cache
def world() -> World:
    """A log of five entries with a checkpoint cosigned by its witnesses (tests.unit)."""
    built = World("fuzz")
    built.grow(5)
    return built


@cache
def bundle() -> dict[str, Any]:
    built = world()
    return export_bundle(built.sync(retain_entries=True))


@cache
def packed_presentation() -> str:
    return pack(presentation())


def policy_text(name: str) -> str:
    return (POLICIES / name).read_text("utf-8")


@cache
def grown_world() -> tuple[World, Any]:
    """A log that grew from three entries (a client's snapshot) to five since."""
    built = World("fuzz-grown")
    built.grow(3)
    previous = built.sync()
    built.grow(2)
    return built, previous
