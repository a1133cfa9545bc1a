"""The witness service (registry/witness) and the log's client (registry/witness_client.py).

The main flow, the concurrency test, the restart test and the client run against uvicorn on
127.0.0.1; fine-grained refusals use the FastAPI TestClient. PostgreSQL tests run when
CIVIC_TEST_POSTGRES_URL is set, each in a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from civic.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    sign_checkpoint,
    verify_witnessed_checkpoint,
)
from civic.clock import FixedClock
from civic.errors import ReasonCode
from civic.merkle import MerkleTree, leaf_hash
from civic.note import NoteSigner, NoteVerifier, generate_note_key
from civic.witness import (
    LogState,
    WitnessSizeConflict,
    attach_cosignatures,
    check_against_state,
    encode_add_checkpoint_request,
    parse_add_checkpoint_request,
)
from registry.witness.app import create_app
from registry.witness.cli import witness_app
from registry.witness.settings import (
    WitnessConfig,
    WitnessSettingsError,
    load_config,
    load_settings,
    origin_hash,
    read_signer_key,
    write_signer_key,
)
from registry.witness.state import WitnessStore
from registry.witness_client import (
    WitnessRequestError,
    arequest_cosignature,
    request_cosignature,
)

ORIGIN = "registry.civic.example/test"
WITNESS_NAME = "witness.civic.example/w1"
T0 = 1_800_000_000
POSTGRES_URL = os.environ.get("CIVIC_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="CIVIC_TEST_POSTGRES_URL is not set: PostgreSQL tests skipped"
)


class Log:
    """A log on the client side: a Merkle tree, its note key, signed checkpoints and proofs."""

    def __init__(self, origin: str = ORIGIN, tag: bytes = b"entry", size: int = 64) -> None:
        self.origin = origin
        skey, self.vkey = generate_note_key(origin)
        self.signer = NoteSigner.from_skey(skey)
        self.tree = MerkleTree()
        self.tree.append_many(leaf_hash(b"%s %d" % (tag, i)) for i in range(size))

    def checkpoint(self, size: int) -> Checkpoint:
        return Checkpoint(self.origin, size, self.tree.root(size))

    def note(self, size: int) -> bytes:
        return sign_checkpoint(self.checkpoint(size), [self.signer])

    def proof(self, old: int, new: int) -> list[bytes]:
        return self.tree.consistency_proof(old, new) if 0 < old < new else []

    def body(self, old: int, new: int) -> bytes:
        return encode_add_checkpoint_request(old, self.proof(old, new), self.note(new))


@dataclass
class Witness:
    config: WitnessConfig
    store: WitnessStore
    clock: FixedClock
    verifier: CosignatureVerifier

    def app(self) -> FastAPI:
        return create_app(self.config, self.store)


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "witness.skey"
    write_signer_key(path, WITNESS_NAME)
    return path


def make_witness(key_file: Path, database_url: str, logs: dict[str, str | list[str]]) -> Witness:
    settings = load_settings(key_file=key_file, database_url=database_url, logs=logs)
    clock = FixedClock(T0)
    config = load_config(settings, now=clock)
    store = WitnessStore.open(database_url)
    return Witness(config, store, clock, config.signers[0].verifier())


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'witness.sqlite3'}"


@pytest.fixture
def witness(key_file: Path, database_url: str, log: Log) -> Iterator[Witness]:
    made = make_witness(key_file, database_url, {log.origin: log.vkey})
    yield made
    made.store.dispose()


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def post(client: httpx.Client | TestClient, body: bytes) -> httpx.Response:
    return client.post("/add-checkpoint", content=body)


def cosigned(response: httpx.Response, log: Log, size: int, witness: Witness) -> int:
    """Assert a 200 whose lines make the log's checkpoint witnessed; return the timestamp."""
    assert response.status_code == 200, response.text
    note = attach_cosignatures(log.note(size), [response.text])
    result = verify_witnessed_checkpoint(
        note,
        NoteVerifier.from_vkey(log.vkey),
        [witness.verifier],
        1,
        origin=log.origin,
        now=witness.clock,
    )
    assert result.checkpoint == log.checkpoint(size)
    return result.cosignatures[0].timestamp


def assert_conflict(response: httpx.Response, size: int) -> None:
    assert response.status_code == 409
    assert response.headers["content-type"] == "text/x.tlog.size"
    assert response.content == b"%d\n" % size


