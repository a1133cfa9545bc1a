"""Registry figures (issue: the anchored key registry).

1. Append rate: entries per second through ``POST /entries`` on a real registry service on
   127.0.0.1 (SQLite, WAL) with one real witness cosigning every published checkpoint; and the
   time until a cosigned checkpoint covers the last entry.
2. Proof latency at 1,000,000 entries: inclusion and consistency proofs generated from the
   registry's SQL node store (SQLite), median and p99 over random indices, with the number of
   node reads per proof (O(log n): one batched SELECT). The peer is the in-memory node store.
3. A fresh client syncing 100,000 entries: checkpoint + witness quorum, every entry fetched,
   the root recomputed and every governance signature checked while folding the trust state.
   By default the signatures go to checker processes (civic.sigcheck) while the calling thread
   parses and folds; ``inline`` does everything on one thread. The peer is the bare cost of
   the log's Ed25519 verifications on one core.
"""

from __future__ import annotations

import gc
import os
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection

from bench.harness import write_report
from civic.checkpoint import (
    CosignatureSigner,
    CosignatureVerifier,
    generate_cosignature_key,
)
from civic.clock import FixedClock
from civic.encoding import b64url_decode, json_loads
from civic.jose import PrivateKey
from civic.logsync import LogConfig, MemoryLog, sync
from civic.merkle import MemoryNodeStore, MerkleTree, NodeKey
from civic.note import NoteSigner, generate_note_key
from civic.trust import GovernanceConfig, new_event, sign_event
from registry.app import create_app
from registry.db import create_engine, create_schema
from registry.settings import RegistrySettings, WitnessEndpoint, load_runtime
from registry.store import SqlNodeStore
from tests.services.registry_harness import (
    ThreadServer,
    init_registry,
    issuer_key_add,
    wait_for_checkpoint,
    witness_server,
)

APPENDS = 300
PROOF_TREE_SIZE = 1_000_000
PROOF_SAMPLES = 400
SYNC_ENTRIES = 100_000


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def append_rate(workdir: Path) -> dict[str, Any]:
    files = init_registry(workdir / "registry")
    witness, witness_vkey = witness_server(workdir, files.log_vkey)
    entries = [issuer_key_add(files, kid=f"k{i}") for i in range(APPENDS)]
    with witness:
        settings = RegistrySettings(
            data_dir=files.data_dir,
            witnesses=[WitnessEndpoint(vkey=witness_vkey, url=witness.url)],
            witness_quorum=1,
        )
        with ThreadServer(create_app(load_runtime(settings))) as server, httpx.Client() as client:
            headers = {
                "Authorization": f"Bearer {files.admin_token}",
                "Content-Type": "application/json",
            }
            bodies = [entry.leaf_bytes() for entry in entries]
            started = time.perf_counter()
            for body in bodies:
                response = client.post(f"{server.url}/entries", content=body, headers=headers)
                assert response.status_code == 201, response.text
            appended = time.perf_counter() - started
            wait_for_checkpoint(server.url, APPENDS, timeout=60)
            covered = time.perf_counter() - started
    return {
        "entries": APPENDS,
        "entries_per_s": round(APPENDS / appended, 1),
        "seconds_until_cosigned_checkpoint_covers_all": round(covered, 2),
        "witnesses": 1,
        "store": "SQLite (WAL, synchronous=FULL)",
    }


class _CountingStore:
    """Counts node reads of the SQL store (the O(log n) claim)."""

    def __init__(self, inner: SqlNodeStore) -> None:
        self.inner, self.reads, self.calls = inner, 0, 0

    def size(self) -> int:
        return self.inner.size()

    def get_many(self, keys: Any) -> Any:
        self.calls += 1
        self.reads += len(keys)
        return self.inner.get_many(keys)

    def put_many(self, nodes: dict[NodeKey, bytes], size: int) -> None:
        self.inner.put_many(nodes, size)


def _build_sql_tree(connection: Connection, size: int, rng: random.Random) -> None:
    tree = MerkleTree(SqlNodeStore(connection))
    chunk = 50_000
    for start in range(0, size, chunk):
        tree.append_many([rng.randbytes(32) for _ in range(min(chunk, size - start))])
        connection.commit()


def proof_latency(workdir: Path) -> dict[str, Any]:
    rng = random.Random(7)
    engine = create_engine(f"sqlite:///{workdir / 'proofs.sqlite3'}")
    create_schema(engine)
    build_started = time.perf_counter()
    with engine.connect() as connection:
        _build_sql_tree(connection, PROOF_TREE_SIZE, rng)
    build_seconds = time.perf_counter() - build_started
    memory = MerkleTree(MemoryNodeStore())
    memory.append_many([rng.randbytes(32) for _ in range(PROOF_TREE_SIZE)])
    results: dict[str, Any] = {
        "tree_size": PROOF_TREE_SIZE,
        "build_seconds": round(build_seconds, 1),
    }
    with engine.connect() as connection:
        counting = _CountingStore(SqlNodeStore(connection))
        sql_tree = MerkleTree(counting)  # type: ignore[arg-type]
        for kind in ("inclusion", "consistency"):
            for label, tree in (("sqlite", sql_tree), ("memory", memory)):
                samples = []
                counting.reads = counting.calls = 0
                for _ in range(PROOF_SAMPLES):
                    started = time.perf_counter()
                    if kind == "inclusion":
                        tree.inclusion_proof(rng.randrange(PROOF_TREE_SIZE), PROOF_TREE_SIZE)
                    else:
                        tree.consistency_proof(rng.randrange(1, PROOF_TREE_SIZE), PROOF_TREE_SIZE)
                    samples.append((time.perf_counter() - started) * 1000)
                entry: dict[str, Any] = {
                    "median_ms": round(statistics.median(samples), 3),
                    "p99_ms": round(_percentile(samples, 0.99), 3),
                }
                if label == "sqlite":
                    entry["node_reads_per_proof"] = round(counting.reads / PROOF_SAMPLES, 1)
                    entry["queries_per_proof"] = round(counting.calls / PROOF_SAMPLES, 1)
                results[f"{kind}_{label}"] = entry
    engine.dispose()
    return results


