"""The registry service over real HTTP on 127.0.0.1 (docs/registry.md, "HTTP API of the registry").

PostgreSQL tests run when ``CIVIC_TEST_POSTGRES_URL`` names a database (e.g.
``postgresql:///test``); each run uses its own schema and drops it afterwards.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text

from civic.checkpoint import Checkpoint, open_checkpoint
from civic.encoding import b64std_decode, json_dumps, json_dumps_canonical
from civic.errors import CivicError, ReasonCode
from civic.jose import PrivateKey, sign_jws
from civic.logsync import sync
from civic.merkle import (
    MemoryNodeStore,
    MerkleTree,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from civic.note import NoteVerifier
from civic.trust import EVENT_TYP, new_event
from civic_service.config import token_sha256_hex
from registry.app import create_app
from registry.client import HttpLogSource, RegistryClient, RegistryHttpError, log_config_from_json
from registry.db import SQLITE_BEGIN, create_engine, create_schema
from registry.settings import (
    RegistrySettings,
    SettingsError,
    WitnessEndpoint,
    load_runtime,
)
from registry.store import SqlNodeStore
from registry.witness.settings import write_signer_key
from tests.services.registry_harness import (
    ISSUER,
    NOT_AFTER,
    ORIGIN,
    STATUS_BASE,
    VCT,
    ProcessServer,
    RegistryFiles,
    ThreadServer,
    init_registry,
    issuer_key_add,
    post_entry,
    signed,
    tree_size,
    wait_for,
    wait_for_checkpoint,
    witness_server,
)

BASE_KID = "base-key"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryFiles, str]]:
    """One registry with a 2-of-2 governance and one accredited issuer key."""
    files = init_registry(
        tmp_path_factory.mktemp("registry") / "data", "--governance-keys", "2", "--quorum", "2"
    )
    runtime = load_runtime(RegistrySettings(data_dir=files.data_dir))
    with ThreadServer(create_app(runtime)) as server:
        response = post_entry(server.url, files.admin_token, issuer_key_add(files, kid=BASE_KID))
        assert response.status_code == 201, response.text
        yield files, server.url


def _log_verifier(files: RegistryFiles) -> NoteVerifier:
    return NoteVerifier.from_vkey(files.log_vkey)


def _checkpoint(files: RegistryFiles, url: str, size: int) -> Checkpoint:
    note = wait_for_checkpoint(url, size)
    return open_checkpoint(note, _log_verifier(files), ORIGIN).checkpoint


def _hashes(values: list[str]) -> list[bytes]:
    return [b64std_decode(value) for value in values]


# -- the main flow ---------------------------------------------------------------------------


def test_append_read_prove_and_sync(registry: tuple[RegistryFiles, str]) -> None:
    files, url = registry
    entry = issuer_key_add(files, kid=f"key-{uuid.uuid4().hex}")
    response = post_entry(url, files.admin_token, entry)
    assert response.status_code == 201
    index = response.json()["index"]
    assert b64std_decode(response.json()["leaf_hash"]) == entry.leaf_hash()
    assert entry.leaf_bytes() == json_dumps_canonical(entry.to_json()).encode()

    page = httpx.get(url + "/entries", params={"start": index, "end": index + 5}).json()
    assert page == {"start": index, "entries": [entry.to_json()]}

    checkpoint = _checkpoint(files, url, index + 1)
    proof = httpx.get(
        url + "/proof/inclusion", params={"index": index, "size": checkpoint.size}
    ).json()
    assert proof["index"] == index and proof["size"] == checkpoint.size
    verify_inclusion(
        entry.leaf_hash(), index, checkpoint.size, _hashes(proof["proof"]), checkpoint.root_hash
    )

    config = log_config_from_json(files.trust_config())
    with HttpLogSource(url) as source:
        snapshot = sync(source, config, None)
    assert snapshot.root_hash == checkpoint.root_hash
    key = snapshot.state.issuer_key(ISSUER, entry.event.kid)  # type: ignore[union-attr]
    assert key is not None and key.added_index == index and key.vct == (VCT,)


def test_issuer_keys_come_with_inclusion_proofs(registry: tuple[RegistryFiles, str]) -> None:
    files, url = registry
    kid = f"retiring-{uuid.uuid4().hex}"
    add = post_entry(url, files.admin_token, issuer_key_add(files, kid=kid)).json()["index"]
    retire = signed(files, "issuer.key.retire", issuer=ISSUER, kid=kid, retired_at=1_900_000_000)
    retired = post_entry(url, files.admin_token, retire).json()["index"]
    _checkpoint(files, url, retired + 1)

    answer = httpx.get(f"{url}/trust/issuers/{ISSUER}/keys").json()
    note = open_checkpoint(answer["checkpoint"], _log_verifier(files), ORIGIN)
    assert answer["issuer"] == ISSUER and answer["size"] == note.checkpoint.size
    by_index = {item["index"]: item for item in answer["entries"]}
    assert {add, retired} <= set(by_index)
    for item in answer["entries"]:
        leaf = json_dumps_canonical(item["entry"]).encode()
        assert b64std_decode(item["leaf_hash"]) == leaf_hash(leaf)
        verify_inclusion(
            leaf_hash(leaf),
            item["index"],
            note.checkpoint.size,
            _hashes(item["proof"]),
            note.checkpoint.root_hash,
        )
    assert by_index[retired]["entry"]["event"]["type"] == "issuer.key.retire"

    unknown = httpx.get(f"{url}/trust/issuers/https://nobody.example/keys")
    assert unknown.status_code == 404 and unknown.json()["error"] == "issuer_unknown"


def test_consistency_between_checkpoints(registry: tuple[RegistryFiles, str]) -> None:
    files, url = registry
    old = _checkpoint(files, url, 1)
    for _ in range(3):
        assert post_entry(url, files.admin_token, issuer_key_add(files, kid=uuid.uuid4().hex))
    new = _checkpoint(files, url, old.size + 3)
    answer = httpx.get(url + "/proof/consistency", params={"old": old.size, "new": new.size})
    body = answer.json()
    assert (body["old"], body["new"]) == (old.size, new.size)
    verify_consistency(old.size, new.size, _hashes(body["proof"]), old.root_hash, new.root_hash)


# -- validation before append: a 4xx with the reason and nothing appended ---------------------


def _raw_entry(files: RegistryFiles, event: dict[str, Any], signers: Any = None) -> dict[str, Any]:
    """Sign an event without the client-side checks of new_event/sign_event."""
    payload = json_dumps_canonical(event).encode()
    keys = signers if signers is not None else files.governance_keys()
    tokens = [sign_jws({"typ": EVENT_TYP, "kid": kid}, payload, key) for kid, key in keys]
    return {"event": event, "signatures": tokens}


def _issuer_event(**changes: Any) -> dict[str, Any]:
    event = new_event(
        "issuer.key.add",
        issuer=ISSUER,
        kid=uuid.uuid4().hex,
        jwk=PrivateKey.generate().public_key,
        vct=[VCT],
        status_base_url=STATUS_BASE,
        not_before=0,
        not_after=NOT_AFTER,
    )
    event.update(changes)
    return {key: value for key, value in event.items() if value is not None}


def _bad_entry(case: str, files: RegistryFiles) -> Any:
    governance = files.governance_keys()
    outsider = PrivateKey.generate()
    if case == "issuer_unknown":
        return signed(
            files, "issuer.key.revoke", issuer="https://nobody.example", kid="k", revoked_at=1
        )
    if case == "key_unknown":
        return signed(files, "issuer.key.retire", issuer=ISSUER, kid="no-such-kid", retired_at=1)
    if case == "duplicate_kid":
        return issuer_key_add(files, kid=BASE_KID)
    if case == "governance_quorum_not_met":
        # One governance signature plus one by a key the registry does not know.
        return _raw_entry(files, _issuer_event(), [governance[0], ("outsider", outsider)])
    if case == "governance_signature_invalid":
        # Names a governance kid, signed by another key.
        return _raw_entry(files, _issuer_event(), [governance[0], (governance[1][0], outsider)])
    if case == "unsupported_key_type":
        x25519 = {"kty": "OKP", "crv": "X25519", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}
        return _raw_entry(files, _issuer_event(jwk=x25519))
    if case == "private_key_material":
        return _raw_entry(files, _issuer_event(jwk=PrivateKey.generate().export_private_jwk()))
    if case == "registry_entry_malformed":
        return _raw_entry(files, _issuer_event(vct=None))
    if case == "malformed_json":
        return b'{"event": {"type": "issuer.key.add"}, "event": {}}'
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("issuer_unknown", 422, "issuer_unknown"),
        ("key_unknown", 422, "key_unknown"),
        ("duplicate_kid", 409, "duplicate_kid"),
        ("governance_quorum_not_met", 422, "governance_quorum_not_met"),
        ("governance_signature_invalid", 422, "governance_signature_invalid"),
        ("unsupported_key_type", 400, "unsupported_key_type"),
        ("private_key_material", 400, "private_key_material"),
        ("registry_entry_malformed", 400, "registry_entry_malformed"),
        ("malformed_json", 400, "registry_entry_malformed"),
    ],
)
def test_invalid_entries_are_refused_and_not_appended(
    registry: tuple[RegistryFiles, str], case: str, status: int, reason: str
) -> None:
    files, url = registry
    before = tree_size(url)
    response = post_entry(url, files.admin_token, _bad_entry(case, files))
    assert response.status_code == status, response.text
    assert response.json()["error"] == reason
    assert isinstance(response.json()["detail"], str)
    assert tree_size(url) == before


def test_a_replayed_entry_is_refused(registry: tuple[RegistryFiles, str]) -> None:
    files, url = registry
    entry = issuer_key_add(files, kid=uuid.uuid4().hex)
    assert post_entry(url, files.admin_token, entry).status_code == 201
    size = tree_size(url)
    # The same event id, even re-encoded with other whitespace and member order.
    again = post_entry(
        url, files.admin_token, json_dumps(entry.to_json()).replace(",", ", ").encode()
    )
    assert again.status_code == 409 and again.json()["error"] == "registry_entry_duplicate"
    assert tree_size(url) == size


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz", "Bearer"]
)
def test_appends_need_the_admin_token(
    registry: tuple[RegistryFiles, str], authorization: str | None
) -> None:
    files, url = registry
    before = tree_size(url)
    headers = {"Authorization": authorization} if authorization else {}
    body = json_dumps(issuer_key_add(files, kid=uuid.uuid4().hex).to_json())
    response = httpx.post(url + "/entries", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert tree_size(url) == before


def test_oversized_bodies_get_413(registry: tuple[RegistryFiles, str]) -> None:
    files, url = registry
    before = tree_size(url)
    headers = {"Authorization": f"Bearer {files.admin_token}"}
    big = b"{" + b" " * (70 * 1024) + b"}"
    response = httpx.post(url + "/entries", content=big, headers=headers)
    assert response.status_code == 413 and response.json()["error"] == "input_too_large"

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the limit must hold while streaming too.
        for _ in range(80):
            yield b" " * 1024

    streamed = httpx.post(url + "/entries", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert tree_size(url) == before


@pytest.mark.parametrize(
    ("path", "params", "reason"),
    [
        ("/entries", {"start": 5, "end": 2}, "index_out_of_range"),
        ("/entries", {"start": 10**6, "end": 10**6 + 1}, "index_out_of_range"),
        ("/entries", {"start": "x", "end": 1}, "malformed_input"),
        ("/proof/inclusion", {"index": 10**6, "size": 10**6 + 1}, "index_out_of_range"),
        ("/proof/inclusion", {"index": 3, "size": 2}, "index_out_of_range"),
        ("/proof/consistency", {"old": 0, "new": 1}, "malformed_input"),
        ("/proof/consistency", {"old": 2, "new": 10**6}, "index_out_of_range"),
    ],
)
def test_bad_reads_are_400_with_a_reason(
    registry: tuple[RegistryFiles, str], path: str, params: dict[str, Any], reason: str
) -> None:
    _files, url = registry
    response = httpx.get(url + path, params=params)
    assert response.status_code == 400
    assert response.json()["error"] == reason


def test_unknown_routes_and_health(registry: tuple[RegistryFiles, str]) -> None:
    _files, url = registry
    missing = httpx.get(url + "/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    health = httpx.get(url + "/healthz").json()
    assert health["status"] == "ok" and health["size"] >= 1


def test_entries_page_is_clamped_to_the_tree(registry: tuple[RegistryFiles, str]) -> None:
    _files, url = registry
    size = tree_size(url)
    page = httpx.get(url + "/entries", params={"start": 0, "end": size + 50}).json()
    assert len(page["entries"]) == size
    assert httpx.get(url + "/entries", params={"start": size, "end": size + 1}).json() == {
        "start": size,
        "entries": [],
    }


def test_registry_client_raises_the_servers_reason(registry: tuple[RegistryFiles, str]) -> None:
    files, url = registry
    with RegistryClient(url, files.admin_token) as client:
        entry = issuer_key_add(files, kid=uuid.uuid4().hex)
        result = client.append(entry.to_json())
        assert result.leaf_hash == entry.leaf_hash()
        with pytest.raises(RegistryHttpError) as refused:
            client.append(entry.to_json())
    assert refused.value.reason is ReasonCode.REGISTRY_ENTRY_DUPLICATE
    assert refused.value.status == 409
    assert files.admin_token not in repr(client)


# -- durability, restarts and one sequencer -----------------------------------------------------


def _all_leaves(url: str) -> list[bytes]:
    with HttpLogSource(url) as source:
        return source.entries(0, tree_size(url))


def test_a_crash_loses_nothing_and_appends_continue(tmp_path: Path) -> None:
    files = init_registry(tmp_path / "data")
    server = ProcessServer(files.data_dir).start()
    try:
        for number in range(3):
            response = post_entry(
                server.url, files.admin_token, issuer_key_add(files, kid=f"k{number}")
            )
            assert response.json()["index"] == number
        leaves = _all_leaves(server.url)
        root = root_from_leaf_hashes([leaf_hash(leaf) for leaf in leaves])
    finally:
        server.kill()  # SIGKILL right after the 201s: no graceful shutdown

    with ProcessServer(files.data_dir) as restarted:
        assert _all_leaves(restarted.url) == leaves
        assert _checkpoint(files, restarted.url, 3).root_hash == root
        # The restarted sequencer knows the state: a duplicate kid is still refused ...
        again = post_entry(restarted.url, files.admin_token, issuer_key_add(files, kid="k0"))
        assert again.json()["error"] == "duplicate_kid"
        # ... and appends continue at the next index.
        response = post_entry(restarted.url, files.admin_token, issuer_key_add(files, kid="k3"))
        assert response.json()["index"] == 3
        assert _all_leaves(restarted.url)[:3] == leaves


def _append_concurrently(files: RegistryFiles, urls: list[str], per_server: int) -> list[int]:
    entries = [
        [issuer_key_add(files, kid=f"s{s}-{n}") for n in range(per_server)]
        for s in range(len(urls))
    ]

    def run(server: int) -> list[int]:
        indices = []
        with httpx.Client(timeout=60) as client:
            for entry in entries[server]:
                response = client.post(
                    urls[server] + "/entries",
                    content=json_dumps(entry.to_json()),
                    headers={"Authorization": f"Bearer {files.admin_token}"},
                )
                assert response.status_code == 201, response.text
                indices.append(response.json()["index"])
        return indices

    with ThreadPoolExecutor(max_workers=len(urls) * 2) as pool:
        # Two client threads per server: concurrency inside each process as well.
        halves = []
        for server in range(len(urls)):
            halves.append(pool.submit(run, server))
        return sorted(index for future in halves for index in future.result())


def _assert_one_consistent_tree(files: RegistryFiles, url: str, total: int) -> None:
    leaves = _all_leaves(url)
    assert len(leaves) == total
    checkpoint = _checkpoint(files, url, total)
    assert checkpoint.size == total
    assert checkpoint.root_hash == root_from_leaf_hashes([leaf_hash(leaf) for leaf in leaves])
    # Every entry validates when folded from genesis (sync recomputes the root too).
    with HttpLogSource(url) as source:
        snapshot = sync(source, log_config_from_json(files.trust_config()), None)
    assert snapshot.size == total


def test_two_processes_on_one_sqlite_file_never_fork(tmp_path: Path) -> None:
    files = init_registry(tmp_path / "data")
    with ProcessServer(files.data_dir) as first, ProcessServer(files.data_dir) as second:
        indices = _append_concurrently(files, [first.url, second.url], 10)
        assert indices == list(range(20))
        _assert_one_consistent_tree(files, first.url, 20)
        _assert_one_consistent_tree(files, second.url, 20)
        # Each sequencer's trust state catches up with the other's appends before validating.
        added = post_entry(first.url, files.admin_token, issuer_key_add(files, kid="shared"))
        assert added.json()["index"] == 20
        again = post_entry(second.url, files.admin_token, issuer_key_add(files, kid="shared"))
        assert again.status_code == 409 and again.json()["error"] == "duplicate_kid"


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    url = os.environ.get("CIVIC_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("CIVIC_TEST_POSTGRES_URL is not set (e.g. postgresql:///test)")
    schema = f"registry_test_{uuid.uuid4().hex[:12]}"
    yield url, schema
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def test_two_processes_on_postgresql_never_fork(
    tmp_path: Path, postgres_schema: tuple[str, str]
) -> None:
    url, schema = postgres_schema
    files = init_registry(tmp_path / "data")
    env = {"DATABASE_URL": url, "CIVIC_REGISTRY_DATABASE_SCHEMA": schema}
    with ProcessServer(files.data_dir, env) as first, ProcessServer(files.data_dir, env) as second:
        indices = _append_concurrently(files, [first.url, second.url], 50)
        assert indices == list(range(100))
        _assert_one_consistent_tree(files, first.url, 100)
        _assert_one_consistent_tree(files, second.url, 100)
    assert not (files.data_dir / "registry.sqlite3").exists()


# -- the node store: O(log n) reads, same answers as the reference ---------------------------


def _sqlite_tree(path: Path, leaves: int) -> Any:
    engine = create_engine(f"sqlite:///{path}")
    create_schema(engine)
    hashes = [leaf_hash(b"leaf %d" % n) for n in range(leaves)]
    memory = MerkleTree(MemoryNodeStore())
    for digest in hashes:
        with engine.connect() as plain:
            connection = plain.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with connection.begin():
                MerkleTree(SqlNodeStore(connection)).append(digest)
        memory.append(digest)
    return engine, memory, hashes


def test_sql_node_store_serves_the_reference_proofs(tmp_path: Path) -> None:
    engine, memory, hashes = _sqlite_tree(tmp_path / "tree.sqlite3", 21)
    with engine.connect() as connection:
        tree = MerkleTree(SqlNodeStore(connection))
        assert tree.size() == 21
        for size in range(1, 22):
            assert tree.root(size) == root_from_leaf_hashes(hashes[:size])
            for index in range(size):
                assert tree.inclusion_proof(index, size) == memory.inclusion_proof(index, size)
            for old in range(1, size + 1):
                assert tree.consistency_proof(old, size) == memory.consistency_proof(old, size)
    engine.dispose()


class CountingStore(SqlNodeStore):
    __slots__ = ("rows",)

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        self.rows = 0

    def get_many(self, keys: Any) -> dict[tuple[int, int], bytes]:
        found = super().get_many(keys)
        self.rows += len(found)
        return found


def test_proofs_read_o_log_n_rows_in_two_statements(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'big.sqlite3'}")
    create_schema(engine)
    size = 5000
    with engine.begin() as connection:
        MerkleTree(SqlNodeStore(connection)).append_many(leaf_hash(b"%d" % n) for n in range(size))
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("SELECT"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    with engine.connect() as connection:
        store = CountingStore(connection)
        proof = MerkleTree(store).inclusion_proof(1234, size)
        assert len(proof) == 13  # ceil(log2(5000))
        assert len(statements) == 2  # the size, then every node in one query
        assert store.rows <= 2 * 13
        statements.clear()
        store.rows = 0
        MerkleTree(store).consistency_proof(1000, size)
        assert len(statements) == 2 and store.rows <= 2 * 13
    engine.dispose()


# -- witnesses --------------------------------------------------------------------------------


class BlackHole:
    """A TCP listener that never answers: a witness that hangs."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def close(self) -> None:
        self._socket.close()


