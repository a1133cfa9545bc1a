"""The credential and presentation attacks through the verifier service's ``POST /verify``.

The verifier of tests/services/verifier_deploy.py runs for real (uvicorn in a thread on
127.0.0.1, SQLite stores, a Status List server, a witnessed trust bundle, a fixed clock), its
registry holding the extra keys of :class:`tests.security.forge.Scene`. Every attack of the core
modules (JOSE, SD-JWT, KB-JWT, input) is presented with a fresh challenge nonce and must give
the same verdict reason on the same check as in the core, as a 200; and the attacks on the
endpoint itself (garbage bodies: wrong content type, not JSON, huge, deeply nested, duplicate
members, unpaired surrogates...) must give their error code. No answer may be a 5xx.
"""

from __future__ import annotations

import io
import os
import secrets
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from civic.clock import FixedClock
from civic.encoding import b64std_encode, json_dumps
from civic.errors import ReasonCode
from civic.jose import parse_jws
from civic_service.db import normalise_url
from tests.security import (
    Attack,
    test_input_attacks,
    test_jose_attacks,
    test_kbjwt_attacks,
    test_sdjwt_attacks,
)
from tests.security.forge import Case, Scene, honest_texts
from tests.services.verifier_deploy import STAFF, AppServer, Deployment
from verifier.app import build_services, create_app
from verifier.settings import load_runtime

C = ReasonCode
POLICY = "bar-entry"

CORE_CASES: tuple[Case, ...] = (
    *test_jose_attacks.CASES,
    *test_sdjwt_attacks.CASES,
    *test_kbjwt_attacks.CASES,
    *test_input_attacks.CASES,
)


@dataclass
class Http:
    deployment: Deployment
    scene: Scene
    client: httpx.Client
    limit: int
    backend: str

    @property
    def url(self) -> str:
        return self.deployment.url

    def post(self, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        answer = self.client.post(
            f"{self.url}/verify",
            content=content,
            headers={**STAFF, "Content-Type": "application/json", **(headers or {})},
        )
        assert answer.status_code < 500, (answer.status_code, answer.text[:300])
        return answer

    def get(self, path: str) -> httpx.Response:
        answer = self.client.get(self.url + path, headers=STAFF)
        assert answer.status_code < 500, (answer.status_code, answer.text[:300])
        return answer

    def verify(self, body: dict[str, Any]) -> httpx.Response:
        return self.post(json_dumps(body).encode("utf-8"))

    def challenge(self) -> str:
        answer = self.client.post(f"{self.url}/challenges", headers=STAFF)
        assert answer.status_code == 201, answer.text
        nonce: str = answer.json()["nonce"]
        return nonce


POSTGRES_URL = os.environ.get("CIVIC_TEST_POSTGRES_URL")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def http(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Http]:
    """The verifier on its SQLite stores, and again on PostgreSQL when
    ``CIVIC_TEST_POSTGRES_URL`` is set (PostgreSQL refuses text SQLite takes, e.g. a NUL)."""
    overrides: dict[str, Any] = {}
    if request.param == "postgresql":
        if not POSTGRES_URL:
            pytest.skip("CIVIC_TEST_POSTGRES_URL is not set (the attacks on PostgreSQL stores)")
        overrides = {
            "database_url": POSTGRES_URL,
            "database_schema": f"security_test_{secrets.token_hex(6)}",
        }
    deployment = Deployment.create(tmp_path_factory.mktemp("security") / "verifier")
    scene = Scene.create(deployment.city)
    for uri, token in scene.status_tokens().items():
        deployment.status.tokens[urlsplit(uri).path] = token
    deployment.write_files()  # the trust bundle again, now with the scene's keys
    runtime = load_runtime(deployment.settings(**overrides))
    services = build_services(runtime, now=FixedClock(deployment.city.now))
    try:
        with (
            AppServer(create_app(services), deployment.port),
            httpx.Client(timeout=30) as client,
        ):
            yield Http(deployment, scene, client, runtime.settings.max_body_bytes, request.param)
    finally:
        deployment.close()
        if overrides:
            engine = create_engine(normalise_url(overrides["database_url"]))
            with engine.begin() as connection:
                schema = overrides["database_schema"]
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            engine.dispose()


def _failed(verdict: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["name"], c["reason"]) for c in verdict["checks"] if c["outcome"] == "failed"]


