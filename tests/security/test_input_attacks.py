"""Hostile input: sizes, encodings, JSON edge cases, schema-invalid claims, QR payloads.

Every parser of the presentation path must answer with a reason code of its own, never a
foreign exception, within its size bounds. Each attack is presented to the verdict checklist
and must fail the named check with its code. JSON the issuer signs (payloads, disclosures) is
signed by the agency, so only the parsing is under attack.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from civic.credentials import RESIDENCY_VCT, get_type
from civic.encoding import b64url_encode, json_dumps
from civic.errors import ReasonCode
from civic.jose import MAX_JWS_LENGTH
from civic.qr import MAX_PACKED_CHARS, b45encode, pack
from civic.sdjwt import MAX_DISCLOSURES, MAX_PRESENTATION_LENGTH, disclosure_digest
from civic.verdict import Result
from tests.security.forge import (
    Build,
    Case,
    Parts,
    Scene,
    attacks_of,
    case,
    disclosure,
    rebind,
    run_core,
    verify_core,
)

C = ReasonCode
SALT = "c2FsdC1mb3ItaW5wdXQ"


def _prefix(text: str) -> str:
    return text[: text.rfind("~") + 1]


# --- sizes --------------------------------------------------------------------------------------


def _oversized_presentation(scene: Scene) -> str:
    text = scene.valid()
    filler = disclosure(SALT, "filler", "x" * (MAX_PRESENTATION_LENGTH - len(text) + 10))
    return scene.bind(text.split("~", 1)[0], [filler])


def _large_disclosure(scene: Scene) -> str:
    """One 200 KB disclosure, inside the presentation limit: parsed once, then refused."""
    parts = scene.parts()
    big = disclosure(SALT, "given_name", "김" * 50_000)
    return scene.bind(parts.jws, [*parts.encoded("age_over_19"), big])


def _too_many_disclosures(scene: Scene) -> str:
    parts = scene.parts()
    tiny = disclosure("s", "n", 1)
    return scene.bind(parts.jws, [tiny] * (MAX_DISCLOSURES + 1))


def _oversized_issuer_jws(scene: Scene) -> str:
    def edit(payload: dict[str, Any]) -> None:
        payload["padding"] = "x" * MAX_JWS_LENGTH

    return scene.resign(edit)


# --- encodings ----------------------------------------------------------------------------------


def _segment(index: int, value: str) -> Build:
    """The issuer JWS with segment ``index`` replaced by ``value``."""

    def build(scene: Scene) -> str:
        jws, rest = scene.valid().split("~", 1)
        segments = jws.split(".")
        segments[index] = value
        return ".".join(segments) + "~" + rest

    return build


def _signed_payload(raw: bytes) -> Build:
    """The agency signs exactly these payload bytes."""

    def build(scene: Scene) -> str:
        parts = scene.parts()
        return scene.assemble(raw, parts.encoded("age_over_19"))

    return build


def _signed_header(raw: bytes) -> Build:
    def build(scene: Scene) -> str:
        return scene.resign(header=raw)

    return build


def _payload_with(name: str, raw: str) -> Build:
    """The agency's payload bytes with member ``name`` set to ``raw`` JSON text (replacing the
    member's value in place if the payload has it, else spliced in first)."""

    def build(scene: Scene) -> str:
        parts = scene.parts()
        body = json_dumps(parts.payload)
        if name in parts.payload:
            member = f'"{name}":{json_dumps(parts.payload[name])}'
            assert body.count(member) == 1
            body = body.replace(member, f'"{name}":{raw}')
        else:
            body = "{" + f'"{name}":{raw},' + body[1:]
        return scene.assemble(body.encode(), parts.encoded("age_over_19"))

    return build


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _deep_disclosure(scene: Scene) -> str:
    parts = scene.parts()
    encoded = b64url_encode(f'["{SALT}","address",{_nested(100)}]'.encode())
    parts.payload["_sd"].append(disclosure_digest(encoded))
    return scene.assemble(parts.payload, [*parts.encoded("age_over_19"), encoded])


def _kb_payload(raw: str) -> Build:
    def build(scene: Scene) -> str:
        text = scene.valid()
        return _prefix(text) + scene.kb_jwt(_prefix(text), payload=raw.encode())

    return build


def _kb_iat(value: Any) -> Build:
    def build(scene: Scene) -> str:
        return rebind(scene, scene.valid(), iat=value)

    return build


def _unverified_header_text(**claims: Any) -> Build:
    """The attacker's own signature (none is needed to reach the audit) over a payload whose
    iss, vct or header kid carries ``claims``."""

    def build(scene: Scene) -> str:
        edits = dict(claims)
        kid = edits.pop("kid", scene.city.kid)
        return scene.resign(
            lambda payload: payload.update(edits),
            header=scene.issuer_header(kid=kid),
            signer=scene.attacker,
        )

    return build