def test_checkpoints_are_cosigned_and_a_hung_witness_does_not_block_appends(
    tmp_path: Path,
) -> None:
    files = init_registry(tmp_path / "data")
    witness, witness_vkey = witness_server(tmp_path, files.log_vkey)
    hole = BlackHole()
    hung_vkey = write_signer_key(tmp_path / "hung.key", "witness.test/hung")
    try:
        with witness:
            settings = RegistrySettings(
                data_dir=files.data_dir,
                witnesses=[
                    WitnessEndpoint(vkey=witness_vkey, url=witness.url),
                    WitnessEndpoint(vkey=hung_vkey, url=hole.url),
                ],
                witness_quorum=1,
                witness_timeout=3.0,
            )
            with ThreadServer(create_app(load_runtime(settings))) as server:
                config = log_config_from_json(files.trust_config([witness_vkey], quorum=1))
                for number in range(2):
                    started = time.monotonic()
                    response = post_entry(
                        server.url, files.admin_token, issuer_key_add(files, kid=f"k{number}")
                    )
                    # The hung witness costs the publisher its timeout, never the append: the
                    # append is answered before that timeout could have run out (a wide margin,
                    # so a loaded machine does not make this flaky).
                    assert time.monotonic() - started < settings.witness_timeout
                    assert response.status_code == 201
                    wait_for_checkpoint(server.url, number + 1)
                    with HttpLogSource(server.url) as source:
                        snapshot = sync(source, config, None)
                    assert snapshot.size == number + 1
                    assert set(snapshot.witness_timestamps) == {"witness.test/w1"}
                    # The witness cosigned each new size: it checked consistency from the last.
                    monitored = httpx.get(f"{witness.url}/{_origin_hash(ORIGIN)}/checkpoint").text
                    assert monitored.split("\n")[1] == str(number + 1)
    finally:
        hole.close()


