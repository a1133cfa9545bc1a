"""``civic-registry`` with Typer's CliRunner, against a registry served on 127.0.0.1."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from civic.encoding import json_dumps, json_loads_object
from civic.jose import PrivateKey
from registry.app import create_app
from registry.cli import app, parse_allow, parse_time
from registry.settings import RegistrySettings, WitnessEndpoint, load_runtime
from tests.services.registry_harness import (
    ISSUER,
    ORIGIN,
    RegistryFiles,
    ThreadServer,
    init_registry,
    tree_size,
    wait_for_checkpoint,
    witness_server,
)

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RegistryFiles, str]]:
    files = init_registry(tmp_path / "data")
    with ThreadServer(create_app(load_runtime(RegistrySettings(data_dir=files.data_dir)))) as s:
        yield files, s.url


def _jwk_file(tmp_path: Path, *, private: bool = False) -> tuple[Path, PrivateKey]:
    key = PrivateKey.generate()
    jwk = key.export_private_jwk() if private else key.public_key.to_jwk()
    path = tmp_path / f"key-{key.public_key.thumbprint()[:8]}.jwk"
    path.write_text(json_dumps(jwk))
    return path, key


def _common(files: RegistryFiles, url: str) -> list[str]:
    return ["--registry", url, "--data-dir", str(files.data_dir)]


# -- init ------------------------------------------------------------------------------------


def test_init_writes_private_files_and_prints_only_public_values(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = invoke(
        "init", "--data-dir", str(data_dir), "--origin", ORIGIN, "--governance-keys", "3",
        "--quorum", "2", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = json_loads_object(result.stdout)
    assert printed["origin"] == ORIGIN
    assert printed["log_vkey"] == (data_dir / "log.vkey").read_text().strip()
    assert len(printed["governance_kids"]) == 3 and printed["governance_quorum"] == 2
    governance = json_loads_object((data_dir / "governance.json").read_text())
    assert governance["quorum"] == 2 and set(governance["keys"]) == set(printed["governance_kids"])

    secrets = [
        (data_dir / "log.skey").read_text().strip(),
        (data_dir / "admin.token").read_text().strip(),
    ]
    for path in data_dir.glob("governance-key-*.jwk"):
        secrets.append(json_loads_object(path.read_text())["d"])
    for private in printed["private_files"]:
        assert stat.S_IMODE(Path(private).stat().st_mode) == 0o600
    assert len(printed["private_files"]) == 5
    for secret in secrets:
        assert secret not in result.output
    for public in governance["keys"].values():
        assert "d" not in public


def test_init_never_overwrites(tmp_path: Path) -> None:
    files = init_registry(tmp_path / "data")
    before = (files.data_dir / "log.skey").read_text()
    result = invoke("init", "--data-dir", str(files.data_dir))
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.stderr
    assert (files.data_dir / "log.skey").read_text() == before


@pytest.mark.parametrize(
    "args",
    [
        ["--governance-keys", "2", "--quorum", "3"],
        ["--alg", "RS256"],
        ["--governance-keys", "0"],
    ],
)
def test_init_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = invoke("init", "--data-dir", str(tmp_path / "data"), *args)
    assert result.exit_code == 2
    assert not (tmp_path / "data" / "log.skey").exists()


# -- governance events -------------------------------------------------------------------------


def test_accredit_retire_revoke_and_show(tmp_path: Path, served: tuple[RegistryFiles, str]) -> None:
    files, url = served
    issuer_jwk, issuer_key = _jwk_file(tmp_path)
    verifier_jwk, _ = _jwk_file(tmp_path)
    kid = issuer_key.public_key.thumbprint()

    added = invoke(
        "accredit-issuer", *_common(files, url), "--issuer", ISSUER, "--jwk-file", str(issuer_jwk),
        "--vct", "urn:vct:residency", "--vct", "urn:vct:youth",
        "--status-base-url", "https://district.example/status",
        "--not-before", "2024-01-01", "--not-after", "2031-01-01T00:00:00Z", "--json",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert json_loads_object(added.stdout)["index"] == 0

    second, _ = _jwk_file(tmp_path)
    other = invoke(
        "accredit-issuer", *_common(files, url), "--issuer", ISSUER, "--jwk-file", str(second),
        "--kid", "second", "--vct", "urn:vct:residency",
        "--status-base-url", "https://district.example/status", "--not-after", "2031-01-01",
    )  # fmt: skip
    assert other.exit_code == 0, other.output
    assert "index: 1" in other.stdout

    verifier = invoke(
        "accredit-verifier", *_common(files, url), "--verifier", "https://counter.example",
        "--jwk-file", str(verifier_jwk), "--purpose", "Youth allowance counter",
        "--allow", "urn:vct:residency=address.locality,age_over.19",
        "--not-after", "2031-01-01", "--json",
    )  # fmt: skip
    assert verifier.exit_code == 0, verifier.output

    retired = invoke("retire-key", *_common(files, url), "--issuer", ISSUER, "--kid", kid,
                     "--at", "2025-06-01")  # fmt: skip
    assert retired.exit_code == 0, retired.output
    revoked = invoke("revoke-key", *_common(files, url), "--issuer", ISSUER, "--kid", "second")
    assert revoked.exit_code == 0, revoked.output
    wait_for_checkpoint(url, 5)

    shown = invoke("show", *_common(files, url), "--json")
    assert shown.exit_code == 0, shown.output
    state = json_loads_object(shown.stdout)["state"]
    keys = {key["kid"]: key for key in state["issuers"]}
    assert keys[kid]["status"] == "retired"
    assert keys[kid]["retired_at"] == parse_time("2025-06-01")
    assert keys[kid]["not_before"] == parse_time("2024-01-01")
    assert keys[kid]["vct"] == ["urn:vct:residency", "urn:vct:youth"]
    assert keys["second"]["status"] == "revoked"
    (accredited,) = state["verifiers"]
    assert accredited["allowed"] == [
        {"vct": "urn:vct:residency", "claims": [["address", "locality"], ["age_over", 19]]}
    ]

    table = invoke("show", *_common(files, url))
    assert table.exit_code == 0
    assert "ISSUER" in table.stdout and "revoked" in table.stdout and "retired" in table.stdout
    assert "Youth allowance counter" in table.stdout


def test_refusals_exit_1_with_the_reason(tmp_path: Path, served: tuple[RegistryFiles, str]) -> None:
    files, url = served
    unknown = invoke("revoke-key", *_common(files, url), "--issuer", ISSUER, "--kid", "nope")
    assert unknown.exit_code == 1
    assert "issuer_unknown" in unknown.stderr

    private_jwk, _ = _jwk_file(tmp_path, private=True)
    private = invoke(
        "accredit-issuer", *_common(files, url), "--issuer", ISSUER, "--jwk-file",
        str(private_jwk), "--vct", "v", "--status-base-url", "https://x.example/s",
        "--not-after", "2031-01-01",
    )  # fmt: skip
    assert private.exit_code == 1
    assert "private_key_material" in private.stderr

    token_file = tmp_path / "wrong.token"
    token_file.write_text("not-the-token")
    token_file.chmod(0o600)
    public_jwk, _ = _jwk_file(tmp_path)
    wrong = invoke(
        "accredit-issuer", *_common(files, url), "--token-file", str(token_file),
        "--issuer", ISSUER, "--jwk-file", str(public_jwk), "--vct", "v",
        "--status-base-url", "https://x.example/s", "--not-after", "2031-01-01",
    )  # fmt: skip
    assert wrong.exit_code == 1
    assert "unauthorized" in wrong.stderr
    assert tree_size(url) == 0

    down = invoke("show", "--registry", "http://127.0.0.1:9", "--data-dir", str(files.data_dir))
    assert down.exit_code == 1 and "log_unavailable" in down.stderr


def test_missing_options_are_usage_errors(served: tuple[RegistryFiles, str]) -> None:
    files, url = served
    result = invoke("retire-key", *_common(files, url), "--issuer", ISSUER)
    assert result.exit_code == 2
    bad_time = invoke("revoke-key", *_common(files, url), "--issuer", ISSUER, "--kid", "k",
                      "--at", "yesterday")  # fmt: skip
    assert bad_time.exit_code == 2


# -- bundles -----------------------------------------------------------------------------------


def test_bundles_export_verify_and_detect_tampering(tmp_path: Path) -> None:
    files = init_registry(tmp_path / "data")
    witness, witness_vkey = witness_server(tmp_path, files.log_vkey)
    with witness:
        settings = RegistrySettings(
            data_dir=files.data_dir, witnesses=[WitnessEndpoint(vkey=witness_vkey, url=witness.url)]
        )
        with ThreadServer(create_app(load_runtime(settings))) as server:
            jwk, _ = _jwk_file(tmp_path)
            added = invoke(
                "accredit-issuer", *_common(files, server.url), "--issuer", ISSUER,
                "--jwk-file", str(jwk), "--vct", "v",
                "--status-base-url", "https://district.example/status",
                "--not-after", "2031-01-01",
            )  # fmt: skip
            assert added.exit_code == 0, added.output
            wait_for_checkpoint(server.url, 1)
            files.write_trust_config([witness_vkey], quorum=1)
            bundle = tmp_path / "bundle.json"
            exported = invoke("export-bundle", *_common(files, server.url), "--out", str(bundle))
            assert exported.exit_code == 0, exported.output

    # Verified offline, with the registry and the witness gone.
    verified = invoke("verify-bundle", str(bundle), "--data-dir", str(files.data_dir), "--json")
    assert verified.exit_code == 0, verified.output
    summary = json_loads_object(verified.stdout)
    assert summary["size"] == 1 and summary["stale"] is False
    assert list(summary["witness_timestamps"]) == ["witness.test/w1"]

    document = json_loads_object(bundle.read_text())
    document["entries"][0]["event"]["vct"] = ["w"]
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json_dumps(document))
    refused = invoke("verify-bundle", str(tampered), "--data-dir", str(files.data_dir))
    assert refused.exit_code == 1 and "log_root_mismatch" in refused.stderr

    # Without witnesses no age can be established: the bundle is stale.
    files.write_trust_config()
    stale = invoke("verify-bundle", str(bundle), "--data-dir", str(files.data_dir))
    assert stale.exit_code == 1 and "trust_stale" in stale.stderr
    allowed = invoke("verify-bundle", str(bundle), "--data-dir", str(files.data_dir),
                     "--allow-stale")  # fmt: skip
    assert allowed.exit_code == 0 and "STALE" in allowed.stdout


# -- the witness sub-app and small parsers -------------------------------------------------------


def test_witness_commands_are_mounted(tmp_path: Path) -> None:
    listed = invoke("witness", "--help")
    assert listed.exit_code == 0 and "serve" in listed.stdout
    key_file = tmp_path / "w.key"
    created = invoke("witness", "init", "--key-file", str(key_file), "--name", "witness.test/w9")
    assert created.exit_code == 0, created.output
    assert created.stdout.startswith("witness.test/w9+")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_parse_time_and_allow() -> None:
    assert parse_time("1700000000") == 1_700_000_000
    assert parse_time("2024-01-01") == 1_704_067_200
    assert parse_time("2024-01-01T09:00:00+09:00") == 1_704_067_200
    with pytest.raises(typer.BadParameter):
        parse_time("soon")
    assert parse_allow("https://x.example/vc=a.b,c.*.0") == {
        "vct": "https://x.example/vc",
        "claims": [["a", "b"], ["c", None, 0]],
    }
    for bad in ("no-equals", "=a", "v=", "v=a..b"):
        with pytest.raises(typer.BadParameter):
            parse_allow(bad)