# --- schema -------------------------------------------------------------------------------------


def _schema(change: dict[str, Any], reveal: list[tuple[str, ...]]) -> Build:
    def build(scene: Scene) -> str:
        claims = get_type(RESIDENCY_VCT).example_claims()
        claims.update(change)
        return scene.present(scene.issue(claims=claims), reveal)

    return build


# --- QR -----------------------------------------------------------------------------------------


def _packed(edit: Any) -> Build:
    def build(scene: Scene) -> str:
        return str(edit(pack(scene.valid())))

    return build


def _deflate_bomb(_scene: Scene) -> str:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(b"\x00" * (4 * 1024 * 1024)) + compressor.flush()
    return "CW1:" + b45encode(body)


def _packed_wrong_audience(scene: Scene) -> str:
    return pack(rebind(scene, scene.valid(), aud="bar.example"))


def _truncate_packed(text: str) -> str:
    return text[:-30] if (len(text) - 30 - 4) % 3 != 1 else text[:-31]


CASES: tuple[Case, ...] = (
    case("presentation_oversized", C.INPUT_TOO_LARGE, "parse",
         "a presentation past 256 KiB", _oversized_presentation),
    case("disclosure_oversized_unreferenced", C.DISCLOSURE_UNREFERENCED, "disclosures",
         "one 200 KB disclosure inside the limit, referenced by no digest", _large_disclosure),
    case("too_many_disclosures", C.INPUT_TOO_LARGE, "parse",
         "more than 1024 disclosures", _too_many_disclosures),
    case("issuer_jws_oversized", C.INPUT_TOO_LARGE, "parse",
         "an issuer-signed JWT past 64 KiB", _oversized_issuer_jws),
    case("malformed_base64_payload", C.MALFORMED_BASE64, "parse",
         "characters outside base64url in the payload segment", _segment(1, "!!!!")),
    case("malformed_base64_impossible_length", C.MALFORMED_BASE64, "parse",
         "a payload segment of 4k+1 characters", _segment(1, "eyJhIjoxfQAAA")),
    case("non_ascii_in_jws", C.MALFORMED_BASE64, "parse",
         "Hangul inside the signature segment", _segment(2, "서명")),
    case("malformed_json_payload", C.MALFORMED_JSON, "parse",
         "a signed payload that is truncated JSON", _signed_payload(b'{"iss": "https://')),
    case("payload_not_an_object", C.MALFORMED_JSON, "parse",
         "a signed payload that is a JSON array", _signed_payload(b'["iss", "vct"]')),
    case("payload_trailing_data", C.MALFORMED_JSON, "parse",
         "a second JSON value after the payload object", _signed_payload(b'{"iss":"x"} {}')),
    case("invalid_utf8_payload", C.MALFORMED_UTF8, "parse",
         "a 0xFF byte inside a payload string",
         _signed_payload(b'{"iss":"https://mapo.seoul.example\xff"}')),
    case("overlong_utf8_header", C.MALFORMED_UTF8, "parse",
         "an overlong UTF-8 encoding of '/' in the header",
         _signed_header(b'{"alg":"EdDSA","typ":"dc+sd-jwt","kid":"\xc0\xaf"}')),
    case("lone_surrogate_in_header_kid", C.MALFORMED_UTF8, "parse",
         "a kid of one unpaired surrogate escape, which has no UTF-8 form",
         _signed_header(b'{"alg":"EdDSA","typ":"dc+sd-jwt","kid":"\\ud800"}')),
    case("lone_surrogate_in_payload_claim", C.MALFORMED_UTF8, "parse",
         "a signed claim ending in an unpaired low surrogate escape",
         _payload_with("locality", '"Mapo-gu\\udc00"')),
    case("nul_in_unverified_iss", C.MALFORMED_SD_JWT, "parse",
         "an iss with a NUL, which PostgreSQL text refuses (the audit insert failed with a 500)",
         _unverified_header_text(iss="https://mapo.seoul.example\x00")),
    case("newline_in_unverified_iss", C.MALFORMED_SD_JWT, "parse",
         "an iss with a newline and a fake audit line after it, for the verifier's log",
         _unverified_header_text(
             iss="https://x.example\nINFO: verdict valid kind=offline policy=bar-entry")),
    case("control_character_in_vct", C.MALFORMED_SD_JWT, "parse",
         "an escape character (terminal control sequence) in vct",
         _unverified_header_text(vct="urn:civic:vct:residency:1\x1b[2J")),
    case("nul_in_kid", C.MALFORMED_SD_JWT, "parse",
         "a kid with a NUL", _unverified_header_text(kid="mapo-2026-1\x00")),
    case("deep_nesting_payload", C.NESTING_TOO_DEEP, "parse",
         "a claim nested 100 arrays deep", _payload_with("deep", _nested(100))),
    case("nesting_past_the_recursion_limit", C.NESTING_TOO_DEEP, "parse",
         "40,000 open brackets in a signed payload", _signed_payload(b"[" * 40_000)),
    case("deep_nesting_in_disclosure", C.MALFORMED_DISCLOSURE, "parse",
         "a disclosed value nested 100 arrays deep", _deep_disclosure),
    case("huge_float_exp", C.NUMBER_OUT_OF_RANGE, "parse",
         "exp 1e400, which a lax parser reads as infinity: never expires",
         _payload_with("exp", "1e400")),
    case("huge_integer_digits", C.NUMBER_OUT_OF_RANGE, "parse",
         "an integer of 5000 digits", _payload_with("big", "9" * 5000)),
    case("huge_float_kb_iat", C.KB_JWT_MALFORMED, "key_binding",
         "KB-JWT iat -1e400 (negative infinity to a lax parser)",
         _kb_payload('{"iat":-1e400,"aud":"counter.mapo.seoul.example"}')),
    case("integer_2_pow_80_kb_iat", C.KB_JWT_IAT_IN_FUTURE, "key_binding",
         "KB-JWT iat 2**80", _kb_iat(2**80)),
    case("nan_token", C.MALFORMED_JSON, "parse",
         "NaN as a claim value", _payload_with("exp", "NaN")),
    case("infinity_token", C.MALFORMED_JSON, "parse",
         "Infinity as exp", _payload_with("exp", "Infinity")),
    case("negative_infinity_token", C.MALFORMED_JSON, "parse",
         "-Infinity as nbf", _payload_with("nbf", "-Infinity")),
    case("schema_invalid_claim_type", C.SCHEMA_INVALID, "schema",
         'residency with age_over_19 "yes" instead of a boolean',
         _schema({"age_over_19": "yes"}, [("age_over_19",)])),
    case("schema_invalid_address_type", C.SCHEMA_INVALID, "schema",
         "residency with address as a string",
         _schema({"address": "Seoul Mapo-gu"}, [("age_over_19",), ("address",)])),
    case("schema_invalid_birth_date", C.SCHEMA_INVALID, "schema",
         "residency with an impossible birth date",
         _schema({"birth_date": "1998-02-30"}, [("age_over_19",), ("birth_date",)])),
    case("presentation_without_separator", C.MALFORMED_SD_JWT, "parse",
         "a bare JWS with no '~'", lambda scene: scene.valid().split("~", 1)[0]),
    case("presentation_empty", C.MALFORMED_SD_JWT, "parse", "an empty string", lambda _s: ""),
    case("qr_bad_prefix", C.MALFORMED_SD_JWT, "parse",
         "packed text under a foreign prefix is not packed, and no SD-JWT either",
         _packed(lambda t: "XX1:" + t[4:])),
    case("qr_unsupported_version", C.QR_UNSUPPORTED_VERSION, "parse",
         "packed text claiming version 2", _packed(lambda t: "CW2:" + t[4:])),
    case("qr_truncated", C.MALFORMED_QR_PAYLOAD, "parse",
         "packed text with its end cut off", _packed(_truncate_packed)),
    case("qr_oversized", C.INPUT_TOO_LARGE, "parse",
         "packed text past 128 Ki characters", lambda _s: "CW1:" + "0" * MAX_PACKED_CHARS),
    case("qr_malformed_base45", C.MALFORMED_QR_PAYLOAD, "parse",
         "lowercase letters, outside the base45 alphabet", lambda _s: "CW1:abcdef"),
    case("qr_base45_out_of_range", C.MALFORMED_QR_PAYLOAD, "parse",
         '"GGW", a base45 triple above 65535', lambda _s: "CW1:GGW"),
    case("qr_deflate_bomb", C.INPUT_TOO_LARGE, "parse",
         "a few KB of DEFLATE that inflate to 4 MiB", _deflate_bomb),
    case("qr_packing_hides_nothing", C.KB_JWT_AUD_MISMATCH, "key_binding",
         "a KB-JWT for another verifier, packed: unpacking must not bypass a check",
         _packed_wrong_audience),
)  # fmt: skip

ATTACKS = attacks_of(CASES)


def test_the_builders_leave_honest_input_valid(scene: Scene) -> None:
    parts: Parts = scene.parts()
    for text in (pack(scene.valid()), scene.assemble(parts.payload, parts.encoded("age_over_19"))):
        assert verify_core(scene, text).result is Result.VALID


@pytest.mark.parametrize("attack", CASES, ids=[c.name for c in CASES])
def test_input_attack_is_rejected(scene: Scene, attack: Case) -> None:
    run_core(scene, attack)
