"""kill -9 the registry during appends, 20 times; the log stays one consistent tree.

``civic-registry serve`` runs as its own process (SQLite in the data directory, checkpoints
cosigned by a witness service, quorum 1); two clients append accreditation events
(``issuer.key.add``, each with its own kid) concurrently, and after a seeded random number of
acknowledged appends (and a short random delay) the process gets SIGKILL. Before each kill a
relying party syncs (:func:`civic.logsync.sync`) and keeps the witnessed checkpoint it
verified. After each restart:

- every acknowledged append (201) is in the log exactly once, at the index it was given, with
  its leaf hash;
- an append that was in doubt (connection cut) is in the log once or not at all; posting it
  again answers 201 if it was absent and 409 ``registry_entry_duplicate`` if it was present;
- nothing else is in the log;
- the relying party syncs from the checkpoint it trusted before the kill to the new one
  (consistency proof, witness cosignature, trust state folded forward), and the witness, which
  refuses to cosign a checkpoint inconsistent with one it cosigned, keeps cosigning.

At the end a fresh client syncs the whole log from genesis.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from civic.encoding import json_dumps
from civic.logsync import LogConfig, TrustSnapshot, sync
from civic.trust import SignedEntry
from registry.client import HttpLogSource, log_config_from_json
from tests.faults.harness import Launcher, ServiceProcess
from tests.services.registry_harness import (
    RegistryFiles,
    free_port,
    init_registry,
    issuer_key_add,
    tree_size,
    wait_for,
    wait_for_checkpoint,
    witness_server,
)

pytestmark = pytest.mark.faults

KILLS = 20
CLIENTS = 2
SEED = 8_2027
MAX_APPENDS_BEFORE_KILL = 6
CYCLE_TIMEOUT = 60.0


class Unexpected(AssertionError):
    """An answer the registry must not give here."""


@dataclass
class Appends:
    """What the appending clients know, shared by their threads."""

    files: RegistryFiles
    lock: threading.Lock = field(default_factory=threading.Lock)
    made: int = 0
    acked: dict[bytes, int] = field(default_factory=dict)
    """leaf bytes -> the index the 201 gave."""
    in_doubt: dict[bytes, SignedEntry] = field(default_factory=dict)
    cycle_acked: int = 0
    errors: list[str] = field(default_factory=list)
    duplicates_found: int = 0
    retried_absent: int = 0

    def next_entry(self) -> SignedEntry:
        with self.lock:
            self.made += 1
            number = self.made
        return issuer_key_add(self.files, kid=f"fault-key-{number}")

    def record(self, entry: SignedEntry, response: httpx.Response) -> None:
        if response.status_code != 201:
            raise Unexpected(f"append -> {response.status_code}: {response.text}")
        answer = response.json()
        with self.lock:
            self.acked[entry.leaf_bytes()] = int(answer["index"])
            self.cycle_acked += 1


def _post(http: httpx.Client, token: str, entry: SignedEntry) -> httpx.Response:
    return http.post(
        "/entries",
        content=json_dumps(entry.to_json()),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


def _append_until_cut(url: str, appends: Appends, stop: threading.Event) -> None:
    token = appends.files.admin_token
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            entry = appends.next_entry()
            try:
                response = _post(http, token, entry)
            except httpx.TransportError:
                with appends.lock:
                    appends.in_doubt[entry.leaf_bytes()] = entry
                return
            try:
                appends.record(entry, response)
            except Exception as error:
                with appends.lock:
                    appends.errors.append(repr(error))
                return


def _log_leaves(url: str) -> list[bytes]:
    with HttpLogSource(url) as source:
        return source.entries(0, tree_size(url))


def _check_log(url: str, appends: Appends) -> list[bytes]:
    """Acknowledged appends at their index once, in-doubt ones at most once, nothing else."""
    leaves = _log_leaves(url)
    counts = Counter(leaves)
    assert max(counts.values(), default=1) == 1, "an entry is in the log twice"
    for leaf, index in appends.acked.items():
        assert leaves[index] == leaf, "an acknowledged append is missing or moved"
    expected = set(appends.acked) | set(appends.in_doubt)
    assert set(leaves) <= expected, "the log holds an entry nobody appended"
    return leaves


def _retry_in_doubt(url: str, appends: Appends, leaves: list[bytes]) -> None:
    """Post every in-doubt append again: 201 if it was lost, 409 duplicate if it was not."""
    present = set(leaves)
    token = appends.files.admin_token
    with httpx.Client(base_url=url, timeout=30) as http:
        for leaf, entry in sorted(appends.in_doubt.items()):
            response = _post(http, token, entry)
            if leaf in present:
                assert response.status_code == 409, response.text
                assert response.json()["error"] == "registry_entry_duplicate"
                appends.duplicates_found += 1
                appends.acked[leaf] = leaves.index(leaf)
            else:
                appends.record(entry, response)
                appends.retried_absent += 1
    appends.in_doubt.clear()


def _synced(url: str, config: LogConfig, previous: TrustSnapshot | None) -> TrustSnapshot:
    with HttpLogSource(url) as source:
        return sync(source, config, previous)


def test_kill_9_during_appends(tmp_path: Path) -> None:
    files = init_registry(tmp_path / "registry")
    witness, witness_vkey = witness_server(tmp_path, files.log_vkey)
    config = log_config_from_json(files.trust_config([witness_vkey], 1))
    rng = random.Random(SEED)
    appends = Appends(files)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    launcher = Launcher("registry.cli")
    trusted: TrustSnapshot | None = None
    resyncs = 0
    with witness:
        env = {
            **os.environ,
            "CIVIC_REGISTRY_WITNESSES": json_dumps([{"vkey": witness_vkey, "url": witness.url}]),
            "CIVIC_REGISTRY_WITNESS_QUORUM": "1",
            "CIVIC_REGISTRY_REPUBLISH_INTERVAL": "1",
        }
        server = ServiceProcess(
            launcher,
            ["serve", "--data-dir", str(files.data_dir), "--port", str(port)],
            prog="civic-registry",
            url=url,
            env=env,
            log=tmp_path / "registry-serve.log",
        )
        try:
            for _ in range(KILLS + 1):
                server.start()
                leaves = _check_log(url, appends)
                _retry_in_doubt(url, appends, leaves)
                size = len(_check_log(url, appends))
                wait_for_checkpoint(url, size, CYCLE_TIMEOUT)
                if trusted is not None:
                    # From the checkpoint trusted before the kill to the new one.
                    newer = _synced(url, config, trusted)
                    assert newer.size >= trusted.size
                    trusted = newer
                    resyncs += 1
                if server.starts > KILLS:
                    break
                kill_after = rng.randint(0, MAX_APPENDS_BEFORE_KILL)
                appends.cycle_acked = 0
                stop = threading.Event()
                threads = [
                    threading.Thread(target=_append_until_cut, args=(url, appends, stop))
                    for _ in range(CLIENTS)
                ]
                for thread in threads:
                    thread.start()
                try:
                    wait_for(
                        lambda target=kill_after: appends.cycle_acked >= target or appends.errors,
                        CYCLE_TIMEOUT,
                        f"{kill_after} appends",
                    )
                    trusted = _synced(url, config, trusted)
                    time.sleep(rng.uniform(0, 0.05))  # the kill lands at varying points
                    server.kill()
                finally:
                    stop.set()
                    for thread in threads:
                        thread.join(timeout=CYCLE_TIMEOUT)
                assert not appends.errors, appends.errors
            # Appends go on after the last restart, and a fresh client syncs the whole log.
            with httpx.Client(base_url=url, timeout=30) as http:
                for _ in range(3):
                    entry = appends.next_entry()
                    appends.record(entry, _post(http, files.admin_token, entry))
            leaves = _check_log(url, appends)
            assert set(leaves) == set(appends.acked)
            wait_for_checkpoint(url, len(leaves), CYCLE_TIMEOUT)
            fresh = _synced(url, config, None)
            assert fresh.size == len(leaves)
            assert trusted is not None and _synced(url, config, trusted).size == len(leaves)
        finally:
            server.stop()
            launcher.close()
    summary = {
        "kills": server.starts - 1,
        "acknowledged": len(appends.acked) - appends.duplicates_found,
        "in_doubt_found_present": appends.duplicates_found,
        "in_doubt_found_absent": appends.retried_absent,
        "log_size": len(leaves),
        "resyncs_from_trusted_checkpoint": resyncs,
    }
    print(f"registry kill -9 summary: {summary}")
    assert summary["kills"] == KILLS and resyncs == KILLS