def test_honest_presentations_are_valid_over_http(http: Http) -> None:
    for index in range(len(honest_texts(http.scene))):
        nonce = http.challenge()  # single use: one per presentation
        text = honest_texts(http.scene.with_nonce(nonce))[index]
        verdict = http.verify({"policy": POLICY, "nonce": nonce, "presentation": text}).json()
        assert verdict["result"] == "valid", verdict


@pytest.mark.parametrize("attack", CORE_CASES, ids=[c.name for c in CORE_CASES])
def test_core_attack_over_http(http: Http, attack: Case) -> None:
    nonce = http.challenge()
    text = attack.build(http.scene.with_nonce(nonce))
    body = {"policy": POLICY, "nonce": nonce, "presentation": text}
    if attack.replay:
        first = http.verify(body)
        assert first.status_code == 200 and first.json()["result"] == "valid", first.text
    answer = http.verify(body)
    assert answer.status_code == 200, answer.text[:300]
    verdict = answer.json()
    code = attack.attack.code.value
    assert (verdict["result"], verdict["reason"]) == ("invalid", code), verdict
    assert _failed(verdict) == [(attack.check, code)]
    assert all(not report.get("claims") for report in verdict["credentials"])


def _direct_post(
    http: Http, build: Callable[[Scene], str], *, twice: bool
) -> tuple[httpx.Response, str]:
    """An OpenID4VP request for the policy, answered by the wallet's direct_post with the
    presentation ``build`` makes for the request's nonce (sent ``twice`` for a replay)."""
    created = http.client.post(f"{http.url}/requests", json={"policy": POLICY}, headers=STAFF)
    assert created.status_code == 201, created.text
    request_object = http.client.get(created.json()["request_uri"])
    assert request_object.status_code == 200, request_object.text
    request = parse_jws(request_object.text).payload_json()
    text = build(http.scene.with_nonce(request["nonce"]))
    form = {"vp_token": json_dumps({"residency": [text]}), "state": request["state"]}
    answer = http.client.post(request["response_uri"], data=form)
    if twice:
        assert answer.json() == {"result": "valid"}, answer.text
        answer = http.client.post(request["response_uri"], data=form)
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    return answer, created.json()["id"]


def test_honest_presentation_is_valid_over_direct_post(http: Http) -> None:
    answer, _request_id = _direct_post(http, Scene.valid, twice=False)
    assert answer.json() == {"result": "valid"}


@pytest.mark.parametrize("attack", CORE_CASES, ids=[c.name for c in CORE_CASES])
def test_core_attack_over_direct_post(http: Http, attack: Case) -> None:
    """The same attacks from a wallet, to the unauthenticated OpenID4VP response endpoint:
    ``{"result": "invalid"}`` to the wallet, the reason in the staff's view of the request. A
    replayed response is refused before any check (the request is answered once)."""
    answer, request_id = _direct_post(http, attack.build, twice=attack.replay)
    if attack.replay:
        assert (answer.status_code, answer.json()["error"]) == (409, "request_already_answered")
        return
    assert (answer.status_code, answer.json()) == (200, {"result": "invalid"}), answer.text[:300]
    verdict = http.get(f"/requests/{request_id}").json()["verdict"]
    code = attack.attack.code.value
    assert (verdict["result"], verdict["reason"]) == ("invalid", code), verdict
    assert _failed(verdict) == [(attack.check, code)]
    assert all(not report.get("claims") for report in verdict["credentials"])


# --- attacks on the endpoint itself --------------------------------------------------------------


@dataclass(frozen=True)
class BodyAttack:
    attack: Attack
    status: int
    send: Callable[[Http], httpx.Response]

    @property
    def name(self) -> str:
        return self.attack.name


def _raw(
    content: bytes | Callable[[Http], bytes], **headers: str
) -> Callable[[Http], httpx.Response]:
    def send(http: Http) -> httpx.Response:
        data = content(http) if callable(content) else content
        return http.post(data, headers)

    return send


def _body(make: Callable[[Http, str], dict[str, Any]]) -> Callable[[Http], httpx.Response]:
    def send(http: Http) -> httpx.Response:
        return http.verify(make(http, http.challenge()))

    return send