def _origin_hash(origin: str) -> str:
    return hashlib.sha256(origin.encode()).hexdigest()


def test_without_the_witness_quorum_the_last_witnessed_checkpoint_is_served(
    tmp_path: Path,
) -> None:
    files = init_registry(tmp_path / "data")
    witness, witness_vkey = witness_server(tmp_path, files.log_vkey)
    with witness:
        settings = RegistrySettings(
            data_dir=files.data_dir,
            witnesses=[WitnessEndpoint(vkey=witness_vkey, url=witness.url)],
            witness_timeout=1.0,
        )
        app = create_app(load_runtime(settings))
        with ThreadServer(app) as server:
            post_entry(server.url, files.admin_token, issuer_key_add(files, kid="k0"))
            wait_for_checkpoint(server.url, 1)
    # The witness is gone: new checkpoints cannot reach the quorum.
    with ThreadServer(create_app(load_runtime(settings))) as server:
        post_entry(server.url, files.admin_token, issuer_key_add(files, kid="k1"))
        publisher = server_app_publisher(server)
        wait_for(lambda: publisher.publish().size == 2, 10, "an unwitnessed checkpoint")
        served = httpx.get(server.url + "/checkpoint").text
        assert served.split("\n")[1] == "1"
        config = log_config_from_json(files.trust_config([witness_vkey], quorum=1))
        with HttpLogSource(server.url) as source:
            assert sync(source, config, None).size == 1