def assert_refused(response: httpx.Response, status: int, reason: ReasonCode) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == reason.value


# -- over real HTTP ------------------------------------------------------------------------


def test_main_flow_over_http(witness: Witness, log: Log) -> None:
    with live_server(witness.app()) as url, httpx.Client(base_url=url) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert cosigned(post(client, log.body(0, 3)), log, 3, witness) == T0
        witness.clock.advance(60)
        assert cosigned(post(client, log.body(3, 8)), log, 8, witness) == T0 + 60
        # The same checkpoint again: no proof, same root, a fresh cosignature.
        witness.clock.advance(1)
        assert cosigned(post(client, log.body(8, 8)), log, 8, witness) == T0 + 61
        for old, new in [(8, 9), (9, 16), (16, 17), (17, 40), (40, 64)]:
            cosigned(post(client, log.body(old, new)), log, new, witness)
        assert witness.store.state(log.origin) == LogState(64, log.tree.root(64))

        # Monitor retrieval: the log signature and the witness's cosignature, by origin hash.
        monitor = client.get(f"/{origin_hash(log.origin)}/checkpoint")
        assert monitor.status_code == 200
        verified = verify_witnessed_checkpoint(
            monitor.text,
            NoteVerifier.from_vkey(log.vkey),
            [witness.verifier],
            1,
            origin=log.origin,
            now=witness.clock,
        )
        assert verified.checkpoint.size == 64
        assert client.get(f"/{origin_hash('never.example/log')}/checkpoint").status_code == 404
        assert client.get("/NOT-A-HASH/checkpoint").status_code == 404


def test_refusals_over_http_leave_the_state_alone(witness: Witness, log: Log) -> None:
    with live_server(witness.app()) as url, httpx.Client(base_url=url) as client:
        cosigned(post(client, log.body(0, 5)), log, 5, witness)
        assert_conflict(post(client, log.body(0, 9)), 5)
        assert_conflict(post(client, log.body(3, 9)), 5)
        bad = log.proof(5, 9)
        bad[0] = bytes(32)
        response = post(client, encode_add_checkpoint_request(5, bad, log.note(9)))
        assert_refused(response, 422, ReasonCode.CONSISTENCY_PROOF_INVALID)
        assert witness.store.state(log.origin).size == 5
        cosigned(post(client, log.body(5, 9)), log, 9, witness)


