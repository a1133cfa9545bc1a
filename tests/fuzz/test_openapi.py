"""schemathesis against the OpenAPI of each service: registry, witness, issuer, verifier.

The registry, witness and issuer do not publish their OpenAPI documents (``openapi_url=None``):
every schema is taken in-process from ``app.openapi()``, and the app served on a loopback
port. Operations that read a raw body (the schema cannot describe it from the route) get a
request body from :data:`BODIES`, so that the fuzzer sends one. Every response must not be a
server error, must have a declared status code, and must match its declared schema. Admin and staff
operations run twice: without credentials (401, or the framework's refusal of a body it cannot
parse) and with a valid key, which lets the fuzzed input reach the code behind the
authentication. The issuer's wallet endpoints (token, nonce, credential) are plain Starlette
routes outside the OpenAPI document; :data:`WALLET_PATHS` describes them for the fuzzer, with
OAuth error bodies left undescribed (only the no-server-error check applies to them).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from civic.clock import FixedClock
from civic.encoding import json_dumps, json_dumps_canonical, json_loads
from civic.qr import pack
from civic.trust import EVENT_TYP
from issuer.testing import LocalIssuer
from registry.app import create_app as create_registry_app
from registry.settings import RegistrySettings, load_runtime
from tests.fuzz.harness import EXAMPLES, EXPLORING
from tests.fuzz.mutate import mutated_json, mutated_text
from tests.fuzz.samples import sign_raw
from tests.services.registry_harness import (
    RegistryFiles,
    ThreadServer,
    init_registry,
    issuer_key_add,
    post_entry,
    wait_for_checkpoint,
    witness_server,
)
from tests.services.verifier_deploy import API_KEY, AppServer, Deployment
from verifier.app import build_services
from verifier.app import create_app as create_verifier_app
from verifier.settings import load_runtime as load_verifier_runtime

OPENAPI_EXAMPLES = int(os.environ.get("CIVIC_FUZZ_API_EXAMPLES", "0")) or (200 if EXPLORING else 25)
API = settings(
    max_examples=OPENAPI_EXAMPLES,
    deadline=None,
    derandomize=not EXPLORING,
    suppress_health_check=list(HealthCheck),
)
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]

# Request bodies of the operations that read them raw, by "METHOD /path".
BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "POST /entries": (
        "application/json",
        {
            "type": "object",
            "properties": {
                "event": {
                    "type": "object",
                    "properties": {
                        "type": {"enum": ["issuer.key.add", "verifier.add", "issuer.key.revoke"]},
                        "id": {"type": "string"},
                        "time": {"type": "integer"},
                        "kid": {"type": "string"},
                    },
                },
                "signatures": {"type": "array", "items": {"type": "string"}},
            },
        },
    ),
    "POST /add-checkpoint": ("text/plain", {"type": "string"}),
    "POST /requests": (
        "application/json",
        {"type": "object", "properties": {"policy": {"type": "string"}}},
    ),
    "POST /responses/{request_id}": (
        "application/x-www-form-urlencoded",
        {
            "type": "object",
            "properties": {"vp_token": {"type": "string"}, "state": {"type": "string"}},
        },
    ),
    "POST /verify": (
        "application/json",
        {
            "type": "object",
            "properties": {
                "policy": {"enum": ["bar-entry", "pharmacy", "youth-allowance-counter", "x"]},
                "nonce": {"type": "string"},
                "audience": {"type": "string"},
                "presentation": {"type": "string"},
                "presentations": {"type": "array", "items": {"type": "string"}},
                "image_png": {"type": "string"},
            },
        },
    ),
}


_OAUTH_ANSWER = {"default": {"description": "An OAuth answer or error"}}
WALLET_PATHS: dict[str, Any] = {
    "/token": {
        "post": {
            "requestBody": {
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "grant_type": {
                                    "enum": [
                                        "urn:ietf:params:oauth:grant-type:pre-authorized_code",
                                        "authorization_code",
                                    ]
                                },
                                "pre-authorized_code": {"type": "string"},
                                "tx_code": {"type": "string"},
                            },
                        }
                    }
                }
            },
            "responses": _OAUTH_ANSWER,
        }
    },
    "/nonce": {"post": {"responses": _OAUTH_ANSWER}},
    "/credential": {
        "post": {
            "parameters": [{"name": "Authorization", "in": "header", "schema": {"type": "string"}}],
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "credential_configuration_id": {"type": "string"},
                                "proofs": {
                                    "type": "object",
                                    "properties": {
                                        "jwt": {"type": "array", "items": {"type": "string"}}
                                    },
                                },
                            },
                        }
                    }
                }
            },
            "responses": _OAUTH_ANSWER,
        }
    },
}


@dataclass
class Service:
    name: str
    app: FastAPI
    url: str
    headers: dict[str, str]
    protected: set[str] = field(default_factory=set)  # "METHOD /path" needing credentials
    context: Any = None  # what the service was built from (registry files, verifier deployment)

    def schema(self) -> Any:
        document = copy.deepcopy(self.app.openapi())
        if self.name == "issuer":
            document["paths"].update(copy.deepcopy(WALLET_PATHS))
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                body = BODIES.get(f"{method.upper()} {path}")
                if body is not None and "requestBody" not in operation:
                    media_type, schema = body
                    operation["requestBody"] = {"content": {media_type: {"schema": schema}}}
        loaded = schemathesis.openapi.from_dict(document)
        loaded.config.update(base_url=self.url)
        return loaded


_FRAMEWORK_REFUSALS = {"invalid_request", "malformed_input", "input_too_large"}


def _label(case: Any) -> str:
    return f"{case.method.upper()} {case.path}"


@pytest.fixture(scope="module")
def registry_files(tmp_path_factory: pytest.TempPathFactory) -> RegistryFiles:
    return init_registry(
        tmp_path_factory.mktemp("fuzz-registry") / "data", "--governance-keys", "2"
    )


@pytest.fixture(scope="module")
def registry_service(registry_files: RegistryFiles) -> Iterator[Service]:
    runtime = load_runtime(RegistrySettings(data_dir=registry_files.data_dir))
    app = create_registry_app(runtime)
    with ThreadServer(app) as server:
        # One accredited issuer key, so that entries, proofs and key lookups have data to serve.
        added = post_entry(server.url, registry_files.admin_token, issuer_key_add(registry_files))
        assert added.status_code == 201, added.text
        wait_for_checkpoint(server.url, 1)
        headers = {"Authorization": f"Bearer {registry_files.admin_token}"}
        yield Service("registry", app, server.url, headers, {"POST /entries"}, registry_files)


@pytest.fixture(scope="module")
def witness_service(
    registry_files: RegistryFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    server, _vkey = witness_server(tmp_path_factory.mktemp("fuzz-witness"), registry_files.log_vkey)
    with server:
        yield Service("witness", server._server.config.app, server.url, {})


@pytest.fixture(scope="module")
def issuer_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with LocalIssuer(tmp_path_factory.mktemp("fuzz-issuer") / "data") as issuer:
        protected = {
            f"{method.upper()} {path}"
            for path, operations in issuer.app.openapi()["paths"].items()
            for method in operations
            if path.startswith("/admin/")
        }
        headers = {"Authorization": f"Bearer {issuer.admin_key}"}
        yield Service("issuer", issuer.app, issuer.url, headers, protected)


@pytest.fixture(scope="module")
def verifier_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    deployment = Deployment.create(tmp_path_factory.mktemp("fuzz-verifier") / "verifier")
    runtime = load_verifier_runtime(deployment.settings())
    app = create_verifier_app(build_services(runtime, now=FixedClock(deployment.city.now)))
    protected = {
        "GET /policies",
        "POST /requests",
        "GET /requests/{request_id}",
        "POST /challenges",
        "POST /verify",
    }
    try:
        with AppServer(app, deployment.port):
            headers = {"Authorization": f"Bearer {API_KEY}"}
            yield Service("verifier", app, deployment.url, headers, protected, deployment)
    finally:
        deployment.close()


def _operations(service: Service, protected_only: bool = False) -> list[Any]:
    operations = [result.ok() for result in service.schema().get_all_operations()]
    if protected_only:
        operations = [
            op for op in operations if f"{op.method.upper()} {op.path}" in service.protected
        ]
    assert operations, f"no operations found in the {service.name} schema"
    return operations


def _fuzz_operations(
    service: Service, *, authenticated: bool, protected_only: bool = False
) -> None:
    """Every operation, with valid (positive) and invalid (negative) requests."""
    for operation in _operations(service, protected_only):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @API
            @given(operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                _run(service, case, authenticated=authenticated)

            try:
                run()
            except Unsatisfiable:
                # Nothing to make invalid: the operation takes no parameters and no body.
                assert mode is GenerationMode.NEGATIVE
            except Exception as error:
                error.add_note(
                    f"{service.name}: {operation.method.upper()} {operation.path} ({mode.value})"
                )
                raise


def _run(service: Service, case: Any, *, authenticated: bool) -> None:
    EXAMPLES[f"openapi {service.name} {_label(case)}"] += 1
    headers = dict(case.headers or {})
    protected = _label(case) in service.protected
    if authenticated and protected:
        headers.update(service.headers)
    else:
        headers.pop("Authorization", None)
    response = case.call_and_validate(base_url=service.url, headers=headers, checks=CHECKS)
    if protected and not authenticated:
        # 401, or the framework's refusal of a body it cannot parse at all (FastAPI parses a
        # declared body before it runs the authentication dependency); never anything that
        # depends on the data behind the credentials.
        assert response.status_code in (401, 400, 413), f"{_label(case)} without credentials"
        if response.status_code != 401:
            assert response.json()["error"] in _FRAMEWORK_REFUSALS, response.text


def test_registry_api(registry_service: Service) -> None:
    _fuzz_operations(registry_service, authenticated=True)


def test_registry_api_without_credentials(registry_service: Service) -> None:
    _fuzz_operations(registry_service, authenticated=False, protected_only=True)


def test_witness_api(witness_service: Service) -> None:
    _fuzz_operations(witness_service, authenticated=True)


def test_issuer_api(issuer_service: Service) -> None:
    _fuzz_operations(issuer_service, authenticated=True)


def test_issuer_api_without_credentials(issuer_service: Service) -> None:
    _fuzz_operations(issuer_service, authenticated=False, protected_only=True)


def test_verifier_api(verifier_service: Service) -> None:
    _fuzz_operations(verifier_service, authenticated=True)


def test_verifier_api_without_credentials(verifier_service: Service) -> None:
    _fuzz_operations(verifier_service, authenticated=False, protected_only=True)


# --- valid requests, mutated: deeper than a schema can describe -----------------------------

MUTATED = settings(API, max_examples=OPENAPI_EXAMPLES * 4)


def _no_server_error(answer: httpx.Response) -> None:
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert set(answer.json()) == {"error", "detail"}, answer.text


def test_registry_entries_resigned_after_mutation(registry_service: Service) -> None:
    """Mutated events signed by the governance quorum: the sequencer's checks, over HTTP."""
    files: RegistryFiles = registry_service.context
    keys = files.governance_keys()
    valid = json_loads(issuer_key_add(files, kid="fuzz").leaf_bytes())["event"]

    @MUTATED
    @given(mutated_json(valid))
    def run(event: Any) -> None:
        EXAMPLES["openapi registry POST /entries (re-signed mutations)"] += 1
        payload = json_dumps_canonical(event).encode("utf-8", "surrogatepass")
        signatures = [
            sign_raw({"alg": key.alg, "kid": kid, "typ": EVENT_TYP}, payload, key)
            for kid, key in keys
        ]
        body = b'{"event":' + payload + b',"signatures":' + json_dumps(signatures).encode() + b"}"
        _no_server_error(post_entry(registry_service.url, files.admin_token, body))

    run()


