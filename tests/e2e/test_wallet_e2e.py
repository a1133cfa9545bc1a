"""``civic-wallet`` end to end against the real services on 127.0.0.1.

One city for the whole module (started once: the services take a second or two):

- the registry is ``civic-registry``'s own app over its ``init`` data directory
  (tests/services/registry_harness.py), served by uvicorn;
- the issuer is ``civic-issuer``'s app (:func:`issuer.app.create_app`) whose trust comes from
  that registry over HTTP (:func:`issuer.app.registry_trust`), its key accredited there by a
  governance-signed ``issuer.key.add``; staff create offers through its admin API;
- the verifier is ``civic-verifier``'s app syncing the same registry in the background, its
  request-signing key accredited by ``verifier.add``;
- a second, narrowly accredited verifier ("nosy") is a plain HTTP server that serves request
  objects signed with its accredited key but asking for more than its accreditation, and an
  unaccredited one signs with a key the registry never saw.

The wallet runs through Typer's CliRunner (with the fast test KDF, passed as code), talking
to all of them over real HTTP.
"""

from __future__ import annotations

import base64
import os
import select
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from typer.testing import CliRunner

from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, YOUTH_ALLOWANCE_VCT, get_type
from civic.encoding import b64std_decode, json_dumps, json_loads_object
from civic.jose import PrivateKey, sign_jwt
from civic.sdjwt import parse_sd_jwt
from civic_service.config import token_sha256_hex, write_private_file
from issuer import db as issuer_db
from issuer.admin import create_api_key
from issuer.app import build_context, registry_trust
from issuer.app import create_app as create_issuer_app
from issuer.settings import IssuerSettings
from issuer.settings import load_runtime as load_issuer_runtime
from issuer.testing import ServerThread
from registry.app import create_app as create_registry_app
from registry.settings import RegistrySettings
from registry.settings import load_runtime as load_registry_runtime
from tests.services.registry_harness import (
    ROOT,
    ThreadServer,
    free_port,
    init_registry,
    post_entry,
    signed,
    tree_size,
    wait_for,
    wait_for_checkpoint,
)
from tests.services.verifier_deploy import ALLOWED, API_KEY, STAFF, AppServer
from verifier.app import build_services
from verifier.app import create_app as create_verifier_app
from verifier.settings import VerifierSettings
from verifier.settings import load_runtime as load_verifier_runtime
from wallet_cli.cli import WalletRuntime, app
from wallet_cli.store import UnsafeFastKdfForTests

CLIENT_ID = "counter.mapo.seoul.example"
NOSY_ID = "nosy.bar.example"
ROGUE_ID = "rogue.example"
PURPOSE = "Counter at the Mapo-gu district office"
NOSY_PURPOSE = "Age check at the door"
PASSPHRASE = "a long passphrase for the e2e wallet"
YEAR = 365 * 86_400

runner = CliRunner()


# --- the city --------------------------------------------------------------------------------