def test_concurrent_requests_from_one_old_size(witness: Witness, log: Log) -> None:
    contenders = 8
    with live_server(witness.app()) as url:
        with httpx.Client(base_url=url) as client:
            cosigned(post(client, log.body(0, 10)), log, 10, witness)
        barrier = threading.Barrier(contenders)
        responses: dict[int, httpx.Response] = {}

        def contend(new: int) -> None:
            body = log.body(10, new)
            with httpx.Client(base_url=url, timeout=30) as own:
                barrier.wait()
                responses[new] = post(own, body)

        threads = [threading.Thread(target=contend, args=(11 + i,)) for i in range(contenders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    winners = [new for new, response in responses.items() if response.status_code == 200]
    assert len(responses) == contenders
    assert len(winners) == 1
    winner = winners[0]
    cosigned(responses[winner], log, winner, witness)
    for new, response in responses.items():
        if new != winner:
            assert_conflict(response, winner)
    assert witness.store.state(log.origin) == LogState(winner, log.tree.root(winner))


def test_state_survives_a_restart(key_file: Path, database_url: str, log: Log) -> None:
    first = make_witness(key_file, database_url, {log.origin: log.vkey})
    with live_server(first.app()) as url, httpx.Client(base_url=url) as client:
        cosigned(post(client, log.body(0, 5)), log, 5, first)
    first.store.dispose()

    second = make_witness(key_file, database_url, {log.origin: log.vkey})
    try:
        with live_server(second.app()) as url, httpx.Client(base_url=url) as client:
            assert_conflict(post(client, log.body(0, 7)), 5)
            cosigned(post(client, log.body(5, 7)), log, 7, second)
    finally:
        second.store.dispose()


def test_client_against_the_real_server(witness: Witness, log: Log) -> None:
    proofs: list[int] = []

    def consistency_proof(old: int) -> list[bytes]:
        proofs.append(old)
        return log.proof(old, 20)

    with live_server(witness.app()) as url:
        lines = request_cosignature(url, 0, [], log.note(5), witness=witness.verifier)
        assert len(lines) == 1
        # The log believes the witness is at 0; it is at 5: one retry from 5 with a proof.
        lines = request_cosignature(
            url + "/",
            0,
            [],
            log.note(20),
            5.0,
            witness=witness.verifier,
            consistency_proof=consistency_proof,
        )
        assert proofs == [5]
        note = attach_cosignatures(log.note(20), lines)
        verify_witnessed_checkpoint(
            note, NoteVerifier.from_vkey(log.vkey), [witness.verifier], 1, now=witness.clock
        )
        # Without a proof source, a retry is only possible when no proof is needed: here the
        # witness is already at the checkpoint's size, so it re-cosigns with an empty proof.
        witness.clock.advance(5)
        again = request_cosignature(url, 3, log.proof(3, 20), log.note(20))
        assert len(again) == 1 and again != lines
        assert cosigned(_as_response(again), log, 20, witness) == T0 + 5
        with pytest.raises(WitnessSizeConflict) as conflict:
            request_cosignature(url, 5, log.proof(5, 30), log.note(30))
        assert conflict.value.current_size == 20
        # A witness ahead of the checkpoint is never retried.
        with pytest.raises(WitnessSizeConflict) as ahead:
            request_cosignature(url, 0, [], log.note(10), consistency_proof=consistency_proof)
        assert ahead.value.current_size == 20
        assert proofs == [5]

        stranger = Log("stranger.example/log")
        with pytest.raises(WitnessRequestError) as refused:
            request_cosignature(url, 0, [], stranger.note(3))
        assert refused.value.reason is ReasonCode.WITNESS_REJECTED
        assert refused.value.status_code == 404


def test_async_client(witness: Witness, log: Log) -> None:
    import asyncio

    with live_server(witness.app()) as url:
        request_cosignature(url, 0, [], log.note(4))
        lines = asyncio.run(
            arequest_cosignature(
                url,
                0,
                [],
                log.note(12),
                witness=witness.verifier,
                consistency_proof=lambda old: log.proof(old, 12),
            )
        )
    cosigned(_as_response(lines), log, 12, witness)


def _as_response(lines: list[str]) -> httpx.Response:
    return httpx.Response(200, text="".join(lines))


def test_client_reports_an_unreachable_witness(log: Log) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(WitnessRequestError) as caught:
        request_cosignature(f"http://127.0.0.1:{port}", 0, [], log.note(3), timeout=2)
    assert caught.value.reason is ReasonCode.WITNESS_UNAVAILABLE
    assert caught.value.status_code is None
    assert str(port) not in caught.value.detail


# -- fine-grained refusals (TestClient) --------------------------------------------------------


@pytest.fixture
def client(witness: Witness) -> Iterator[TestClient]:
    with TestClient(witness.app()) as test_client:
        yield test_client


def test_unknown_origin(client: TestClient) -> None:
    stranger = Log("stranger.example/log")
    assert_refused(post(client, stranger.body(0, 3)), 404, ReasonCode.LOG_ORIGIN_UNKNOWN)


def test_bad_log_signatures(client: TestClient, log: Log) -> None:
    impostor = Log(ORIGIN)  # same origin and key name, another key
    assert_refused(post(client, impostor.body(0, 3)), 403, ReasonCode.NOTE_NO_VERIFIABLE_SIGNATURE)
    signatures = log.note(3).partition(b"\n\n")[2]
    tampered = log.checkpoint(4).to_text().encode() + b"\n" + signatures
    response = post(client, encode_add_checkpoint_request(0, [], tampered))
    assert_refused(response, 403, ReasonCode.NOTE_SIGNATURE_INVALID)


def test_rollback(client: TestClient, witness: Witness, log: Log) -> None:
    cosigned(post(client, log.body(0, 8)), log, 8, witness)
    # Old size right, checkpoint smaller: 400. Old size matching the small checkpoint: 409.
    response = post(client, encode_add_checkpoint_request(8, [], log.note(5)))
    assert_refused(response, 400, ReasonCode.LOG_ROLLBACK)
    assert_conflict(post(client, log.body(5, 5)), 8)
    assert_conflict(post(client, log.body(0, 5)), 8)


def test_split_view(client: TestClient, witness: Witness, log: Log) -> None:
    cosigned(post(client, log.body(0, 8)), log, 8, witness)
    fork = Log(ORIGIN, tag=b"fork")
    fork.signer = log.signer  # the same log key signing a second history
    response = post(client, encode_add_checkpoint_request(8, [], fork.note(8)))
    assert_refused(response, 422, ReasonCode.LOG_FORK)
    response = post(client, encode_add_checkpoint_request(8, fork.proof(8, 12), fork.note(12)))
    assert_refused(response, 422, ReasonCode.CONSISTENCY_PROOF_INVALID)
    assert witness.store.state(ORIGIN) == LogState(8, log.tree.root(8))


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"old 0\n", 400),
        (b"old 00\n\nx", 400),
        (b"old 0\n\nnot a note", 400),
        (b"old 0\n\nno-size\n\n\xe2\x80\x94 x AAAAAAAA\n", 400),
    ],
)
def test_malformed_requests(client: TestClient, body: bytes, status: int) -> None:
    assert post(client, body).status_code == status