def server_app_publisher(server: ThreadServer) -> Any:
    return server._server.config.app.state.publisher  # type: ignore[union-attr]


# -- settings refuse missing and default secrets ------------------------------------------------


def test_settings_load_and_default_the_origin_to_the_log_key(tmp_path: Path) -> None:
    files = init_registry(tmp_path / "data")
    runtime = load_runtime(RegistrySettings(data_dir=files.data_dir))
    assert runtime.origin == ORIGIN
    assert runtime.admin_token_matches(files.admin_token)
    assert not runtime.admin_token_matches(files.admin_token + "x")
    assert runtime.database_url.endswith("registry.sqlite3")
    assert files.admin_token not in repr(runtime)
    assert "PRIVATE" not in repr(runtime)


def test_settings_refuse_missing_weak_or_exposed_secrets(tmp_path: Path) -> None:
    files = init_registry(tmp_path / "data")
    data_dir = files.data_dir

    def refused(**overrides: Any) -> str:
        overrides.setdefault("data_dir", data_dir)
        with pytest.raises(SettingsError) as error:
            load_runtime(RegistrySettings(**overrides))
        return error.value.detail

    assert "admin token" in refused(admin_token_sha256=token_sha256_hex("changeme"))
    assert "64 hex" in refused(admin_token_sha256="abc")
    assert "quorum" in refused(witness_quorum=1)
    (data_dir / "log.skey").chmod(0o644)
    assert "group or others" in refused()
    (data_dir / "log.skey").unlink()
    assert "missing" in refused()
    assert "missing" in refused(data_dir=tmp_path / "elsewhere")