def _verify_floor(count: int) -> float:
    """Seconds for ``count`` bare libsodium verifications of ~1 KB messages (from 5,000)."""
    key = PrivateKey.from_ed25519_seed(bytes(range(32)))
    message = bytes(1000)
    signature = key.sign(message)
    started = time.perf_counter()
    for _ in range(5000):
        key.public_key.verify(message, signature)
    return round((time.perf_counter() - started) / 5000 * count, 2)


def fresh_sync() -> dict[str, Any]:
    """Sync 100,000 entries from scratch: with the default signature checkers, then inline.

    CPU time is the process's (every thread) plus its checker processes', and the floor (bare
    verifications) is measured in the same run: the machine is shared, so only figures taken
    together compare.
    """
    governance_key = PrivateKey.from_ed25519_seed(bytes(32))
    governance = GovernanceConfig({"gov-1": governance_key.public_key}, quorum=1)
    skey, vkey = generate_note_key("registry.bench/seoul")
    wkey, wvkey = generate_cosignature_key("witness.bench/w1")
    log = MemoryLog(
        "registry.bench/seoul", NoteSigner.from_skey(skey), [CosignatureSigner.from_skey(wkey)]
    )
    clock = FixedClock(1_800_000_000)
    signing_started = time.perf_counter()
    for number in range(SYNC_ENTRIES):
        issuer = f"https://agency-{number // 100}.seoul.example"
        event = new_event(
            "issuer.key.add",
            now=clock,
            issuer=issuer,
            kid=f"key-{number % 100}",
            jwk=PrivateKey.from_ed25519_seed(number.to_bytes(32, "big")).public_key.to_jwk(),
            vct=["urn:civic:vct:residency:1"],
            status_base_url=f"{issuer}/status",
            not_before=0,
            not_after=4_000_000_000,
        )
        log.append(sign_event(event, [("gov-1", governance_key)]))
    log.publish()
    prepare_seconds = time.perf_counter() - signing_started
    config = LogConfig(
        origin="registry.bench/seoul",
        log_verifier=NoteSigner.from_skey(skey).verifier(),
        witnesses=[CosignatureVerifier.from_vkey(wvkey)],
        witness_quorum=1,
        governance=governance,
    )
    assert vkey
    # civic.trust's default: one checker per further CPU, at most 7.
    workers = max(0, min(7, (os.cpu_count() or 1) - 1))

    def cpu_seconds() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    def timed(workers: int) -> dict[str, Any]:
        gc.collect()
        started, cpu_started = time.perf_counter(), cpu_seconds()
        snapshot = sync(log, config, None, now=clock, workers=workers)
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
        assert snapshot.size == SYNC_ENTRIES
        return {
            "workers": workers,
            "wall_seconds": round(wall, 2),
            "cpu_seconds": round(cpu, 2),
            "per_entry_us": round(wall / SYNC_ENTRIES * 1e6, 1),
        }

    def floor_cpu_seconds(sample: int = 5000) -> float:
        """CPU seconds of bare verifications of the log's own signatures, for every entry."""
        checks = []
        for leaf in log.leaves[:sample]:
            header, payload, signature = json_loads(leaf)["signatures"][0].split(".")
            checks.append((f"{header}.{payload}".encode(), b64url_decode(signature)))
        key = governance_key.public_key
        cpu_started = time.process_time()
        assert all(key.verify(signing_input, signature) for signing_input, signature in checks)
        return (time.process_time() - cpu_started) / sample * SYNC_ENTRIES

    default = timed(workers)
    inline = timed(0)
    floor_cpu = floor_cpu_seconds()
    return {
        "entries": SYNC_ENTRIES,
        **default,
        "cpus": os.cpu_count(),
        "peer_floor_seconds_100k_bare_ed25519_verifications": _verify_floor(SYNC_ENTRIES),
        "floor_cpu_seconds": round(floor_cpu, 2),
        "cpu_beyond_floor_per_entry_us": round(
            (inline["cpu_seconds"] - floor_cpu) / SYNC_ENTRIES * 1e6, 1
        ),
        "inline": inline,
        "preparing_the_log_seconds": round(prepare_seconds, 1),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        report = {
            "what": "registry append rate, proof latency at 1M entries, fresh sync of 100k",
            "append": append_rate(workdir),
            "proofs": proof_latency(workdir),
            "sync": fresh_sync(),
            "targets": {
                "proofs.*_sqlite.median_ms": "<= 1",
                "sync.wall_seconds": "<= 10",
            },
        }
    path = write_report("registry", report)
    print(f"append: {report['append']['entries_per_s']} entries/s with one witness")
    for key, value in report["proofs"].items():
        print(f"proofs {key}: {value}")
    print(
        f"sync 100k: {report['sync']['wall_seconds']} s wall, {report['sync']['cpu_seconds']} s CPU"
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