def test_empty_tree_and_proof_rules(client: TestClient, witness: Witness, log: Log) -> None:
    response = post(client, encode_add_checkpoint_request(0, [bytes(32)], log.note(4)))
    assert_refused(response, 422, ReasonCode.MALFORMED_PROOF)
    bad_empty = sign_checkpoint(Checkpoint(ORIGIN, 0, log.tree.root(1)), [log.signer])
    response = post(client, encode_add_checkpoint_request(0, [], bad_empty))
    assert_refused(response, 422, ReasonCode.LOG_ROOT_MISMATCH)
    cosigned(post(client, log.body(0, 0)), log, 0, witness)
    cosigned(post(client, log.body(0, 4)), log, 4, witness)


def test_oversized_body(client: TestClient, log: Log) -> None:
    body = log.body(0, 3) + b"x" * (64 * 1024)
    assert_refused(post(client, body), 413, ReasonCode.INPUT_TOO_LARGE)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the stream is counted
        for _ in range(80):
            yield b"y" * 1024

    response = client.post("/add-checkpoint", content=chunks())
    assert_refused(response, 413, ReasonCode.INPUT_TOO_LARGE)


def test_refusals_are_logged_without_secrets(
    client: TestClient, log: Log, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="registry.witness")
    post(client, log.body(0, 8))
    fork = Log(ORIGIN, tag=b"fork")
    fork.signer = log.signer
    post(client, encode_add_checkpoint_request(8, [], fork.note(8)))
    refusal = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(refusal) == 1
    message = refusal[0].getMessage()
    assert "log_fork" in message and ORIGIN in message
    secret = key_file.read_text().strip()
    assert all(secret not in record.getMessage() for record in caplog.records)


def test_get_is_not_add_checkpoint(client: TestClient) -> None:
    assert client.get("/add-checkpoint").status_code == 405


# -- the store -------------------------------------------------------------------------------


def _serialisation_check(store: WitnessStore, log: Log) -> None:
    """A second advance waits for the first to commit, then sees its state (409)."""
    first = log.body(0, 5)
    store.advance(ORIGIN, lambda stored: (check(first, log, stored), "n"), T0)
    outcome: list[BaseException | LogState] = []

    def second() -> None:
        body = log.body(5, 7)
        try:
            outcome.append(store.advance(ORIGIN, lambda s: (check(body, log, s), "n"), T0))
        except BaseException as error:
            outcome.append(error)

    racer = threading.Thread(target=second)

    def slow_decide(stored: LogState) -> tuple[LogState, str]:
        racer.start()
        time.sleep(0.3)
        assert racer.is_alive(), "the second advance did not wait for the first"
        return check(log.body(5, 9), log, stored), "n"

    assert store.advance(ORIGIN, slow_decide, T0) == LogState(9, log.tree.root(9))
    racer.join(30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], WitnessSizeConflict)
    assert outcome[0].current_size == 9


def check(body: bytes, log: Log, stored: LogState) -> LogState:
    request = parse_add_checkpoint_request(body)
    size = int(request.checkpoint_note.split(b"\n")[1])
    return check_against_state(request, log.checkpoint(size), stored)