def test_database_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.example/registry")
    monkeypatch.setenv("CIVIC_REGISTRY_WITNESS_TIMEOUT", "2.5")
    settings = RegistrySettings()
    assert settings.resolved_database_url() == "postgresql://db.example/registry"
    assert settings.witness_timeout == 2.5


def test_init_files_are_private(tmp_path: Path) -> None:
    files = init_registry(tmp_path / "data")
    for name in ("log.skey", "admin.token", "governance-key-1.jwk"):
        assert stat.S_IMODE((files.data_dir / name).stat().st_mode) == 0o600
    assert secrets.compare_digest(
        (files.data_dir / "admin-token.sha256").read_text().strip(),
        token_sha256_hex(files.admin_token),
    )


def test_errors_carry_reason_codes_only(registry: tuple[RegistryFiles, str]) -> None:
    files, url = registry
    response = post_entry(url, files.admin_token, b"not json")
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert ReasonCode(body["error"]) is ReasonCode.REGISTRY_ENTRY_MALFORMED
    assert files.admin_token not in response.text


def test_threads_appending_through_one_server_get_distinct_indices(
    registry: tuple[RegistryFiles, str],
) -> None:
    files, url = registry
    start = tree_size(url)
    results: list[int] = []
    lock = threading.Lock()

    def append(number: int) -> None:
        entry = issuer_key_add(files, kid=f"thread-{uuid.uuid4().hex}-{number}")
        response = post_entry(url, files.admin_token, entry)
        with lock:
            results.append(response.json()["index"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(append, range(16)))
    assert sorted(results) == list(range(start, start + 16))


def test_civic_errors_from_the_client_are_not_leaked_as_other_types() -> None:
    with HttpLogSource("http://127.0.0.1:9") as source, pytest.raises(CivicError) as error:
        source.checkpoint()
    assert error.value.reason is ReasonCode.LOG_UNAVAILABLE
