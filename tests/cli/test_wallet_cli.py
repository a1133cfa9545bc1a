"""``civic-wallet`` through Typer's CliRunner, with no services: the store, list/show/delete,
the offline QR, history, export/import, output formats and exit codes.

Credentials come from the test city (tests/unit/verifier_city.py: real keys, a folded trust
registry, SD-JWT VCs bound to holder keys the wallet owns) and are put in the store with its
API; receiving and presenting over the network are tested end to end in tests/e2e.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from civic.clock import FixedClock
from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, YOUTH_ALLOWANCE_VCT, get_type
from civic.jose import PrivateKey
from civic.qr import decode_png, render_png, unpack
from civic.sdjwt import KeyBindingExpectation, parse_sd_jwt
from civic.sdjwtvc import verify_credential
from tests.unit.verifier_city import CLIENT_ID, ISSUER, NOW, City
from wallet_cli.cli import WalletRuntime, app
from wallet_cli.model import CredentialCopy, StoredCredential, TrustSettings
from wallet_cli.store import UnsafeFastKdfForTests, WalletStore
from wallet_cli.trust import _save_cache

PASSPHRASE = "a long passphrase for the wallet"
BACKUP_PASSPHRASE = "another long passphrase, for the backup"
ROOT = Path(__file__).resolve().parents[2]
ALLOWED = [{"vct": RESIDENCY_VCT, "claims": [["age_over_19"], ["address", "region"]]}]

runner = CliRunner()


@dataclass
class Wallet:
    home: Path
    city: City
    ids: dict[str, str]

    @property
    def runtime(self) -> WalletRuntime:
        return WalletRuntime(
            unsafe_kdf=UnsafeFastKdfForTests(), now=FixedClock(NOW), home=self.home
        )

    def run(self, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> Any:
        environment = {"CIVIC_WALLET_PASSPHRASE": PASSPHRASE, **(env or {})}
        return runner.invoke(app, list(args), env=environment, input=input, obj=self.runtime)

    def ok(self, *args: str, **kwargs: Any) -> Any:
        result = self.run(*args, **kwargs)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.ok(*args, "--json", **kwargs).stdout)

    def store(self) -> WalletStore:
        return WalletStore(self.home, lambda: PASSPHRASE, unsafe_kdf=UnsafeFastKdfForTests())

    def files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.home.iterdir()) if p.is_file()}


def add_credential(store: WalletStore, city: City, vct: str, copies: int = 3) -> str:
    """Issue ``copies`` copies, each to a fresh holder key, and store them as ``receive`` does."""
    batch: list[CredentialCopy] = []
    for _ in range(copies):
        city.holder = PrivateKey.generate()
        batch.append(CredentialCopy(city.issue(vct), city.holder.export_private_jwk()))
    ctype = get_type(vct)
    with store.transaction() as data:
        record = StoredCredential(
            id=f"{len(data.credentials) + 1:x}" * 8,
            vct=vct,
            issuer=ISSUER,
            configuration_id=ctype.key,
            type_names=(ctype.type_name("en"), ctype.type_name("ko")),
            issuer_names=("Mapo-gu office", "마포구청"),
            received_at=NOW - 100,
            issued_at=NOW - 86_400,
            not_before=None,
            expires_at=NOW + 300 * 86_400,
            copies=batch,
        )
        data.credentials.append(record)
    return record.id


def closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def city() -> City:
    # Status lists on a loopback port nobody listens on: "offline" without waiting for DNS.
    city = City(status_base=f"http://127.0.0.1:{closed_loopback_port()}/status")
    city.accredit_verifier(ALLOWED)
    return city


@pytest.fixture
def wallet(tmp_path: Path, city: City) -> Iterator[Wallet]:
    held = Wallet(tmp_path / "wallet", city, {})
    snapshot, config = city.snapshot()
    config_file = tmp_path / "trust-config.json"
    config_file.write_text(json.dumps(city.trust_config_json(config)))
    held.ok("init", "--trust-config", str(config_file))
    _save_cache(held.home, snapshot, NOW - 60)
    held.ids = {
        vct: add_credential(held.store(), city, vct) for vct in (RESIDENCY_VCT, YOUTH_ALLOWANCE_VCT)
    }
    yield held


# --- init ---------------------------------------------------------------------------------


def test_init_creates_a_sealed_wallet_and_refuses_a_second(tmp_path: Path, city: City) -> None:
    held = Wallet(tmp_path / "w", city, {})
    out = held.json("init", "--alg", "ES256")
    assert out["alg"] == "ES256" and out["kdf"]["alg"] == "argon2id13"
    assert Path(out["store"]) == tmp_path / "w" / "wallet.sealed"
    assert held.store().read().alg == "ES256"
    before = held.files()
    again = held.run("init")
    assert again.exit_code == 1 and "wallet_exists" in again.stderr
    assert held.files() == before


@pytest.mark.parametrize(
    "args",
    [
        ["init", "--alg", "RS256"],
        ["init", "--registry-url", "https://registry.example"],
        ["init", "--trust-config", "/nonexistent/trust-config.json"],
        ["no-such-command"],
        ["list", "--lang", "fr"],
        ["qr", "x", "--disclose", "a", "--nonce", "n"],
        ["receive"],
        ["present", "openid4vp://?x=1", "--qr-image", "x.png"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, city: City, args: list[str]) -> None:
    held = Wallet(tmp_path / "w", city, {})
    result = held.run(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""


def test_weak_and_mistyped_passphrases(tmp_path: Path, city: City) -> None:
    held = Wallet(tmp_path / "w", city, {})
    weak = held.run("init", env={"CIVIC_WALLET_PASSPHRASE": "secret"})
    assert weak.exit_code == 2 and "passphrase" in weak.stderr
    assert not (tmp_path / "w" / "wallet.sealed").exists()
    mistyped = held.run(
        "init", env={"CIVIC_WALLET_PASSPHRASE": ""}, input="long enough one\nlong enough two\n"
    )
    assert mistyped.exit_code != 0
    assert not (tmp_path / "w" / "wallet.sealed").exists()
    typed = held.run(
        "init", env={"CIVIC_WALLET_PASSPHRASE": ""}, input=f"{PASSPHRASE}\n{PASSPHRASE}\n"
    )
    assert typed.exit_code == 0, typed.stderr
    assert PASSPHRASE not in typed.stdout + typed.stderr  # hidden input is not echoed


def test_a_bad_trust_config_is_refused(tmp_path: Path, city: City) -> None:
    config = tmp_path / "bad.json"
    config.write_text('{"origin": "x"}')
    held = Wallet(tmp_path / "w", city, {})
    result = held.run("init", "--trust-config", str(config))
    assert result.exit_code == 2 and "trust config" in result.stderr


# --- list / show / delete -----------------------------------------------------------------


def test_list_as_a_table_and_as_json(wallet: Wallet) -> None:
    table = wallet.ok("list").stdout.splitlines()
    assert table[0].split() == ["id", "type", "issuer", "expires", "unused", "copies"]
    assert any("Residency certificate" in line and "3/3" in line for line in table)
    korean = wallet.ok("list", "--lang", "ko").stdout
    assert "거주 증명서" in korean and "서울시 청년수당" in korean and "마포구청" in korean
    listed = wallet.json("list")["credentials"]
    assert [c["vct"] for c in listed] == [RESIDENCY_VCT, YOUTH_ALLOWANCE_VCT]
    assert listed[0]["unused_copies"] == 3 and listed[0]["issuer_url"] == ISSUER
    assert "서연" not in json.dumps(listed)  # no claims in the list


def test_korean_columns_line_up(wallet: Wallet) -> None:
    from wallet_cli.render import display_width

    lines = wallet.ok("list", "--lang", "ko").stdout.splitlines()
    header, rule, *rows = lines
    type_column = header.index("type")
    issuer_column = header.index("issuer")
    for row in rows:
        # Everything before the issuer column takes exactly as many terminal cells.
        prefix = row[: row.index("마포구청")]
        assert display_width(prefix) == display_width(header[:issuer_column])
        assert display_width(row[:type_column]) == type_column
    assert set(rule.replace(" ", "")) == {"-"}


def test_show_offline_lists_claims_by_display_name(wallet: Wallet) -> None:
    residency = wallet.ids[RESIDENCY_VCT]
    out = wallet.ok("show", residency[:4], "--offline").stdout
    assert "Given name" in out and "서연" in out
    assert "Address › Metropolitan city or province" in out and "Seoul" in out
    assert "not checked (--offline)" in out
    shown = wallet.json("show", residency, "--offline", "--lang", "ko")
    names = {tuple(c["path"]): (c["name"], c["display"]) for c in shown["claims"]}
    assert names[("address", "region")] == ("주소 › 시·도", "서울특별시")
    assert names[("age_over_19",)] == ("만 19세 이상", "예")
    assert shown["validity"] == "valid" and shown["status"] == {"checked": False}
    # The type's own order (its schema's), not the random order of the disclosures.
    order = get_type(RESIDENCY_VCT).disclosable_paths
    assert [tuple(c["path"]) for c in shown["claims"]] == [p for p in order if p != ("address",)]


def test_show_online_without_a_registry_says_why_status_is_unknown(wallet: Wallet) -> None:
    shown = wallet.json("show", wallet.ids[RESIDENCY_VCT])
    # No registry URL is configured: the cached state serves, and nobody serves the status
    # lists: unknown, with the reason, never "valid".
    assert shown["status"]["checked"] is True
    assert shown["status"]["summary"] == "unknown"
    assert {c["reason"] for c in shown["status"]["copies"]} == {"status_list_unavailable"}


def test_show_of_an_unknown_id(wallet: Wallet) -> None:
    result = wallet.run("show", "ffffffff", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stderr) == {
        "error": "not_found",
        "detail": "no credential with that id in the wallet",
    }


def test_delete_asks_first(wallet: Wallet) -> None:
    residency = wallet.ids[RESIDENCY_VCT]
    before = wallet.files()
    declined = wallet.run("delete", residency, input="n\n")
    assert declined.exit_code == 1 and "consent_declined" in declined.stderr
    assert wallet.files() == before
    assert wallet.ok("delete", residency, input="y\n").stdout.endswith(f"deleted {residency}\n")
    assert wallet.json("delete", wallet.ids[YOUTH_ALLOWANCE_VCT], "--yes") == {
        "deleted": wallet.ids[YOUTH_ALLOWANCE_VCT]
    }
    assert wallet.json("list") == {"credentials": []}


# --- offline QR ---------------------------------------------------------------------------


def test_qr_with_a_challenge_carries_exactly_the_chosen_claims(
    wallet: Wallet, tmp_path: Path
) -> None:
    residency = wallet.ids[RESIDENCY_VCT]
    png = tmp_path / "qr.png"
    result = wallet.ok(
        "qr",
        residency,
        "--disclose",
        "age_over_19,address.region",
        "--nonce",
        "counter-nonce-0123456789",
        "--aud",
        CLIENT_ID,
        "--png",
        str(png),
    )
    terminal = result.stdout
    assert "▀" in terminal or "▄" in terminal
    assert "QR version" in result.stderr
    text = decode_png(png.read_bytes())
    assert png.stat().st_mode & 0o777 == 0o600
    presentation = unpack(text)
    verified = verify_credential(
        presentation,
        wallet.city.agency.public_key,
        key_binding=KeyBindingExpectation(CLIENT_ID, "counter-nonce-0123456789"),
        now=FixedClock(NOW),
    )
    assert set(verified.disclosed) == {("address",), ("address", "region"), ("age_over_19",)}
    assert verified.claims["address"] == {"region": "Seoul"}
    entry = wallet.json("history")["history"][-1]
    assert entry == {
        "at": NOW,
        "channel": "qr",
        "verifier": CLIENT_ID,
        "purpose": "Counter at the Mapo-gu district office",
        "credential_id": residency,
        "vct": RESIDENCY_VCT,
        "claims": [["age_over_19"], ["address", "region"]],
        "result": "shown",
    }


def test_qr_json_reports_the_version_and_uses_a_fresh_copy_each_time(
    wallet: Wallet, tmp_path: Path
) -> None:
    residency = wallet.ids[RESIDENCY_VCT]
    holders = []
    for index in range(4):
        result = wallet.run(
            "qr",
            residency,
            "--disclose",
            "age_over_19",
            "--png",
            str(tmp_path / f"{index}.png"),
            "--json",
        )
        assert result.exit_code == 0, result.stderr
        out = json.loads(result.stdout)
        assert 1 <= out["qr_version"] <= 40 and out["key_binding"] is False
        parsed = parse_sd_jwt(unpack(out["text"]))
        assert parsed.kb_jwt is None
        holders.append(json.dumps(parsed.payload["cnf"]))
        if index == 3:
            assert "linked" in result.stderr
    assert len(set(holders[:3])) == 3 and holders[3] == holders[0]
    listed = wallet.json("list")["credentials"][0]
    assert listed["unused_copies"] == 0


def test_qr_from_a_challenge_image(wallet: Wallet, tmp_path: Path) -> None:
    challenge = tmp_path / "challenge.png"
    challenge.write_bytes(render_png(json.dumps({"aud": CLIENT_ID, "nonce": "n-from-the-counter"})))
    out = wallet.json(
        "qr",
        wallet.ids[RESIDENCY_VCT],
        "--disclose",
        "age_over_19",
        "--challenge-image",
        str(challenge),
        "--png",
        str(tmp_path / "out.png"),
    )
    kb = parse_sd_jwt(unpack(out["text"])).kb_jwt
    assert kb is not None
    from civic.jose import parse_jws

    assert parse_jws(kb).payload_json()["nonce"] == "n-from-the-counter"


def test_qr_refuses_claims_beyond_a_known_counters_accreditation(
    wallet: Wallet, tmp_path: Path
) -> None:
    before = wallet.files()
    result = wallet.run(
        "qr",
        wallet.ids[RESIDENCY_VCT],
        "--disclose",
        "birth_date",
        "--nonce",
        "n-0123456789",
        "--aud",
        CLIENT_ID,
        "--png",
        str(tmp_path / "x.png"),
    )
    assert result.exit_code == 1 and "verifier_claims_not_accredited" in result.stderr
    assert wallet.files() == before and not (tmp_path / "x.png").exists()
    missing = wallet.run("qr", wallet.ids[RESIDENCY_VCT], "--disclose", "vaccination.dn")
    assert missing.exit_code == 2 and "claim_missing" in missing.stderr


# --- history ------------------------------------------------------------------------------


def test_history_table(wallet: Wallet, tmp_path: Path) -> None:
    assert wallet.ok("history").stderr.strip() == "No presentations yet."
    wallet.ok(
        "qr",
        wallet.ids[RESIDENCY_VCT],
        "--disclose",
        "age_over_19",
        "--png",
        str(tmp_path / "q.png"),
    )
    table = wallet.ok("history", "--lang", "ko").stdout
    assert "(no challenge)" in table and "만 19세 이상" in table and "shown" in table


# --- safety through the CLI ---------------------------------------------------------------


def test_a_wrong_passphrase_changes_nothing(wallet: Wallet, tmp_path: Path) -> None:
    before = wallet.files()
    wrong = {"CIVIC_WALLET_PASSPHRASE": "this is not the passphrase"}
    for args in (
        ["list"],
        ["delete", wallet.ids[RESIDENCY_VCT], "--yes"],
        [
            "qr",
            wallet.ids[RESIDENCY_VCT],
            "--disclose",
            "age_over_19",
            "--png",
            str(tmp_path / "q"),
        ],
    ):
        result = wallet.run(*args, env=wrong)
        assert result.exit_code == 1
        assert result.stderr.startswith("civic-wallet: wallet_passphrase_wrong: wrong passphrase")
    assert wallet.files() == before


def test_a_corrupted_store_is_kept_as_it_is(wallet: Wallet) -> None:
    store = wallet.home / "wallet.sealed"
    previous = (wallet.home / "wallet.sealed.prev").read_bytes()
    damaged = store.read_bytes()[:-40] + b"\n"
    store.write_bytes(damaged)
    for args in (["list"], ["delete", "11111111", "--yes"], ["init"]):
        result = wallet.run(*args)
        assert result.exit_code == 1
        assert "wallet_corrupted" in result.stderr or "wallet_exists" in result.stderr
    assert store.read_bytes() == damaged
    assert (wallet.home / "wallet.sealed.prev").read_bytes() == previous
    # The previous copy (the wallet before its last write, when the second credential was
    # added) is a working wallet: moving it into place recovers it.
    store.write_bytes(previous)
    assert [c["id"] for c in wallet.json("list")["credentials"]] == ["11111111"]


# --- export / import ----------------------------------------------------------------------


def test_export_then_import_into_a_fresh_wallet_recovers_everything(
    wallet: Wallet, tmp_path: Path
) -> None:
    wallet.ok(
        "qr",
        wallet.ids[RESIDENCY_VCT],
        "--disclose",
        "age_over_19",
        "--png",
        str(tmp_path / "q.png"),
    )
    backup = tmp_path / "wallet.backup"
    env = {"CIVIC_WALLET_BACKUP_PASSPHRASE": BACKUP_PASSPHRASE}
    exported = wallet.json("export", str(backup), env=env)
    assert exported == {"backup": str(backup), "credentials": 2, "history": 1}
    assert b"Residency" not in backup.read_bytes()
    again = wallet.run("export", str(backup), env=env)
    assert again.exit_code == 1  # an existing file is never overwritten

    fresh = Wallet(tmp_path / "fresh", wallet.city, {})
    fresh_env = env | {"CIVIC_WALLET_PASSPHRASE": "the new device's passphrase"}
    restored = fresh.json("import", str(backup), env=fresh_env)
    assert restored == {"restored": True, "credentials": 2, "history": 1}
    original = wallet.store().read()
    copy = WalletStore(
        fresh.home, lambda: "the new device's passphrase", unsafe_kdf=UnsafeFastKdfForTests()
    ).read()
    assert copy.to_json() == original.to_json()
    # Every command works on the restored wallet, keys included.
    shown = fresh.json("show", wallet.ids[YOUTH_ALLOWANCE_VCT], "--offline", env=fresh_env)
    assert shown["type"] == "Seoul Youth Allowance"
    qr = fresh.json(
        "qr",
        wallet.ids[RESIDENCY_VCT],
        "--disclose",
        "age_over_19",
        "--nonce",
        "nonce-after-restore",
        "--aud",
        CLIENT_ID,
        "--png",
        str(tmp_path / "r.png"),
        env=fresh_env,
    )
    verify_credential(
        unpack(qr["text"]),
        wallet.city.agency.public_key,
        key_binding=KeyBindingExpectation(CLIENT_ID, "nonce-after-restore"),
        now=FixedClock(NOW),
    )

    # Into an existing wallet the backup merges, once.
    other = Wallet(tmp_path / "other", wallet.city, {})
    other.ok("init")
    add_credential(other.store(), other.city, VACCINATION_VCT)
    assert other.json("import", str(backup), env=env)["restored"] is False
    assert len(other.json("list")["credentials"]) == 2  # same ids as the backup's first
    wrong = fresh.run("import", str(backup), env={"CIVIC_WALLET_BACKUP_PASSPHRASE": "wrong one!"})
    assert wrong.exit_code == 1 and "wallet_passphrase_wrong" in wrong.stderr


# --- trust --------------------------------------------------------------------------------


def test_trust_show_reads_the_cache(wallet: Wallet) -> None:
    shown = wallet.json("trust", "show")
    assert shown["checkpoint_size"] == len(wallet.city.entries)
    assert shown["verifiers"][0]["verifier"] == CLIENT_ID
    assert shown["issuers"][0]["issuer"] == ISSUER
    table = wallet.ok("trust", "show").stdout
    assert CLIENT_ID in table and "Counter at the Mapo-gu district office" in table
    sync = wallet.run("trust", "sync")
    assert sync.exit_code == 1 and "log_unavailable" in sync.stderr  # no registry URL


def test_a_tampered_trust_cache_is_ignored(wallet: Wallet) -> None:
    cache = wallet.home / "trust-cache.json"
    document = json.loads(cache.read_text())
    document["bundle"]["entries"][0]["event"]["time"] += 1
    cache.write_text(json.dumps(document))
    result = wallet.run("trust", "show")
    assert result.exit_code == 1
    assert "trust_stale" in result.stderr and "refused" in result.stderr


def test_an_old_trust_cache_is_not_used(wallet: Wallet, city: City) -> None:
    snapshot, _ = city.snapshot()
    _save_cache(wallet.home, snapshot, NOW - 2 * 86_400)
    result = wallet.run("trust", "show")
    assert result.exit_code == 1 and "trust_stale" in result.stderr


def test_trust_configure_replaces_the_anchor(wallet: Wallet, tmp_path: Path) -> None:
    config = tmp_path / "trust-config.json"
    out = wallet.json(
        "trust", "configure", "--config", str(config), "--registry-url", "http://127.0.0.1:9"
    )
    assert out == {"registry_url": "http://127.0.0.1:9", "max_age": 86_400}
    assert not (wallet.home / "trust-cache.json").exists()
    data = wallet.store().read()
    assert isinstance(data.trust, TrustSettings) and data.trust.registry_url == "http://127.0.0.1:9"
    down = wallet.run("trust", "sync")
    assert down.exit_code == 1 and "trust_stale" in down.stderr and "log_unavailable" in down.stderr
    http = wallet.run(
        "trust", "configure", "--config", str(config), "--registry-url", "http://example.com"
    )
    assert http.exit_code == 2


# --- the console script -------------------------------------------------------------------


def _script(home: Path, passphrase: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CIVIC_WALLET_HOME": str(home), "CIVIC_WALLET_PASSPHRASE": passphrase}
    return subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
        [sys.executable, "-c", "from wallet_cli.cli import app; app()", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_direct_list_path_matches_typer(tmp_path: Path, city: City) -> None:
    from wallet_cli.model import WalletData

    home = tmp_path / "real"
    store = WalletStore(home, lambda: PASSPHRASE)  # the real KDF: what a citizen runs
    store.create(WalletData(created_at=NOW, alg="EdDSA"))
    add_credential(store, city, RESIDENCY_VCT)
    runtime = WalletRuntime(now=FixedClock(NOW), home=home)
    for args in (["list", "--lang", "ko"], ["--home", str(home), "list", "--lang=en", "--json"]):
        direct = _script(home, PASSPHRASE, *args)
        assert direct.returncode == 0, direct.stderr
        typer_path = runner.invoke(
            app, args, env={"CIVIC_WALLET_PASSPHRASE": PASSPHRASE}, obj=runtime
        )
        assert direct.stdout == typer_path.stdout
    wrong = _script(home, "not the passphrase", "list", "--json")
    assert wrong.returncode == 1
    assert json.loads(wrong.stderr)["error"] == "wallet_passphrase_wrong"
    # Anything else goes through Typer, with its usage errors.
    assert _script(home, PASSPHRASE, "list", "--colour").returncode == 2