def test_sqlite_store_serialises_advances(database_url: str, log: Log) -> None:
    store = WitnessStore.open(database_url)
    try:
        _serialisation_check(store, log)
    finally:
        store.dispose()


def test_refused_decision_writes_nothing(database_url: str, log: Log) -> None:
    store = WitnessStore.open(database_url)
    try:
        with pytest.raises(WitnessSizeConflict):
            store.advance(ORIGIN, lambda s: (check(log.body(3, 5), log, s), "n"), T0)
        assert store.get(ORIGIN) is None
    finally:
        store.dispose()


# -- settings and CLI --------------------------------------------------------------------------


def test_key_file_is_private_and_checked(tmp_path: Path, log: Log) -> None:
    path = tmp_path / "w.skey"
    vkey = write_signer_key(path, WITNESS_NAME)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_signer_key(path).vkey == vkey
    with pytest.raises(WitnessSettingsError, match="already exists"):
        write_signer_key(path, WITNESS_NAME)
    path.chmod(0o640)
    with pytest.raises(WitnessSettingsError, match="group or others"):
        read_signer_key(path)
    path.chmod(0o600)
    path.write_text("PRIVATE+KEY+nope\n")
    with pytest.raises(WitnessSettingsError, match="does not hold") as caught:
        read_signer_key(path)
    assert "nope" not in caught.value.detail
    with pytest.raises(WitnessSettingsError, match="missing"):
        read_signer_key(tmp_path / "absent.skey")