class RequestServer:
    """Serves request objects at ``/<id>`` and records direct_post bodies at ``/post/<id>``."""

    def __init__(self) -> None:
        self.objects: dict[str, str] = {}
        self.posts: list[dict[str, list[str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = owner.objects.get(self.path.lstrip("/"))
                body = (token or "").encode("ascii")
                self.send_response(200 if token else 404)
                self.send_header("Content-Type", "application/oauth-authz-req+jwt")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                owner.posts.append(parse_qs(self.rfile.read(length).decode()))
                body = b'{"result":"recorded"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def publish(
        self,
        request_id: str,
        key: PrivateKey,
        *,
        client_id: str,
        kid: str,
        dcql: dict[str, Any],
        exp_in: int = 300,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": client_id,
            "aud": "https://self-issued.me/v2",
            "client_id": client_id,
            "response_type": "vp_token",
            "response_mode": "direct_post",
            "response_uri": f"{self.url}/post/{request_id}",
            "nonce": f"nonce-{request_id}-0123456789abcdef",
            "state": f"state-{request_id}",
            "dcql_query": dcql,
            "iat": now,
            "exp": now + exp_in,
        }
        self.objects[request_id] = sign_jwt({"typ": "oauth-authz-req+jwt", "kid": kid}, claims, key)
        return "openid4vp://?" + urlencode(
            {"client_id": client_id, "request_uri": f"{self.url}/{request_id}"}
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class City:
    root: Path
    registry_url: str
    trust_config: Path
    issuer_url: str
    issuer_admin_key: str
    verifier_url: str
    nosy_key: PrivateKey
    requests: RequestServer
    http: httpx.Client
    post: Any = field(repr=False)
    """``post(event_type, **members)``: a governance-signed entry, appended and witnessed."""

    def offer(
        self, vct: str = RESIDENCY_VCT, claims: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"vct": vct, "claims": claims or get_type(vct).example_claims()}
        if vct == YOUTH_ALLOWANCE_VCT:  # the programme rules need the applicant's evidence
            body["evidence"] = {"birth_date": "1998-03-15", "application_date": "2025-04-14"}
        answer = self.http.post(
            f"{self.issuer_url}/admin/offers",
            json=body,
            headers={"Authorization": f"Bearer {self.issuer_admin_key}"},
        )
        assert answer.status_code == 201, answer.text
        offer: dict[str, Any] = answer.json()
        return offer

    def staff_request(self, policy: str) -> dict[str, Any]:
        answer = self.http.post(
            f"{self.verifier_url}/requests", json={"policy": policy}, headers=STAFF
        )
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    def request_status(self, request_id: str) -> dict[str, Any]:
        answer = self.http.get(f"{self.verifier_url}/requests/{request_id}", headers=STAFF)
        status: dict[str, Any] = answer.json()
        return status

    def issued_credentials(self) -> list[dict[str, Any]]:
        answer = self.http.get(
            f"{self.issuer_url}/admin/credentials",
            headers={"Authorization": f"Bearer {self.issuer_admin_key}"},
        )
        assert answer.status_code == 200, answer.text
        credentials: list[dict[str, Any]] = answer.json()["credentials"]
        return credentials

    def set_status(self, credential_id: str, action: str) -> None:
        answer = self.http.post(
            f"{self.issuer_url}/admin/credentials/{credential_id}/{action}",
            headers={"Authorization": f"Bearer {self.issuer_admin_key}"},
        )
        assert answer.status_code == 200, answer.text


@contextmanager
def running_city(root: Path, *, batch_size: int = 5) -> Iterator[City]:
    """Registry, issuer and verifier on 127.0.0.1, accredited as the module doc says."""
    with ExitStack() as stack:
        files = init_registry(root / "registry")
        registry_runtime = load_registry_runtime(RegistrySettings(data_dir=files.data_dir))
        registry = stack.enter_context(ThreadServer(create_registry_app(registry_runtime)))
        trust_config = files.data_dir / "trust-config.json"
        now = int(time.time())

        def post(event_type: str, **members: Any) -> None:
            size = tree_size(registry.url)
            answer = post_entry(
                registry.url, files.admin_token, signed(files, event_type, **members)
            )
            assert answer.status_code == 201, answer.text
            wait_for_checkpoint(registry.url, size + 1)

        size = tree_size(registry.url)

        # The issuer, its key accredited for every civic type.
        issuer_dir = root / "issuer"
        issuer_dir.mkdir(mode=0o700)
        shutil.copy(trust_config, issuer_dir / "trust-config.json")
        issuer_server = ServerThread()
        issuer_runtime = load_issuer_runtime(
            IssuerSettings(
                data_dir=issuer_dir,
                issuer_url=issuer_server.url,
                registry_url=registry.url,
                batch_size=batch_size,
                trust_refresh_seconds=1,
            )
        )
        context = build_context(issuer_runtime, trust=registry_trust(issuer_runtime))
        issuer_db.create_schema(context.engine)
        signer = context.keys.create("EdDSA", now=now)
        post(
            "issuer.key.add",
            issuer=issuer_runtime.issuer_url,
            kid=signer.kid,
            jwk=signer.public_key.to_jwk(),
            vct=list(issuer_runtime.vcts),
            status_base_url=issuer_runtime.status_base_url,
            not_before=now - 60,
            not_after=now + YEAR,
        )

        # The verifier service, and the narrowly accredited "nosy" verifier.
        verifier_key, nosy_key = PrivateKey.generate(), PrivateKey.generate()
        for client_id, key, kid, purpose, allowed in (
            (CLIENT_ID, verifier_key, "v-1", PURPOSE, ALLOWED),
            (NOSY_ID, nosy_key, "n-1", NOSY_PURPOSE, [ALLOWED[0] | {"claims": [["age_over_19"]]}]),
        ):
            post(
                "verifier.add",
                verifier=client_id,
                kid=kid,
                jwk=key.public_key.to_jwk(),
                purpose=purpose,
                allowed=allowed,
                not_before=now - 60,
                not_after=now + YEAR,
            )

        _, admin_key = create_api_key(
            context.engine, vcts=list(issuer_runtime.vcts), label="e2e", now=now
        )
        issuer_server.start(create_issuer_app(context))
        stack.callback(context.engine.dispose)
        stack.callback(issuer_server.stop)

        verifier_dir = root / "verifier"
        verifier_dir.mkdir(mode=0o700)
        write_private_file(
            verifier_dir / "verifier.jwk",
            json_dumps({**verifier_key.export_private_jwk(), "kid": "v-1"}),
        )
        (verifier_dir / "api-key.sha256").write_text(token_sha256_hex(API_KEY))
        shutil.copy(trust_config, verifier_dir / "trust-config.json")
        port = free_port()
        verifier_runtime = load_verifier_runtime(
            VerifierSettings(
                data_dir=verifier_dir,
                database_url=f"sqlite:///{verifier_dir / 'verifier.sqlite3'}",
                redis_url=None,
                client_id=CLIENT_ID,
                public_url=f"http://127.0.0.1:{port}",
                registry_url=registry.url,
                trust_bundle_file=None,
                sync_interval=0.5,
                status_max_cache_seconds=1,
                port=port,
            )
        )
        services = build_services(verifier_runtime)
        verifier = stack.enter_context(AppServer(create_verifier_app(services), port))
        wait_for(
            lambda: (
                httpx.get(verifier.url + "/healthz", timeout=5).json()["trust"]["checkpoint_size"]
                == size + 3
            ),
            what="the verifier's first registry sync",
        )
        requests = RequestServer()
        stack.callback(requests.close)
        http = stack.enter_context(httpx.Client(timeout=30))
        yield City(
            root=root,
            registry_url=registry.url,
            trust_config=trust_config,
            issuer_url=issuer_server.url,
            issuer_admin_key=admin_key,
            verifier_url=verifier.url,
            nosy_key=nosy_key,
            requests=requests,
            http=http,
            post=post,
        )


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    with running_city(tmp_path_factory.mktemp("city")) as running:
        yield running


class Wallet:
    """``civic-wallet`` in one home directory, run through CliRunner."""

    def __init__(self, home: Path, city: City) -> None:
        self.home = home
        self.city = city
        self.runtime = WalletRuntime(unsafe_kdf=UnsafeFastKdfForTests(), home=home)
        self.env = {"CIVIC_WALLET_PASSPHRASE": PASSPHRASE}

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Any:
        return runner.invoke(
            app, list(args), input=input, env={**self.env, **(env or {})}, obj=self.runtime
        )

    def ok(self, *args: str, **kwargs: Any) -> Any:
        result = self.run(*args, **kwargs)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    def json(self, *args: str, **kwargs: Any) -> dict[str, Any]:
        return json_loads_object(self.ok(*args, "--json", **kwargs).stdout)

    def init(self, *extra: str) -> None:
        self.ok(
            "init",
            "--registry-url",
            self.city.registry_url,
            "--trust-config",
            str(self.city.trust_config),
            *extra,
        )

    def receive(self, vct: str = RESIDENCY_VCT, *extra: str) -> dict[str, Any]:
        offer = self.city.offer(vct)
        return self.json(
            "receive", offer["credential_offer_uri"], "--tx-code", offer["tx_code"], *extra
        )


@pytest.fixture
def wallet(tmp_path: Path, city: City) -> Wallet:
    held = Wallet(tmp_path / "wallet", city)
    held.init()
    return held


def verdict_claims(city: City, request_id: str) -> dict[tuple[str, tuple[Any, ...]], Any]:
    status = city.request_status(request_id)
    assert status["status"] == "answered", status
    return {
        (credential["query"], tuple(claim["path"])): claim["value"]
        for credential in status["verdict"]["credentials"]
        for claim in credential["claims"]
    }


def posted_presentations(city: City) -> list[str]:
    presentations = []
    for post in city.requests.posts:
        vp_token = json_loads_object(post["vp_token"][0])
        presentations.extend(item for items in vp_token.values() for item in items)
    return presentations


# --- receive, show, present ------------------------------------------------------------------


def test_receive_show_present_and_history(wallet: Wallet, city: City) -> None:
    received = wallet.receive()
    assert received["type"] == "Residency certificate"
    assert received["issuer_url"] == city.issuer_url
    assert (received["copies"], received["unused_copies"]) == (3, 3)

    shown = wallet.json("show", received["id"])
    assert shown["status"]["checked"] is True and shown["status"]["summary"] == "valid"
    assert shown["status"]["copies"] == [{"status": "valid", "reason": None}] * 3
    assert shown["status"]["checkpoint_size"] >= 3
    assert {tuple(c["path"]): c["value"] for c in shown["claims"]}[("address", "region")] == "Seoul"

    created = city.staff_request("bar-entry")
    result = wallet.ok("present", created["uri"], "--yes")
    assert "Who asks: counter.mapo.seoul.example" in result.stderr
    assert f"Why: {PURPOSE}" in result.stderr
    assert "Aged 19 or over  Yes" in result.stderr
    assert result.stdout.split() == ["verifier", CLIENT_ID, "result", "valid"]
    # Exactly the requested claim reached the verifier: no name, no address, no birth date.
    assert verdict_claims(city, created["id"]) == {("residency", ("age_over_19",)): True}

    history = wallet.json("history")["history"]
    assert len(history) == 1
    entry = history[0]
    assert (entry["channel"], entry["verifier"], entry["purpose"]) == (
        "openid4vp",
        CLIENT_ID,
        PURPOSE,
    )
    assert (entry["credential_id"], entry["claims"], entry["result"]) == (
        received["id"],
        [["age_over_19"]],
        "valid",
    )
    assert wallet.json("list")["credentials"][0]["unused_copies"] == 2


def test_two_credentials_for_the_youth_allowance_counter(wallet: Wallet, city: City) -> None:
    wallet.receive(RESIDENCY_VCT)
    wallet.receive(YOUTH_ALLOWANCE_VCT)
    created = city.staff_request("youth-allowance-counter")
    image = wallet.home / "request.png"  # the counter's screen, photographed
    image.write_bytes(b64std_decode(created["qr_png"]))
    answer = wallet.json("present", "--qr-image", str(image), "--yes", "--lang", "ko")
    assert answer["answer"] == {"result": "valid"}
    disclosed = {
        (c["query"], tuple(claim["path"]))
        for c in answer["disclosed"]["credentials"]
        for claim in c["claims"]
    }
    assert (
        disclosed
        == set(verdict_claims(city, created["id"]))
        == {
            ("residency", ("address", "region")),
            ("residency", ("age_over_19",)),
            ("youth_allowance", ("allowance_status",)),
            ("youth_allowance", ("eligibility", "age_19_to_34")),
        }
    )
    names = [claim["name"] for c in answer["disclosed"]["credentials"] for claim in c["claims"]]
    assert "수당 지급 상태" in names and "주소 › 시·도" in names
    assert len(wallet.json("history")["history"]) == 2


def test_nothing_is_sent_without_a_matching_credential(wallet: Wallet, city: City) -> None:
    wallet.receive(RESIDENCY_VCT)
    created = city.staff_request("youth-allowance-counter")
    result = wallet.run("present", created["uri"], "--yes")
    assert result.exit_code == 1 and "dcql_unsatisfied" in result.stderr
    assert city.request_status(created["id"])["status"] == "pending"
    assert wallet.json("history") == {"history": []}


def test_declining_consent_sends_nothing(wallet: Wallet, city: City) -> None:
    wallet.receive()
    before = {p.name: p.read_bytes() for p in wallet.home.glob("wallet.sealed*")}
    created = city.staff_request("bar-entry")
    result = wallet.run("present", created["uri"], input="n\n")
    assert result.exit_code == 1 and "consent_declined" in result.stderr
    assert "Share these claims?" in result.stderr
    assert city.request_status(created["id"])["status"] == "pending"
    assert {p.name: p.read_bytes() for p in wallet.home.glob("wallet.sealed*")} == before
    no_answer = wallet.run("present", created["uri"], input="")  # end of input: no consent
    assert no_answer.exit_code == 1 and "consent_declined" in no_answer.stderr
    assert wallet.ok("present", created["uri"], input="y\n").stdout.split()[-1] == "valid"


# --- requests the wallet refuses -------------------------------------------------------------


RESIDENCY_QUERY = {
    "credentials": [
        {
            "id": "residency",
            "format": "dc+sd-jwt",
            "meta": {"vct_values": [RESIDENCY_VCT]},
            "claims": [{"path": ["age_over_19"]}],
        }
    ]
}


def nosy_query(*paths: list[str]) -> dict[str, Any]:
    query = json_loads_object(json_dumps(RESIDENCY_QUERY))
    query["credentials"][0]["claims"] = [{"path": path} for path in paths]
    return query


def test_claims_beyond_the_accreditation_are_refused(wallet: Wallet, city: City) -> None:
    wallet.receive()
    posts = len(city.requests.posts)
    uri = city.requests.publish(
        "nosy-1",
        city.nosy_key,
        client_id=NOSY_ID,
        kid="n-1",
        dcql=nosy_query(["age_over_19"], ["birth_date"]),
    )
    result = wallet.run("present", uri, "--yes")
    assert result.exit_code == 1
    assert "verifier_claims_not_accredited" in result.stderr
    assert (
        "birth_date" in result.stderr and "beyond its accreditation (age_over_19)" in result.stderr
    )
    assert len(city.requests.posts) == posts
    # Within its accreditation the same verifier is answered, with that one claim.
    uri = city.requests.publish(
        "nosy-2", city.nosy_key, client_id=NOSY_ID, kid="n-1", dcql=nosy_query(["age_over_19"])
    )
    answer = wallet.json("present", uri, "--yes")
    assert answer["answer"] == {"result": "recorded"}
    assert answer["disclosed"]["purpose"] == NOSY_PURPOSE
    (presentation,) = posted_presentations(city)[posts:]
    disclosed = [d.name for d in parse_sd_jwt(presentation).disclosures]
    assert disclosed == ["age_over_19"]


def test_unaccredited_forged_and_expired_requests(wallet: Wallet, city: City) -> None:
    wallet.receive()
    rogue_key = PrivateKey.generate()
    cases = [
        (
            city.requests.publish(
                "rogue", rogue_key, client_id=ROGUE_ID, kid="r-1", dcql=RESIDENCY_QUERY
            ),
            "verifier_unknown",
        ),
        (
            city.requests.publish(
                "forged", rogue_key, client_id=NOSY_ID, kid="n-1", dcql=RESIDENCY_QUERY
            ),
            "signature_invalid",
        ),
        (
            city.requests.publish(
                "old",
                city.nosy_key,
                client_id=NOSY_ID,
                kid="n-1",
                dcql=RESIDENCY_QUERY,
                exp_in=-120,
            ),
            "request_expired",
        ),
    ]
    posts = len(city.requests.posts)
    for uri, reason in cases:
        result = wallet.run("present", uri, "--yes")
        assert result.exit_code == 1, result.stdout
        assert f"civic-wallet: {reason}:" in result.stderr
    assert len(city.requests.posts) == posts


def test_a_verifier_revoked_in_the_registry_is_refused_at_the_next_sync(
    wallet: Wallet, city: City
) -> None:
    wallet.receive()
    key = PrivateKey.generate()
    now = int(time.time())
    city.post(
        "verifier.add",
        verifier="short-lived.example",
        kid="s-1",
        jwk=key.public_key.to_jwk(),
        purpose="A pilot",
        allowed=[{"vct": RESIDENCY_VCT, "claims": [["age_over_19"]]}],
        not_before=now - 60,
        not_after=now + YEAR,
    )
    uri = city.requests.publish(
        "pilot-1", key, client_id="short-lived.example", kid="s-1", dcql=RESIDENCY_QUERY
    )
    assert wallet.json("present", uri, "--yes")["answer"] == {"result": "recorded"}
    city.post("verifier.revoke", verifier="short-lived.example", revoked_at=now)
    uri = city.requests.publish(
        "pilot-2", key, client_id="short-lived.example", kid="s-1", dcql=RESIDENCY_QUERY
    )
    result = wallet.run("present", uri, "--yes")
    assert result.exit_code == 1 and "verifier_revoked" in result.stderr


# --- copies and status -----------------------------------------------------------------------


def test_a_fresh_copy_for_each_presentation(wallet: Wallet, city: City) -> None:
    wallet.receive()
    posts = len(city.requests.posts)
    for index in range(4):
        uri = city.requests.publish(
            f"copy-{index}",
            city.nosy_key,
            client_id=NOSY_ID,
            kid="n-1",
            dcql=RESIDENCY_QUERY,
        )
        result = wallet.ok("present", uri, "--yes")
        assert ("linked" in result.stderr) == (index == 3)
    holders = [
        json_dumps(parse_sd_jwt(p).payload["cnf"]) for p in posted_presentations(city)[posts:]
    ]
    assert len(set(holders[:3])) == 3
    assert holders[3] in holders[:3]


def test_a_revoked_copy_shows_as_revoked_and_the_counter_refuses_it(
    wallet: Wallet, city: City
) -> None:
    received = wallet.receive(VACCINATION_VCT, "--copies", "2")
    assert received["copies"] == 2
    from wallet_cli.store import WalletStore

    store = WalletStore(wallet.home, lambda: PASSPHRASE, unsafe_kdf=UnsafeFastKdfForTests())
    copies = store.read().find(received["id"]).copies
    thumbprints = [PrivateKey.from_jwk(c.key).public_key.thumbprint() for c in copies]
    issued = {c["holder_key_thumbprint"]: c["id"] for c in city.issued_credentials()}
    city.set_status(issued[thumbprints[0]], "revoke")
    status = wallet.json("show", received["id"])["status"]
    assert status["summary"] == "invalid"
    assert status["copies"] == [
        {"status": "invalid", "reason": "status_invalid"},
        {"status": "valid", "reason": None},
    ]
    table = wallet.ok("show", received["id"]).stdout
    assert "status    invalid (checked now" in table
    # The first copy goes out first: the pharmacy's verifier finds it revoked (once the
    # status list it may have cached from an earlier test has aged out: 1 s here).
    time.sleep(1.1)
    created = city.staff_request("pharmacy")
    refused = wallet.run("present", created["uri"], "--yes")
    assert refused.exit_code == 1 and "the verifier answered invalid" in refused.stderr
    assert refused.stdout.split()[-2:] == ["result", "invalid"]
    assert city.request_status(created["id"])["verdict"]["reason"] == "status_invalid"
    assert wallet.json("history")["history"][-1]["result"] == "invalid"


# --- offline QR, checked by the verifier --------------------------------------------------


def test_an_offline_qr_is_accepted_by_the_counter(
    wallet: Wallet, city: City, tmp_path: Path
) -> None:
    received = wallet.receive()
    challenge = city.http.post(f"{city.verifier_url}/challenges", headers=STAFF).json()
    challenge_png = tmp_path / "challenge.png"
    challenge_png.write_bytes(b64std_decode(challenge["qr_png"]))
    png = tmp_path / "presentation.png"
    out = wallet.json(
        "qr",
        received["id"],
        "--disclose",
        "age_over_19",
        "--challenge-image",
        str(challenge_png),
        "--png",
        str(png),
    )
    assert out["key_binding"] is True and out["qr_version"] <= 25
    scanned = base64.b64encode(png.read_bytes()).decode()
    verdict = city.http.post(
        f"{city.verifier_url}/verify",
        json={"policy": "bar-entry", "nonce": challenge["nonce"], "image_png": scanned},
        headers=STAFF,
    ).json()
    assert verdict["result"] == "valid", verdict
    assert [c["claims"] for c in verdict["credentials"]] == [
        [
            {
                "path": ["age_over_19"],
                "value": True,
                "label": verdict["credentials"][0]["claims"][0]["label"],
            }
        ]
    ]
    entry = wallet.json("history")["history"][-1]
    assert (entry["channel"], entry["verifier"], entry["purpose"]) == ("qr", CLIENT_ID, PURPOSE)


# --- receiving: QR image, P-256, refusals -------------------------------------------------


def test_receive_from_a_qr_image_with_p256_holder_keys(tmp_path: Path, city: City) -> None:
    wallet = Wallet(tmp_path / "p256", city)
    wallet.init("--alg", "ES256")
    offer = city.offer()
    image = tmp_path / "offer.png"
    image.write_bytes(base64.b64decode(offer["qr_png_base64"]))
    received = wallet.json(
        "receive", "--qr-image", str(image), "--tx-code", offer["tx_code"], "--copies", "10"
    )
    assert received["copies"] == 5  # the issuer's batch size caps the request
    from wallet_cli.store import WalletStore

    store = WalletStore(wallet.home, lambda: PASSPHRASE, unsafe_kdf=UnsafeFastKdfForTests())
    for copy in store.read().credentials[0].copies:
        assert parse_sd_jwt(copy.sd_jwt).payload["cnf"]["jwk"]["crv"] == "P-256"
        assert copy.key["kty"] == "EC"
    created = city.staff_request("bar-entry")
    assert wallet.json("present", created["uri"], "--yes")["answer"] == {"result": "valid"}


def test_a_wrong_transaction_code_stores_nothing(wallet: Wallet, city: City) -> None:
    offer = city.offer()
    before = {p.name: p.read_bytes() for p in wallet.home.glob("wallet.sealed*")}
    wrong = "000000" if offer["tx_code"] != "000000" else "111111"
    result = wallet.run("receive", offer["credential_offer_uri"], "--tx-code", wrong)
    assert result.exit_code == 1
    assert "issuer_error" in result.stderr and "invalid_grant" in result.stderr
    assert {p.name: p.read_bytes() for p in wallet.home.glob("wallet.sealed*")} == before
    malformed = wallet.run("receive", offer["credential_offer_uri"], "--tx-code", "12ab")
    assert malformed.exit_code == 2
    # The offer is still good for the right code.
    assert (
        wallet.json("receive", offer["credential_offer_uri"], "--tx-code", offer["tx_code"])[
            "copies"
        ]
        == 3
    )


def test_an_issuer_the_registry_does_not_know_is_refused_before_the_code(
    wallet: Wallet, tmp_path: Path
) -> None:
    from issuer.testing import LocalIssuer

    with LocalIssuer(tmp_path / "elsewhere") as elsewhere, httpx.Client(timeout=30) as http:
        created = http.post(
            f"{elsewhere.url}/admin/offers",
            json={"vct": RESIDENCY_VCT, "claims": get_type(RESIDENCY_VCT).example_claims()},
            headers={"Authorization": f"Bearer {elsewhere.admin_key}"},
        )
        assert created.status_code == 201, created.text
        # No --tx-code and no input: had the wallet asked for the code, it would have aborted.
        result = wallet.run("receive", created.json()["credential_offer_uri"])
    assert result.exit_code == 1, result.stdout
    assert "civic-wallet: issuer_unknown:" in result.stderr
    assert "Transaction code" not in result.stderr


# --- trust ----------------------------------------------------------------------------------


def test_trust_sync_and_the_offline_fallback(wallet: Wallet, city: City) -> None:
    synced = wallet.json("trust", "sync")
    assert synced["synced_now"] is True
    assert {v["verifier"] for v in synced["verifiers"]} >= {CLIENT_ID, NOSY_ID}
    assert synced["issuers"][0]["issuer"] == city.issuer_url
    wallet.receive()
    cache = (wallet.home / "trust-cache.json").read_bytes()

    dead = f"http://127.0.0.1:{free_port()}"
    wallet.ok("trust", "configure", "--config", str(city.trust_config), "--registry-url", dead)
    created = city.staff_request("bar-entry")
    stale = wallet.run("present", created["uri"], "--yes")
    assert stale.exit_code == 1 and "trust_stale" in stale.stderr
    # With the state synced a moment ago, the wallet goes on, and says why.
    (wallet.home / "trust-cache.json").write_bytes(cache)
    result = wallet.ok("present", created["uri"], "--yes")
    assert "registry sync failed (log_unavailable" in result.stderr
    assert result.stdout.split()[-1] == "valid"


# --- interactive prompts on a real terminal ---------------------------------------------------


class Terminal:
    """A command on a pseudo-terminal (``pty.fork``): wait for text, type answers."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        import pty

        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover (the child)
            try:
                os.chdir(ROOT)
                os.execve(argv[0], argv, env)  # noqa: S606 (this interpreter, fixed arguments)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = ""
        self._unread = ""

    def _read(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ready, _, _ = select.select([self.fd], [], [], remaining)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not data:
            return False
        text = data.decode("utf-8", "replace")
        self.output += text
        self._unread += text
        return True

    def expect(self, text: str, timeout: float = 30) -> str:
        """Read until ``text`` appears; returns what came before it. For a hidden prompt wait
        for its last character: getpass turns echo off (and flushes input) before writing it.
        """
        deadline = time.monotonic() + timeout
        while text not in self._unread:
            if not self._read(deadline):
                raise AssertionError(f"never saw {text!r}; output so far:\n{self.output}")
        before, _, self._unread = self._unread.partition(text)
        return before

    def type(self, line: str) -> None:
        os.write(self.fd, (line + "\r").encode())

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def wallet_on_a_terminal(home: Path, *args: str) -> Terminal:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVIC_WALLET_")}
    env.update(CIVIC_WALLET_HOME=str(home), TERM="dumb", COLUMNS="100")
    code = (
        "from wallet_cli.cli import WalletRuntime, app;"
        "from wallet_cli.store import UnsafeFastKdfForTests;"
        "app(obj=WalletRuntime(unsafe_kdf=UnsafeFastKdfForTests()))"
    )
    return Terminal([sys.executable, "-c", code, *args], env)


def test_prompts_on_a_real_terminal(tmp_path: Path, city: City) -> None:
    try:
        probe = wallet_on_a_terminal(tmp_path, "--help")
    except OSError as error:
        pytest.skip(f"no pseudo-terminal available here: {error}")
    assert probe.wait() == 0
    home = tmp_path / "tty"

    term = wallet_on_a_terminal(home, "init")
    term.expect("Wallet passphrase: ")
    term.type(PASSPHRASE)
    term.expect("Repeat for confirmation: ")
    term.type(PASSPHRASE)
    assert term.wait() == 0
    assert PASSPHRASE not in term.output  # typed with echo off
    assert "Argon2id" in term.output

    runtime = WalletRuntime(unsafe_kdf=UnsafeFastKdfForTests(), home=home)
    configured = runner.invoke(
        app,
        [
            "trust",
            "configure",
            "--config",
            str(city.trust_config),
            "--registry-url",
            city.registry_url,
        ],
        env={"CIVIC_WALLET_PASSPHRASE": PASSPHRASE},
        obj=runtime,
    )
    assert configured.exit_code == 0, configured.stderr

    offer = city.offer()
    term = wallet_on_a_terminal(home, "receive", offer["credential_offer_uri"])
    term.expect("Wallet passphrase: ")
    term.type(PASSPHRASE)
    term.expect("Offer: Residency certificate")
    term.expect("Transaction code (6 digits):")
    term.type(offer["tx_code"])
    term.expect("Verified and stored.")
    assert term.wait() == 0

    created = city.staff_request("bar-entry")
    term = wallet_on_a_terminal(home, "present", created["uri"])
    term.expect("Wallet passphrase: ")
    term.type(PASSPHRASE)
    shown = term.expect("Share these claims? [y/N]:")
    assert "Who asks: counter.mapo.seoul.example" in shown and "Aged 19 or over" in shown
    term.type("n")
    assert term.wait() == 1
    assert "consent_declined" in term.output
    assert city.request_status(created["id"])["status"] == "pending"

    term = wallet_on_a_terminal(home, "present", created["uri"])
    term.expect("Wallet passphrase: ")
    term.type(PASSPHRASE)
    term.expect("Share these claims? [y/N]:")
    term.type("y")
    term.expect("valid")
    assert term.wait() == 0
    assert city.request_status(created["id"])["verdict"]["result"] == "valid"

    term = wallet_on_a_terminal(home, "list")
    term.expect("Wallet passphrase: ")
    term.type("not the passphrase at all")
    assert term.wait() == 1
    assert "wallet_passphrase_wrong" in term.output
