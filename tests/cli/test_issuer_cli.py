"""``civic-issuer`` against a real registry service on 127.0.0.1.

The registry is ``civic-registry``'s own app (data dir from ``civic-registry init``, served by
uvicorn); the issuer accredits its key there with ``init --accredit``, syncs it over HTTP
(registry.client.HttpLogSource + civic.logsync), and staff commands talk to the issuer's admin
API. ``serve`` itself runs once as a subprocess.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from civic.clock import FixedClock
from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, get_type
from civic.encoding import json_dumps, json_loads_object
from civic.jose import PrivateKey, parse_jws, public_key_from_jwk, sign_jwt
from civic.qr import decode_png
from civic.sdjwtvc import verify_credential
from civic.statuslist import Status, parse_status_claim, verify_status_list_token
from issuer.app import build_context, create_app, registry_trust
from issuer.cli import app
from issuer.oid4vci import PRE_AUTHORIZED_GRANT, PROOF_TYP
from issuer.settings import IssuerSettings, load_runtime
from issuer.testing import ServerThread, free_loopback_port
from registry.app import create_app as create_registry_app
from registry.settings import RegistrySettings
from registry.settings import load_runtime as load_registry_runtime
from tests.services.registry_harness import (
    RegistryFiles,
    ThreadServer,
    init_registry,
    tree_size,
    wait_for_checkpoint,
)

runner = CliRunner()
PASSPHRASE = "a long and unguessable passphrase"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Registry:
    files: RegistryFiles
    url: str

    @property
    def governance_key_files(self) -> list[str]:
        args: list[str] = []
        for path in sorted(self.files.data_dir.glob("governance-key-*.jwk")):
            args += ["--governance-key", str(path)]
        return args

    @property
    def token_file(self) -> str:
        return str(self.files.data_dir / "admin.token")

    def wait_for_size(self, size: int) -> None:
        wait_for_checkpoint(self.url, size)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    files = init_registry(tmp_path / "registry")
    runtime = load_registry_runtime(RegistrySettings(data_dir=files.data_dir))
    with ThreadServer(create_registry_app(runtime)) as server:
        yield Registry(files, server.url)


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), env=env)


def ok_json(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return json_loads_object(result.stdout)


def test_init_writes_a_private_key_and_refuses_to_run_twice(tmp_path: Path) -> None:
    data_dir = tmp_path / "issuer"
    out = ok_json(
        invoke("init", "--data-dir", str(data_dir), "--issuer-url", "https://a.example", "--json")
    )
    key_file = data_dir / "keys" / f"{out['kid']}.jwk"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert out["sealed"] is False
    event = out["issuer.key.add"]
    assert event["issuer"] == "https://a.example"
    assert event["status_base_url"] == "https://a.example/status"
    assert set(event["vct"]) == {RESIDENCY_VCT, VACCINATION_VCT, *event["vct"]}
    public = public_key_from_jwk(json_loads_object(Path(out["public_jwk_file"]).read_text()))
    assert public.thumbprint() == out["kid"]
    # Only public values on stdout.
    assert json_loads_object(key_file.read_text())["d"] not in (out | {}).__repr__()
    again = invoke("init", "--data-dir", str(data_dir), "--issuer-url", "https://a.example")
    assert again.exit_code == 1
    assert "already has signing keys" in again.stderr


def test_init_seals_the_key_with_a_passphrase_and_refuses_weak_ones(tmp_path: Path) -> None:
    sealed = ok_json(
        invoke(
            "init",
            "--data-dir",
            str(tmp_path / "sealed"),
            "--alg",
            "ES256",
            "--json",
            env={"CIVIC_ISSUER_KEY_PASSPHRASE": PASSPHRASE},
        )
    )
    assert sealed["sealed"] is True and sealed["alg"] == "ES256"
    document = json_loads_object(
        (tmp_path / "sealed" / "keys" / f"{sealed['kid']}.jwk").read_text()
    )
    assert document["format"] == "civic-sealed-key/1" and "d" not in document
    weak = invoke(
        "init",
        "--data-dir",
        str(tmp_path / "weak"),
        env={"CIVIC_ISSUER_KEY_PASSPHRASE": "changeme"},
    )
    assert weak.exit_code == 1
    assert "passphrase" in weak.stderr
    assert not (tmp_path / "weak" / "keys").exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    data_dir = ["--data-dir", str(tmp_path)]
    assert invoke("create-api-key", "--label", "x", *data_dir).exit_code == 2
    assert invoke("create-api-key", "--vct", "urn:nope", "--label", "x", *data_dir).exit_code == 2
    assert invoke("init", "--alg", "RS256", *data_dir).exit_code == 2
    assert invoke("revoke", "../etc", "--api-key-file", "x", *data_dir).exit_code == 2
    assert invoke("revoke", "abc", "--action", "delete", *data_dir).exit_code == 2
    assert invoke("no-such-command").exit_code == 2


def _write(path: Path, value: Any, mode: int = 0o600) -> Path:
    path.write_text(json_dumps(value) if not isinstance(value, str) else value)
    path.chmod(mode)
    return path


def _wallet_flow(
    http: httpx.Client, offer_uri: str, tx_code: str, issuer_url: str, now: int
) -> str:
    from urllib.parse import parse_qs, urlsplit

    url = parse_qs(urlsplit(offer_uri).query)["credential_offer_uri"][0]
    document = http.get(url).json()
    code = document["grants"][PRE_AUTHORIZED_GRANT]["pre-authorized_code"]
    form = {"grant_type": PRE_AUTHORIZED_GRANT, "pre-authorized_code": code, "tx_code": tx_code}
    token = http.post("/token", data=form).json()["access_token"]
    nonce = http.post("/nonce").json()["c_nonce"]
    key = PrivateKey.generate()
    proof = sign_jwt(
        {"typ": PROOF_TYP, "jwk": key.public_key.to_jwk()},
        {"aud": issuer_url, "iat": now, "nonce": nonce},
        key,
    )
    response = http.post(
        "/credential",
        json={
            "credential_configuration_id": document["credential_configuration_ids"][0],
            "proofs": {"jwt": [proof]},
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    credential: str = response.json()["credentials"][0]["credential"]
    return credential


def test_staff_commands_against_a_running_issuer_and_registry(
    tmp_path: Path, registry: Registry
) -> None:
    data_dir = tmp_path / "issuer"
    server = ServerThread()
    issuer_url = server.url
    env = {"CIVIC_ISSUER_REGISTRY_URL": registry.url}
    base = ["--data-dir", str(data_dir)]

    # init: the key is accredited in the registry by governance.
    size = tree_size(registry.url)
    init = ok_json(
        invoke(
            "init",
            *base,
            "--issuer-url",
            issuer_url,
            "--accredit",
            "--registry-token-file",
            registry.token_file,
            *registry.governance_key_files,
            "--json",
            env=env,
        )
    )
    assert init["posted"][0]["type"] == "issuer.key.add"
    registry.wait_for_size(size + 1)
    shutil.copy(registry.files.data_dir / "trust-config.json", data_dir / "trust-config.json")

    key = ok_json(
        invoke("create-api-key", *base, "--vct", RESIDENCY_VCT, "--label", "counter 3", "--json")
    )
    assert key["vcts"] == [RESIDENCY_VCT]
    key_file = _write(tmp_path / "api.key", key["api_key"] + "\n")

    # The issuer, as `serve` builds it, on the port its URL names; trust over real HTTP.
    clock = FixedClock(int(time.time()))
    runtime = load_runtime(
        IssuerSettings(data_dir=data_dir, issuer_url=issuer_url, registry_url=registry.url)
    )
    context = build_context(runtime, trust=registry_trust(runtime), now=clock)
    server.start(create_app(context))
    try:
        http = httpx.Client(base_url=issuer_url, timeout=30)
        claims = _write(tmp_path / "claims.json", get_type(RESIDENCY_VCT).example_claims())
        qr = tmp_path / "offer.png"
        staff = ["--server", issuer_url, "--api-key-file", str(key_file)]
        offer = ok_json(
            invoke(
                "offer",
                *staff,
                "--vct",
                RESIDENCY_VCT,
                "--claims",
                str(claims),
                "--qr-out",
                str(qr),
                "--json",
            )
        )
        assert decode_png(qr.read_bytes()) == offer["credential_offer_uri"]
        assert (
            "Give the citizen"
            in invoke("offer", *staff, "--vct", RESIDENCY_VCT, "--claims", str(claims)).stderr
        )
        credential = _wallet_flow(
            http, offer["credential_offer_uri"], offer["tx_code"], issuer_url, clock()
        )
        public = public_key_from_jwk(json_loads_object(Path(init["public_jwk_file"]).read_text()))
        verified = verify_credential(credential, public, key_binding=None, now=clock)
        reference = parse_status_claim(verified.claims["status"], unsafe_allow_http_loopback=True)

        # The key is scoped: no vaccination offers, and a wrong key is refused.
        vaccination = _write(tmp_path / "v.json", get_type(VACCINATION_VCT).example_claims())
        scoped = invoke("offer", *staff, "--vct", VACCINATION_VCT, "--claims", str(vaccination))
        assert scoped.exit_code == 1 and "forbidden" in scoped.stderr
        wrong = invoke(
            "offer",
            "--server",
            issuer_url,
            "--vct",
            RESIDENCY_VCT,
            "--claims",
            str(claims),
            env={"CIVIC_ISSUER_API_KEY": "x.y"},
        )
        assert wrong.exit_code == 1 and "unauthorized" in wrong.stderr

        # revoke, through the admin API; the status list shows it on the next fetch.
        listing = http.get(
            "/admin/credentials", headers={"Authorization": f"Bearer {key['api_key']}"}
        ).json()["credentials"]
        credential_id = listing[0]["id"]
        suspended = ok_json(
            invoke("revoke", credential_id, *staff, "--action", "suspend", "--json")
        )
        assert suspended["status"] == "suspended"
        revoked = ok_json(invoke("revoke", credential_id, *staff, "--json"))
        assert revoked["status"] == "revoked"
        assert invoke("revoke", credential_id, *staff, "--action", "reinstate").exit_code == 1
        status_token = http.get("/status/1").text
        verified_list = verify_status_list_token(
            status_token, key=public, expected_uri=reference.uri, now=clock
        )
        assert verified_list.status_list.get(reference.index) == Status.INVALID

        # rotate-key: governance accredits the new key and retires the old one after a grace
        # period; the issuer switches to the new key at its next registry sync.
        size = tree_size(registry.url)
        rotated = ok_json(
            invoke(
                "rotate-key",
                *base,
                "--issuer-url",
                issuer_url,
                "--alg",
                "ES256",
                "--post",
                "--registry-token-file",
                registry.token_file,
                *registry.governance_key_files,
                "--json",
                env=env,
            )
        )
        assert rotated["retiring"] == [init["kid"]]
        assert [e["type"] for e in rotated["events"]] == ["issuer.key.add", "issuer.key.retire"]
        registry.wait_for_size(size + 2)
        clock.advance(runtime.settings.trust_refresh_seconds)
        offer = ok_json(
            invoke("offer", *staff, "--vct", RESIDENCY_VCT, "--claims", str(claims), "--json")
        )
        newer = _wallet_flow(
            http, offer["credential_offer_uri"], offer["tx_code"], issuer_url, clock()
        )
        header = parse_jws(newer.split("~")[0]).header
        assert header["kid"] == rotated["kid"] and header["alg"] == "ES256"
        http.close()
    finally:
        server.stop()
        context.engine.dispose()


def test_rotate_key_without_posting_prints_the_events(tmp_path: Path) -> None:
    base = ["--data-dir", str(tmp_path / "issuer"), "--issuer-url", "https://a.example"]
    first = ok_json(invoke("init", *base, "--json"))
    result = invoke("rotate-key", *base, "--retire-grace", "60", "--json")
    rotated = ok_json(result)
    add, retire = rotated["events"]
    assert add["type"] == "issuer.key.add" and add["kid"] == rotated["kid"] != first["kid"]
    assert retire == {
        "type": "issuer.key.retire",
        "issuer": "https://a.example",
        "kid": first["kid"],
        "retired_at": retire["retired_at"],
    }
    assert retire["retired_at"] >= add["not_before"] + 60
    assert "trust authority" in result.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_runs_the_service(tmp_path: Path, registry: Registry, workers: int) -> None:
    data_dir = tmp_path / "issuer"
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    ok_json(invoke("init", "--data-dir", str(data_dir), "--issuer-url", url, "--json"))
    shutil.copy(registry.files.data_dir / "trust-config.json", data_dir / "trust-config.json")
    env = {
        **os.environ,
        "CIVIC_ISSUER_DATA_DIR": str(data_dir),
        "CIVIC_ISSUER_ISSUER_URL": url,
        "CIVIC_ISSUER_REGISTRY_URL": registry.url,
    }
    command = ["serve", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
        [sys.executable, "-c", "from issuer.cli import app; app()", *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "civic-issuer serve did not start"
            time.sleep(0.1)
        # Fresh connections, spread by the kernel over the workers: every one answers alike.
        for _ in range(4 * workers):
            metadata = httpx.get(url + "/.well-known/openid-credential-issuer", timeout=5).json()
            assert metadata["credential_issuer"] == url
    finally:
        process.terminate()
        _, err = process.communicate(timeout=40)
    # A clean stop: exit 0, or (one process) uvicorn re-raising the SIGTERM it handled.
    assert process.returncode in (0, -signal.SIGTERM), err
    assert f"serving {url}" in err
    assert f"with {workers} worker(s)" in err