def test_settings_refuse_missing_or_bad_values(
    key_file: Path, log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("CIVIC_WITNESS_"):
            monkeypatch.delenv(name)
    secret_url = "postgresql://user:hunter2@db.invalid/witness"
    monkeypatch.setenv("CIVIC_WITNESS_DATABASE_URL", secret_url)
    with pytest.raises(WitnessSettingsError) as missing:
        load_settings()
    assert "CIVIC_WITNESS_KEY_FILE" in missing.value.detail
    assert "hunter2" not in missing.value.detail

    monkeypatch.setenv("CIVIC_WITNESS_KEY_FILE", str(key_file))
    settings = load_settings()
    assert "hunter2" not in repr(settings)
    with pytest.raises(WitnessSettingsError, match="no logs"):
        load_config(settings)

    monkeypatch.setenv("CIVIC_WITNESS_LOGS", json.dumps({ORIGIN: log.vkey}))
    config = load_config(load_settings())
    assert list(config.logs) == [ORIGIN]
    assert key_file.read_text().strip() not in repr(config)

    monkeypatch.setenv("CIVIC_WITNESS_LOGS", json.dumps({ORIGIN: "not-a-vkey"}))
    with pytest.raises(WitnessSettingsError, match="vkey"):
        load_config(load_settings())
    monkeypatch.setenv("CIVIC_WITNESS_LOGS", json.dumps({ORIGIN: [log.vkey, log.vkey]}))
    with pytest.raises(WitnessSettingsError, match="twice"):
        load_config(load_settings())
    monkeypatch.setenv("CIVIC_WITNESS_MAX_BODY_BYTES", "12")
    with pytest.raises(WitnessSettingsError, match="MAX_BODY_BYTES"):
        load_settings()


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_logs_file(tmp_path: Path, key_file: Path, log: Log, suffix: str) -> None:
    other = Log("other.example/log")
    path = tmp_path / f"logs{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"logs": {other.origin: [other.vkey]}}))
    else:
        path.write_text(f'[logs]\n"{other.origin}" = "{other.vkey}"\n')
    settings = load_settings(key_file=key_file, logs={log.origin: log.vkey}, logs_file=path)
    config = load_config(settings)
    assert sorted(config.logs) == sorted([log.origin, other.origin])
    clash = load_settings(key_file=key_file, logs={other.origin: log.vkey}, logs_file=path)
    with pytest.raises(WitnessSettingsError, match="twice"):
        load_config(clash)
    path.write_text("{not json or toml")
    with pytest.raises(WitnessSettingsError, match="not valid"):
        load_config(settings)


def test_cli_init_and_vkey(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "cli" / "witness.skey"
    result = runner.invoke(witness_app, ["init", "--key-file", str(path), "--name", WITNESS_NAME])
    assert result.exit_code == 0, result.output
    vkey = result.stdout.strip()
    assert CosignatureVerifier.from_vkey(vkey).name == WITNESS_NAME
    assert "PRIVATE" not in result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = runner.invoke(witness_app, ["vkey", "--key-file", str(path)])
    assert shown.exit_code == 0 and shown.stdout.strip() == vkey
    again = runner.invoke(witness_app, ["init", "--key-file", str(path), "--name", WITNESS_NAME])
    assert again.exit_code == 2
    assert read_signer_key(path).vkey == vkey


def test_cli_serve_refuses_a_readable_key(
    tmp_path: Path, key_file: Path, log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file.chmod(0o644)
    monkeypatch.setenv("CIVIC_WITNESS_KEY_FILE", str(key_file))
    monkeypatch.setenv("CIVIC_WITNESS_LOGS", json.dumps({log.origin: log.vkey}))
    monkeypatch.setenv("CIVIC_WITNESS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    result = CliRunner().invoke(witness_app, ["serve", "--port", "1"])
    assert result.exit_code == 2
    assert "group or others" in result.output


# -- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    assert POSTGRES_URL is not None
    url = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"witness_test_{secrets.token_hex(6)}"
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield POSTGRES_URL, schema
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _postgres_witness(key_file: Path, url: str, schema: str, log: Log) -> Witness:
    settings = load_settings(key_file=key_file, logs={log.origin: log.vkey})
    clock = FixedClock(T0)
    config = load_config(settings, now=clock)
    store = WitnessStore.open(url, schema=schema)
    return Witness(config, store, clock, config.signers[0].verifier())


@needs_postgres
def test_postgres_main_flow_concurrency_and_restart(
    postgres_schema: tuple[str, str], key_file: Path, log: Log
) -> None:
    url, schema = postgres_schema
    witness = _postgres_witness(key_file, url, schema, log)
    try:
        with live_server(witness.app()) as base, httpx.Client(base_url=base) as client:
            cosigned(post(client, log.body(0, 5)), log, 5, witness)
            cosigned(post(client, log.body(5, 10)), log, 10, witness)
            assert_conflict(post(client, log.body(5, 12)), 10)
            responses = _race(base, log, old=10, news=range(11, 19))
        winners = [new for new, r in responses.items() if r.status_code == 200]
        assert len(winners) == 1
        assert all(
            r.status_code == 409 and r.content == b"%d\n" % winners[0]
            for new, r in responses.items()
            if new != winners[0]
        )
    finally:
        witness.store.dispose()
    restarted = _postgres_witness(key_file, url, schema, log)
    try:
        with TestClient(restarted.app()) as client:
            assert_conflict(post(client, log.body(0, 30)), winners[0])
    finally:
        restarted.store.dispose()


def _race(base: str, log: Log, old: int, news: range) -> dict[int, httpx.Response]:
    barrier = threading.Barrier(len(news))
    responses: dict[int, httpx.Response] = {}

    def contend(new: int) -> None:
        body = log.body(old, new)
        with httpx.Client(base_url=base, timeout=30) as own:
            barrier.wait()
            responses[new] = post(own, body)

    threads = [threading.Thread(target=contend, args=(new,)) for new in news]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return responses


@needs_postgres
def test_postgres_store_serialises_advances(postgres_schema: tuple[str, str], log: Log) -> None:
    url, schema = postgres_schema
    store = WitnessStore.open(url, schema=schema)
    try:
        _serialisation_check(store, log)
    finally:
        store.dispose()


@needs_postgres
def test_postgres_first_insert_race(postgres_schema: tuple[str, str], log: Log) -> None:
    # No row to lock yet: two first advances race on the INSERT and one loses on the key.
    url, schema = postgres_schema
    store = WitnessStore.open(url, schema=schema)
    try:
        inner: list[LogState] = []

        def decide(stored: LogState) -> tuple[LogState, str]:
            other = threading.Thread(
                target=lambda: inner.append(
                    store.advance(ORIGIN, lambda s: (check(log.body(0, 4), log, s), "n"), T0)
                )
            )
            other.start()
            other.join(30)
            return check(log.body(0, 6), log, stored), "n"

        with pytest.raises(WitnessSizeConflict) as caught:
            store.advance(ORIGIN, decide, T0)
        assert inner == [LogState(4, log.tree.root(4))]
        assert caught.value.current_size == 4
        assert store.state(ORIGIN) == LogState(4, log.tree.root(4))
    finally:
        store.dispose()
