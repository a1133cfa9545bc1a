"""The sealed store: Argon2id + SecretBox, atomic writes, the previous copy, the lock.

Most tests use :class:`UnsafeFastKdfForTests` (passed as code); one seals at the real
moderate limits to show the default works and refuses a header that weakens it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civic.encoding import b64url_decode, b64url_encode
from civic.errors import CivicError, ReasonCode
from wallet_cli.model import (
    CredentialCopy,
    HistoryEntry,
    StoredCredential,
    TrustSettings,
    WalletData,
    merge,
    new_credential_id,
    pick_copy,
)
from wallet_cli.store import (
    MODERATE,
    UnsafeFastKdfForTests,
    WalletStore,
    atomic_write,
    check_new_passphrase,
    file_lock,
    wallet_home,
)

PASSPHRASE = "correct horse battery staple"
FAST = UnsafeFastKdfForTests()


def store_in(home: Path, passphrase: str = PASSPHRASE, **kwargs: object) -> WalletStore:
    return WalletStore(home, lambda: passphrase, unsafe_kdf=FAST, **kwargs)  # type: ignore[arg-type]


def credential(credential_id: str = "0a1b2c3d", copies: int = 2) -> StoredCredential:
    return StoredCredential(
        id=credential_id,
        vct="urn:civic:vct:residency:1",
        issuer="https://issuer.example",
        configuration_id="residency",
        type_names=("Residency certificate", "거주 증명서"),
        issuer_names=("District", "구청"),
        received_at=1_800_000_000,
        issued_at=1_800_000_000,
        not_before=None,
        expires_at=1_900_000_000,
        copies=[
            CredentialCopy(f"jws{i}~", {"kty": "OKP", "d": f"secret{i}"}) for i in range(copies)
        ],
    )


def wallet(**kwargs: object) -> WalletData:
    return WalletData(created_at=1_800_000_000, alg="EdDSA", **kwargs)  # type: ignore[arg-type]


def reason_of(excinfo: pytest.ExceptionInfo[CivicError]) -> ReasonCode:
    return excinfo.value.reason


def snapshot(home: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(home.iterdir()) if p.is_file()}


# --- sealing ------------------------------------------------------------------------------


def test_a_store_round_trips_and_reveals_nothing_on_disk(tmp_path: Path) -> None:
    store = store_in(tmp_path / "w")
    store.create(wallet(credentials=[credential()]))
    data = store.path.read_bytes()
    assert b"secret0" not in data and b"Residency" not in data
    envelope = json.loads(data)
    assert envelope["format"] == "civic-wallet-sealed/1" and envelope["kind"] == "store"
    assert envelope["kdf"]["alg"] == "argon2id13"
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "w").stat().st_mode & 0o777 == 0o700
    again = store_in(tmp_path / "w").read()
    assert again.to_json() == wallet(credentials=[credential()]).to_json()
    assert "secret" not in repr(again) and "secret" not in repr(again.credentials[0].copies[0])


def test_every_write_uses_a_fresh_nonce_and_keeps_the_previous_copy(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.create(wallet())
    first = store.path.read_bytes()
    assert not store.previous_path.exists()
    with store.transaction() as data:
        data.credentials.append(credential())
    second = store.path.read_bytes()
    assert store.previous_path.read_bytes() == first
    with store.transaction():
        pass
    assert store.path.read_bytes() != second  # same content, new nonce
    assert store.previous_path.read_bytes() == second
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_the_default_limits_are_moderate_and_a_weaker_header_is_refused(tmp_path: Path) -> None:
    real = WalletStore(tmp_path / "real", lambda: PASSPHRASE)
    real.create(wallet())
    kdf = json.loads(real.path.read_bytes())["kdf"]
    assert (kdf["opslimit"], kdf["memlimit"]) == (MODERATE.opslimit, MODERATE.memlimit)
    assert WalletStore(tmp_path / "real", lambda: PASSPHRASE).read().alg == "EdDSA"
    # A fast store cannot be opened by a wallet that was not handed the unsafe KDF in code.
    fast = store_in(tmp_path / "fast")
    fast.create(wallet())
    with pytest.raises(CivicError) as excinfo:
        WalletStore(tmp_path / "fast", lambda: PASSPHRASE).read()
    assert reason_of(excinfo) is ReasonCode.WALLET_CORRUPTED
    assert "limits" in excinfo.value.detail


def test_wrong_passphrase_is_clear_and_changes_nothing(tmp_path: Path) -> None:
    store_in(tmp_path).create(wallet(credentials=[credential()]))
    before = snapshot(tmp_path)
    wrong = store_in(tmp_path, "not the right passphrase")
    with pytest.raises(CivicError) as excinfo:
        wrong.read()
    assert reason_of(excinfo) is ReasonCode.WALLET_PASSPHRASE_WRONG
    with pytest.raises(CivicError) as excinfo, wrong.transaction() as data:
        data.credentials.clear()
    assert reason_of(excinfo) is ReasonCode.WALLET_PASSPHRASE_WRONG
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "digest", "kind", "empty"])
def test_a_damaged_store_is_reported_and_never_overwritten(tmp_path: Path, damage: str) -> None:
    store = store_in(tmp_path)
    store.create(wallet())
    with store.transaction() as data:
        data.credentials.append(credential())
    good_previous = store.previous_path.read_bytes()
    raw = store.path.read_bytes()
    envelope = json.loads(raw)
    if damage == "flip":
        sealed = bytearray(b64url_decode(envelope["sealed"]))
        sealed[40] ^= 1
        envelope["sealed"] = b64url_encode(bytes(sealed))
        damaged = json.dumps(envelope).encode()
    elif damage == "truncate":
        damaged = raw[: len(raw) // 2]
    elif damage == "garbage":
        damaged = os.urandom(200)
    elif damage == "digest":
        envelope["sha256"] = b64url_encode(bytes(32))
        damaged = json.dumps(envelope).encode()
    elif damage == "kind":
        envelope["kind"] = "backup"
        damaged = json.dumps(envelope).encode()
    else:
        damaged = b""
    store.path.write_bytes(damaged)
    fresh = store_in(tmp_path)
    with pytest.raises(CivicError) as excinfo, fresh.transaction() as data:
        data.credentials.clear()
    assert reason_of(excinfo) is ReasonCode.WALLET_CORRUPTED
    assert str(store.previous_path) in excinfo.value.detail
    assert store.path.read_bytes() == damaged
    assert store.previous_path.read_bytes() == good_previous
    with pytest.raises(CivicError):
        fresh.create(wallet())  # init refuses too: a store is there, readable or not
    assert store.path.read_bytes() == damaged


def test_undecodable_contents_under_a_valid_seal_are_corrupted(tmp_path: Path) -> None:
    from wallet_cli.store import new_key, seal

    key = new_key(PASSPHRASE, UnsafeFastKdfForTests.limits)
    tmp_path.mkdir(exist_ok=True)
    for plaintext in (b"not json", b'{"format":"civic-wallet-store/1"}', b"[]"):
        (tmp_path / "wallet.sealed").write_bytes(seal(plaintext, key, kind="store"))
        with pytest.raises(CivicError) as excinfo:
            store_in(tmp_path).read()
        assert reason_of(excinfo) is ReasonCode.WALLET_CORRUPTED


def test_an_exception_inside_a_transaction_writes_nothing(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.create(wallet())
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError), store.transaction() as data:
        data.credentials.append(credential())
        raise RuntimeError("boom")
    assert snapshot(tmp_path) == before


def test_missing_and_existing_wallets(tmp_path: Path) -> None:
    store = store_in(tmp_path / "none")
    with pytest.raises(CivicError) as excinfo:
        store.read()
    assert reason_of(excinfo) is ReasonCode.WALLET_NOT_FOUND
    store.create(wallet())
    with pytest.raises(CivicError) as excinfo:
        store.create(wallet())
    assert reason_of(excinfo) is ReasonCode.WALLET_EXISTS


def test_weak_passphrases_are_refused(tmp_path: Path) -> None:
    for weak in ("short", "password", "aaaaaaaaaaaaaa", "1234567890"):
        with pytest.raises(CivicError):
            check_new_passphrase(weak)
        with pytest.raises(CivicError):
            store_in(tmp_path / "weak", weak).create(wallet())
    assert not (tmp_path / "weak").exists()
    check_new_passphrase("비밀번호는 길어야 합니다")


def test_passphrases_are_normalized_to_nfc(tmp_path: Path) -> None:
    composed = "한국어 비밀 문장입니다"
    import unicodedata

    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    store_in(tmp_path, composed).create(wallet())
    assert store_in(tmp_path, decomposed).read().alg == "EdDSA"


# --- files and locks ----------------------------------------------------------------------


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"one")
    atomic_write(target, b"two", keep_previous=tmp_path / "f.prev")
    assert (target.read_bytes(), (tmp_path / "f.prev").read_bytes()) == (b"two", b"one")
    assert target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing-dir" / "f", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "f.prev"]


def test_a_held_lock_makes_others_wait_then_give_up(tmp_path: Path) -> None:
    store = store_in(tmp_path, lock_timeout=0.2)
    store.create(wallet())
    with file_lock(tmp_path / "wallet.lock", exclusive=True, timeout=1):
        with pytest.raises(CivicError) as excinfo:
            store.read()
        assert reason_of(excinfo) is ReasonCode.WALLET_BUSY
    with file_lock(tmp_path / "wallet.lock", exclusive=False, timeout=1):
        assert store.read().alg == "EdDSA"  # readers share
        with pytest.raises(CivicError) as excinfo, store.transaction():
            pass
        assert reason_of(excinfo) is ReasonCode.WALLET_BUSY


def _add_credentials(home: str, prefix: str, count: int, start: Any = None) -> None:
    store = store_in(Path(home))
    store.read()  # derive the key before the race starts
    if start is not None:
        start.wait(30)
    for index in range(count):
        with store.transaction() as data:
            data.credentials.append(credential(f"{prefix}{index:06x}", copies=1))


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    store_in(tmp_path).create(wallet())
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    workers = [
        context.Process(target=_add_credentials, args=(str(tmp_path), prefix, 25, start))
        for prefix in ("aa", "bb")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    ids = sorted(c.id for c in store_in(tmp_path).read().credentials)
    assert ids == sorted(f"{p}{i:06x}" for p in ("aa", "bb") for i in range(25))


def test_threads_sharing_a_home_serialise_too(tmp_path: Path) -> None:
    store_in(tmp_path).create(wallet())
    threads = [
        threading.Thread(target=_add_credentials, args=(str(tmp_path), prefix, 8))
        for prefix in ("c1", "c2", "c3")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store_in(tmp_path).read().credentials) == 24


# --- backups ------------------------------------------------------------------------------


def test_backups_have_their_own_passphrase_and_kind(tmp_path: Path) -> None:
    store = store_in(tmp_path / "w")
    store.create(wallet(credentials=[credential()]))
    backup = tmp_path / "backup.cwb"
    store.export_backup(backup, "another long passphrase")
    assert json.loads(backup.read_bytes())["kind"] == "backup"
    assert store.read_backup(backup, "another long passphrase").credentials[0].id == "0a1b2c3d"
    with pytest.raises(CivicError) as excinfo:
        store.read_backup(backup, PASSPHRASE)
    assert reason_of(excinfo) is ReasonCode.WALLET_PASSPHRASE_WRONG
    with pytest.raises(CivicError):
        store.export_backup(backup, "another long passphrase")  # never overwritten
    with pytest.raises(CivicError) as excinfo:
        store.read_backup(store.path, PASSPHRASE)  # a store is not a backup
    assert reason_of(excinfo) is ReasonCode.WALLET_CORRUPTED


# --- the model ----------------------------------------------------------------------------


def test_wallet_home_follows_the_environment(tmp_path: Path) -> None:
    assert wallet_home({"CIVIC_WALLET_HOME": str(tmp_path)}) == tmp_path
    assert wallet_home({"XDG_DATA_HOME": "/data"}) == Path("/data/civic-wallet")
    assert wallet_home({"XDG_DATA_HOME": "relative"}) == Path.home() / ".local/share/civic-wallet"
    assert wallet_home({}) == Path.home() / ".local/share/civic-wallet"


def test_copies_are_used_least_used_first() -> None:
    held = credential(copies=3)
    order = []
    for _ in range(5):
        index = pick_copy(held)
        order.append(index)
        held.copies[index].uses += 1
    assert order == [0, 1, 2, 0, 1]
    assert held.unused_copies == 0


def test_ids_and_lookup() -> None:
    taken = {"00000000"}
    draws = iter([bytes(4), b"\x00\x00\x00\x01"])
    assert new_credential_id(taken, lambda n: next(draws)) == "00000001"
    data = wallet(credentials=[credential("0a1b2c3d"), credential("0a1b9999")])
    assert data.find("0a1b2c3d").id == "0a1b2c3d"
    assert data.find("0a1b9").id == "0a1b9999"
    with pytest.raises(CivicError) as excinfo:
        data.find("0a1b")
    assert reason_of(excinfo) is ReasonCode.MALFORMED_INPUT
    with pytest.raises(CivicError) as excinfo:
        data.find("ffff")
    assert reason_of(excinfo) is ReasonCode.NOT_FOUND


def test_merging_a_backup_is_idempotent() -> None:
    entry = HistoryEntry(1, "qr", None, None, "0a1b2c3d", "urn:x", (("a",),), "shown")
    ours = wallet(credentials=[credential("0a1b2c3d")])
    theirs = wallet(
        credentials=[credential("0a1b2c3d"), credential("11111111")],
        history=[entry],
        trust=TrustSettings("https://r.example", {"k": 1}),
    )
    assert merge(ours, theirs) == (1, 1)
    assert merge(ours, theirs) == (0, 0)
    assert [c.id for c in ours.credentials] == ["0a1b2c3d", "11111111"]
    assert ours.trust is not None and ours.trust.registry_url == "https://r.example"


_paths = st.lists(
    st.lists(st.one_of(st.text(min_size=1, max_size=5), st.integers(0, 9)), min_size=1, max_size=3),
    max_size=3,
)


@settings(max_examples=50)
@given(
    history=st.lists(
        st.builds(
            HistoryEntry,
            at=st.integers(0, 2**40),
            channel=st.sampled_from(["openid4vp", "qr"]),
            verifier=st.none() | st.text(max_size=10),
            purpose=st.none() | st.text(max_size=10),
            credential_id=st.text(max_size=8),
            vct=st.text(max_size=8),
            claims=_paths.map(lambda ps: tuple(tuple(p) for p in ps)),
            result=st.none() | st.text(max_size=5),
        ),
        max_size=4,
    ),
    copies=st.integers(1, 3),
)
def test_the_model_round_trips_through_json(history: list[HistoryEntry], copies: int) -> None:
    data = wallet(credentials=[credential(copies=copies)], history=history)
    assert WalletData.from_json(json.loads(json.dumps(data.to_json()))).to_json() == data.to_json()


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(format="other"),
        lambda d: d.update(alg="RS256"),
        lambda d: d["credentials"][0].update(id="ZZ"),
        lambda d: d["credentials"][0].update(copies=[]),
        lambda d: d["credentials"][0]["copies"][0].update(uses="1"),
        lambda d: d["credentials"].append(dict(d["credentials"][0])),
        lambda d: d["history"].append({"at": 1, "channel": "smoke signals"}),
        lambda d: d.update(created_at=True),
    ],
)
def test_the_model_refuses_what_it_did_not_write(change: object) -> None:
    document = json.loads(json.dumps(wallet(credentials=[credential()]).to_json()))
    change(document)  # type: ignore[operator]
    with pytest.raises(CivicError) as excinfo:
        WalletData.from_json(document)
    assert reason_of(excinfo) is ReasonCode.WALLET_CORRUPTED