def _with_nonce(template: str) -> Callable[[Http], bytes]:
    def content(http: Http) -> bytes:
        return template.replace("NONCE", http.challenge()).encode("utf-8")

    return content


def _oversized(http: Http) -> bytes:
    return b'{"policy":"bar-entry","presentation":"' + b"A" * http.limit + b'"}'


def _unauthenticated(http: Http) -> httpx.Response:
    answer = http.client.post(f"{http.url}/verify", json={"policy": POLICY})
    assert answer.status_code < 500
    return answer


def _valid_text(http: Http, nonce: str) -> str:
    return http.scene.with_nonce(nonce).valid()


def _png_header_only(width: int, height: int) -> str:
    """A PNG whose IHDR claims ``width`` x ``height`` 1-bit pixels, with no image data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    return b64std_encode(png)


def _blank_png() -> str:
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 255).save(buffer, format="PNG")
    return b64std_encode(buffer.getvalue())


def _body_attack(
    name: str,
    code: ReasonCode,
    status: int,
    description: str,
    send: Callable[[Http], httpx.Response],
) -> BodyAttack:
    return BodyAttack(Attack(name, code, "verifier", description), status, send)


BODY_ATTACKS: tuple[BodyAttack, ...] = (
    _body_attack("verify_body_not_json", C.MALFORMED_JSON, 400,
                 "a body that is not JSON", _raw(b"policy=bar-entry&presentation=x")),
    _body_attack("verify_body_form_encoded", C.MALFORMED_JSON, 400,
                 "a form-encoded body under its own content type",
                 _raw(b"policy=bar-entry&nonce=0123456789abcdef",
                      **{"Content-Type": "application/x-www-form-urlencoded"})),
    _body_attack("verify_body_text_plain", C.MALFORMED_JSON, 400,
                 "a text/plain body that is no JSON",
                 _raw(b"hello", **{"Content-Type": "text/plain"})),
    _body_attack("verify_body_empty", C.MALFORMED_JSON, 400, "an empty body", _raw(b"")),
    _body_attack("verify_body_json_array", C.MALFORMED_JSON, 400,
                 "a JSON array where an object goes", _raw(b'[{"policy":"bar-entry"}]')),
    _body_attack("verify_body_oversized", C.INPUT_TOO_LARGE, 413,
                 "a body past max_body_bytes", _raw(_oversized)),
    _body_attack("verify_body_deep_json", C.NESTING_TOO_DEEP, 400,
                 "a body nested 100,000 arrays deep",
                 _raw(b'{"policy":' + b"[" * 100_000 + b"]" * 100_000 + b"}")),
    _body_attack("verify_body_duplicate_members", C.DUPLICATE_JSON_MEMBER, 400,
                 "nonce twice in the body",
                 _raw(_with_nonce('{"policy":"bar-entry","nonce":"NONCE","nonce":"NONCE",'
                                  '"presentation":"x"}'))),
    _body_attack("verify_body_nan", C.MALFORMED_JSON, 400,
                 "NaN in the body", _raw(b'{"policy":"bar-entry","nonce":NaN}')),
    _body_attack("verify_body_huge_float", C.NUMBER_OUT_OF_RANGE, 400,
                 "1e400 in the body", _raw(b'{"policy":"bar-entry","max":1e400}')),
    _body_attack("verify_body_invalid_utf8", C.MALFORMED_UTF8, 400,
                 "a 0xFF byte in the body", _raw(b'{"policy":"bar-entry\xff"}')),
    _body_attack("verify_body_lone_surrogate", C.MALFORMED_UTF8, 400,
                 "an unpaired surrogate escape in the presentation",
                 _raw(_with_nonce('{"policy":"bar-entry","nonce":"NONCE",'
                                  '"presentation":"eyJ\\ud800~"}'))),
    _body_attack("verify_nonce_not_a_string", C.MALFORMED_INPUT, 400,
                 "a numeric nonce", _raw(b'{"policy":"bar-entry","nonce":12345678901234567890,'
                                         b'"presentation":"x"}')),
    _body_attack("verify_unknown_policy", C.NOT_FOUND, 404,
                 "a policy this verifier does not serve",
                 _body(lambda _h, n: {"policy": "../../etc/passwd", "nonce": n,
                                      "presentation": "x"})),
    _body_attack("verify_audience_of_another_verifier", C.KB_JWT_AUD_MISMATCH, 400,
                 "an audience this verifier does not answer for",
                 _body(lambda h, n: {"policy": POLICY, "nonce": n, "audience": "bar.example",
                                     "presentation": _valid_text(h, n)})),
    _body_attack("verify_without_api_key", C.UNAUTHORIZED, 401,
                 "no staff API key", _unauthenticated),
    _body_attack("verify_presentation_not_a_string", C.MALFORMED_INPUT, 200,
                 "presentation as an object",
                 _body(lambda _h, n: {"policy": POLICY, "nonce": n, "presentation": {"a": 1}})),
    _body_attack("verify_too_many_presentations", C.MALFORMED_INPUT, 200,
                 "a hundred presentations in one body",
                 _body(lambda h, n: {"policy": POLICY, "nonce": n,
                                     "presentations": [_valid_text(h, n)] * 100})),
    _body_attack("verify_two_inputs_at_once", C.MALFORMED_INPUT, 200,
                 "presentation and image_png together",
                 _body(lambda h, n: {"policy": POLICY, "nonce": n, "image_png": "AAAA",
                                     "presentation": _valid_text(h, n)})),
    _body_attack("verify_image_not_base64", C.MALFORMED_INPUT, 200,
                 "image_png that is not base64",
                 _body(lambda _h, n: {"policy": POLICY, "nonce": n, "image_png": "%%%%"})),
    _body_attack("verify_image_not_a_png", C.MALFORMED_INPUT, 200,
                 "image_png holding a GIF header",
                 _body(lambda _h, n: {"policy": POLICY, "nonce": n, "image_png": "R0lGODlh"})),
    _body_attack("verify_image_pixel_bomb", C.INPUT_TOO_LARGE, 200,
                 "a PNG header claiming 100,000 x 100,000 pixels",
                 _body(lambda _h, n: {"policy": POLICY, "nonce": n,
                                      "image_png": _png_header_only(100_000, 100_000)})),
    _body_attack("verify_image_without_qr", C.QR_NOT_FOUND, 200,
                 "a blank PNG",
                 _body(lambda _h, n: {"policy": POLICY, "nonce": n, "image_png": _blank_png()})),
    _body_attack("verify_nonce_with_nul", C.MALFORMED_INPUT, 400,
                 "a presentation bound to a nonce with a NUL (PostgreSQL refused the spend, so the "
                 "code depended on the store)",
                 _body(lambda h, _n: {"policy": POLICY, "nonce": "0123456789abcdef\x00",
                                      "presentation": h.scene.with_nonce(
                                          "0123456789abcdef\x00").valid()})),
    _body_attack("request_id_with_nul", C.NOT_FOUND, 404,
                 "a request id with a NUL (PostgreSQL refused it with a 500)",
                 lambda h: h.get("/requests/%00")),
    _body_attack("request_object_id_with_nul", C.NOT_FOUND, 404,
                 "a wallet fetching the request object of an id with a NUL",
                 lambda h: h.get("/requests/x%00/object")),
    _body_attack("response_to_request_id_with_nul", C.NOT_FOUND, 404,
                 "a wallet's direct_post to a request id with a NUL",
                 lambda h: h.client.post(h.url + "/responses/%00",
                                         data={"vp_token": "{}", "state": "x"})),
    _body_attack("nonce_never_issued", C.NONCE_UNKNOWN, 200,
                 "a well-formed presentation bound to a nonce the verifier never issued",
                 _body(lambda h, _n: {"policy": POLICY, "nonce": "made-up-by-the-holder-0000",
                                      "presentation": h.scene.with_nonce(
                                          "made-up-by-the-holder-0000").valid()})),
)  # fmt: skip

ATTACKS: tuple[Attack, ...] = tuple(b.attack for b in BODY_ATTACKS)


@pytest.mark.parametrize("attack", BODY_ATTACKS, ids=[b.name for b in BODY_ATTACKS])
def test_endpoint_attack(http: Http, attack: BodyAttack) -> None:
    answer = attack.send(http)
    assert answer.status_code == attack.status, answer.text[:300]
    document = answer.json()
    code = attack.attack.code.value
    if attack.status == 200:
        assert (document["result"], document["reason"]) == ("invalid", code), document
    else:
        assert document["error"] == code, document