def test_verifier_verify_mutated_presentations(verifier_service: Service) -> None:
    """A valid presentation for a fresh nonce, mutated, plain and QR-packed, to POST /verify."""
    deployment: Deployment = verifier_service.context
    city = deployment.city
    with httpx.Client(timeout=30, headers=verifier_service.headers) as client:
        challenge = client.post(f"{verifier_service.url}/challenges")
        assert challenge.status_code == 201, challenge.text
        nonce = challenge.json()["nonce"]
        presentation = city.present(city.issue(), nonce=nonce, at=city.now)

        @MUTATED
        @given(
            st.sampled_from([presentation, pack(presentation)]).flatmap(mutated_text),
            st.sampled_from(["bar-entry", "pharmacy"]),
        )
        def run(text: str, policy: str) -> None:
            EXAMPLES["openapi verifier POST /verify (mutated presentations)"] += 1
            body = {"policy": policy, "nonce": nonce, "presentation": text}
            answer = client.post(
                f"{verifier_service.url}/verify",
                content=json_dumps(body).encode("utf-8", "surrogatepass"),
                headers={"Content-Type": "application/json"},
            )
            _no_server_error(answer)
            if answer.status_code == 200:
                assert answer.json()["result"] in ("valid", "invalid", "undetermined")

        run()
