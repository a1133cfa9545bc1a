"""Crafting credential and presentation attacks by hand, where the product's signer refuses.

A :class:`Scene` is the city of tests/unit/verifier_city.py (its accredited agency key, its
holder, its status list) with two more accredited keys the algorithm and issuer confusion
attacks need: a P-256 key of the same agency and a key of a second issuer. Attacks start from a
credential the agency really issued, split it (:meth:`Scene.parts`), change what they attack,
re-sign with whichever key the attack calls for (:func:`raw_jws` signs any header and payload
bytes, duplicate members and all) and bind it again with a fresh KB-JWT over the new prefix, so
that only the attacked part is wrong.

A :class:`Case` is one catalogue entry mounted on the verdict checklist: the attack, the check
that must fail, and how to build the presentation. The core modules run the cases through
:func:`civic.verdict.verify_presentation`; tests/security/test_verifier_http_attacks.py runs
them again through ``POST /verify``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from civic.credentials import RESIDENCY_VCT
from civic.encoding import b64url_encode, json_dumps
from civic.errors import ReasonCode
from civic.jose import PrivateKey, Signer
from civic.policy import parse_policy
from civic.sdjwt import Disclosure, parse_sd_jwt, sd_hash
from civic.sdjwtvc import VC_TYP
from civic.statuslist import StatusList
from civic.verdict import Outcome, Result, Verdict, verify_presentation
from tests.security import Attack
from tests.unit.verifier_city import (
    CLIENT_ID,
    ISSUER,
    City,
    DictStatus,
    NonceBook,
    StateTrust,
)

NONCE = "n-0S6_WzA2Mj-counter-nonce"
P256_KID = "mapo-2026-p256"
OTHER_ISSUER = "https://gangnam.seoul.example"
OTHER_KID = "gangnam-2026-1"
KB_TYP = "kb+jwt"

BAR = parse_policy(
    {
        "id": "bar-entry",
        "credentials": [
            {
                "id": "residency",
                "vct": RESIDENCY_VCT,
                "claims": [{"path": ["age_over_19"], "equals": True}],
            }
        ],
    }
)

DROP = object()
"""A claim override that removes the claim."""


def _bytes(value: Mapping[str, Any] | bytes) -> bytes:
    return value if isinstance(value, bytes) else json_dumps(value).encode("utf-8")


def raw_jws(
    header: Mapping[str, Any] | bytes,
    payload: Mapping[str, Any] | bytes,
    signer: Signer | Callable[[bytes], bytes] | None,
) -> str:
    """A compact JWS over exactly these header and payload bytes (no ``alg`` added, nothing
    checked); ``signer=None`` gives an empty signature."""
    signing_input = b64url_encode(_bytes(header)) + "." + b64url_encode(_bytes(payload))
    if signer is None:
        signature = b""
    elif callable(signer):
        signature = signer(signing_input.encode("ascii"))
    else:
        signature = signer.sign(signing_input.encode("ascii"))
    return signing_input + "." + b64url_encode(signature)


def disclosure(*content: Any) -> str:
    """An encoded disclosure of ``[salt, name, value]`` or ``[salt, value]``."""
    return b64url_encode(json_dumps(list(content)).encode("utf-8"))


def with_overrides(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for name, value in overrides.items():
        if value is DROP:
            out.pop(name, None)
        else:
            out[name] = value
    return out


@dataclass
class Parts:
    """A credential the agency issued, split for editing."""

    jws: str
    header: dict[str, Any]
    payload: dict[str, Any]
    disclosures: list[Disclosure]

    def named(self, name: str) -> Disclosure:
        return next(d for d in self.disclosures if d.name == name)

    def encoded(self, *names: str) -> list[str]:
        """The encoded disclosures of these top-level claim names, in this order."""
        return [self.named(name).encoded for name in names]


@dataclass
class Scene:
    """The city, the nonce a verifier expects, and the extra keys the attacks use."""

    city: City
    nonce: str = NONCE
    p256: PrivateKey = field(default_factory=lambda: PrivateKey.generate("ES256"))
    other: PrivateKey = field(default_factory=PrivateKey.generate)
    attacker: PrivateKey = field(default_factory=PrivateKey.generate)
    attacker_p256: PrivateKey = field(default_factory=lambda: PrivateKey.generate("ES256"))

    @classmethod
    def create(cls, city: City | None = None) -> Scene:
        """A scene over ``city`` (a new one by default), its extra keys accredited in it."""
        scene = cls(city or City())
        city = scene.city
        city.accredit_issuer(P256_KID, scene.p256, status_base_url=scene.status_base(P256_KID))
        city.accredit_issuer(
            OTHER_KID,
            scene.other,
            issuer=OTHER_ISSUER,
            status_base_url=scene.status_base(OTHER_KID),
        )
        for kid in (P256_KID, OTHER_KID):
            city.status_lists[scene.status_uri(kid)] = StatusList(1024, 2)
        return scene

    def status_base(self, kid: str) -> str:
        """Each extra key publishes its own status list, signed by itself."""
        return f"{self.city.status_base}/{kid}"

    def status_uri(self, kid: str) -> str:
        return self.status_base(kid) + "/1"

    def status_tokens(self) -> dict[str, str]:
        """Every status list of the scene, by URI, signed by the key it belongs to."""
        city = self.city
        return {
            city.status_uri: city.status_token(),
            self.status_uri(P256_KID): city.status_token(
                self.status_uri(P256_KID), signer=self.p256
            ),
            self.status_uri(OTHER_KID): city.status_token(
                self.status_uri(OTHER_KID), signer=self.other
            ),
        }

    def with_nonce(self, nonce: str) -> Scene:
        return dataclasses.replace(self, nonce=nonce)

    @property
    def now(self) -> int:
        return self.city.now

    # -- honest material ---------------------------------------------------------------------

    def issue(self, **kwargs: Any) -> str:
        return self.city.issue(**kwargs)

    def present(
        self, credential: str, reveal: Sequence[Any] = (("age_over_19",),), **kw: Any
    ) -> str:
        kw.setdefault("nonce", self.nonce)
        kw.setdefault("at", self.now - 5)
        return self.city.present(credential, list(reveal), **kw)

    def valid(self) -> str:
        return self.present(self.issue())

    def parts(self, **issue: Any) -> Parts:
        issued = self.issue(**issue)
        parsed = parse_sd_jwt(issued)
        return Parts(
            issued.split("~", 1)[0],
            dict(parsed.jws.header),
            dict(parsed.payload),
            list(parsed.disclosures),
        )

    # -- forging -----------------------------------------------------------------------------

    def issuer_header(self, signer: Signer | None = None, **overrides: Any) -> dict[str, Any]:
        alg = (signer or self.city.agency).alg
        return with_overrides({"alg": alg, "typ": VC_TYP, "kid": self.city.kid}, overrides)

    def kb_jwt(
        self,
        prefix: str,
        *,
        header: Mapping[str, Any] | bytes | None = None,
        payload: bytes | None = None,
        signer: Signer | Callable[[bytes], bytes] | None = None,
        **claims: Any,
    ) -> str:
        """A KB-JWT over ``prefix`` by the holder, for this scene's nonce and audience;
        ``claims`` override (or, with :data:`DROP`, remove) its claims."""
        holder = self.city.holder if signer is None else signer
        if header is None:
            alg = holder.alg if not callable(holder) else "EdDSA"
            header = {"alg": alg, "typ": KB_TYP}
        base = {
            "iat": self.now - 5,
            "aud": CLIENT_ID,
            "nonce": self.nonce,
            "sd_hash": sd_hash(prefix),
        }
        body = payload if payload is not None else with_overrides(base, claims)
        return raw_jws(header, body, holder)

    def assemble(
        self,
        payload: Mapping[str, Any] | bytes,
        disclosures: Sequence[str],
        *,
        header: Mapping[str, Any] | bytes | None = None,
        signer: Signer | Callable[[bytes], bytes] | None = None,
        key_binding: bool = True,
    ) -> str:
        """Issuer JWS (by the agency unless ``signer``) + disclosures + a fresh KB-JWT."""
        issuer_signer = self.city.agency if signer is None else signer
        jws = raw_jws(
            header if header is not None else self.issuer_header(), payload, issuer_signer
        )
        prefix = "~".join([jws, *disclosures, ""])
        return prefix + self.kb_jwt(prefix) if key_binding else prefix

    def bind(self, jws: str, disclosures: Sequence[str], **kb_claims: Any) -> str:
        """What a holder can do alone: any disclosures after the issuer's JWS, and a KB-JWT of
        its own over exactly them."""
        prefix = "~".join([jws, *disclosures, ""])
        return prefix + self.kb_jwt(prefix, **kb_claims)

    def resign(self, edit: Callable[[dict[str, Any]], object] | None = None, **kw: Any) -> str:
        """The agency's credential with its payload edited and signed again, disclosing
        ``age_over_19``."""
        parts = self.parts()
        if edit is not None:
            edit(parts.payload)
        return self.assemble(parts.payload, parts.encoded("age_over_19"), **kw)


def rebind(scene: Scene, presentation: str, **kb_claims: Any) -> str:
    """Replace the KB-JWT of ``presentation`` with a fresh one over its prefix."""
    prefix = presentation[: presentation.rfind("~") + 1]
    return prefix + scene.kb_jwt(prefix, **kb_claims)


# --- cases and the core verifier ------------------------------------------------------------


Build = Callable[["Scene"], str]


@dataclass(frozen=True)
class Case:
    """One attack, the check of the verdict that must fail with its code, and its builder."""

    attack: Attack
    check: str
    build: Callable[[Scene], str]
    replay: bool = False
    """Present the built text twice: the first must be valid, the second is the attack."""

    @property
    def name(self) -> str:
        return self.attack.name


def case(
    name: str,
    code: ReasonCode,
    check: str,
    description: str,
    build: Callable[[Scene], str],
    *,
    replay: bool = False,
) -> Case:
    return Case(Attack(name, code, "core", description), check, build, replay)


def attacks_of(cases: Sequence[Case]) -> tuple[Attack, ...]:
    return tuple(case.attack for case in cases)


def verify_core(scene: Scene, text: str, nonces: NonceBook | None = None) -> Verdict:
    city = scene.city
    return verify_presentation(
        text,
        trust=StateTrust(city.state),
        status=DictStatus(scene.status_tokens()),
        policy=BAR,
        audience=CLIENT_ID,
        nonce=scene.nonce,
        consume_nonce=nonces if nonces is not None else NonceBook(),
        now=city.now,
    )


def honest_texts(scene: Scene) -> list[str]:
    """Presentations every key of the scene signs honestly: each must be valid."""
    return [
        scene.valid(),
        scene.present(
            scene.issue(signer=scene.p256, kid=P256_KID, status_uri=scene.status_uri(P256_KID))
        ),
        scene.present(
            scene.issue(
                signer=scene.other,
                kid=OTHER_KID,
                issuer=OTHER_ISSUER,
                status_uri=scene.status_uri(OTHER_KID),
            )
        ),
        scene.resign(),
    ]


def assert_rejected(verdict: Verdict, check: str, code: ReasonCode) -> None:
    """Invalid, with exactly one failed check, ``check``, for ``code``, and no claim values."""
    document = verdict.to_json()
    assert verdict.result is Result.INVALID, document
    failed = [(c.name, c.reason) for c in verdict.checks if c.outcome is Outcome.FAILED]
    assert failed == [(check, code)], document
    assert verdict.reason is code
    assert all(not report.claims for report in verdict.credentials)


def run_core(scene: Scene, case: Case) -> None:
    """Mount ``case`` on the checklist; the same text must give the same answer twice."""
    text = case.build(scene)
    if case.replay:
        nonces = NonceBook()
        first = verify_core(scene, text, nonces)
        assert first.result is Result.VALID, first.to_json()
        assert_rejected(verify_core(scene, text, nonces), case.check, case.attack.code)
        return
    assert_rejected(verify_core(scene, text), case.check, case.attack.code)
    assert_rejected(verify_core(scene, text), case.check, case.attack.code)


__all__ = [
    "BAR",
    "CLIENT_ID",
    "DROP",
    "ISSUER",
    "NONCE",
    "OTHER_ISSUER",
    "OTHER_KID",
    "P256_KID",
    "Build",
    "Case",
    "Parts",
    "Scene",
    "assert_rejected",
    "attacks_of",
    "case",
    "disclosure",
    "honest_texts",
    "raw_jws",
    "rebind",
    "run_core",
    "verify_core",
]
