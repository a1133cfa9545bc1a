"""``civic-wallet unlock`` / ``lock`` and the agent behind them (wallet_cli/agent.py).

Real agents: ``unlock`` starts the background process as a citizen's shell would, and the
commands then run with no passphrase at all (a prompt would read the runner's empty input and
abort). The timeout is tested on an agent served in a thread with a clock the test moves; the
peer-credential check directly and through an agent told to expect another uid. Every agent a
test starts is killed in teardown.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from civic.credentials import RESIDENCY_VCT
from civic.errors import ReasonCode, VerificationError
from tests.cli.test_wallet_cli import (
    PASSPHRASE,
    ROOT,
    Wallet,
    add_credential,
    city,  # noqa: F401 (the fixture)
    wallet,  # noqa: F401 (the fixture)
)
from tests.unit.verifier_city import NOW, City
from wallet_cli.agent import (
    Agent,
    AgentClient,
    SecretKey,
    WalletIdentity,
    agent_socket_path,
    bind_socket,
    parse_duration,
    peer_credentials,
    require_same_uid,
)
from wallet_cli.model import WalletData
from wallet_cli.store import UnsafeFastKdfForTests, WalletStore


def _alive(pid: int) -> bool:
    """Running (a zombie nobody has reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """A short private XDG_RUNTIME_DIR (pytest's tmp paths can exceed a socket path's 107)."""
    path = Path(tempfile.mkdtemp(prefix="cwa-", dir="/tmp"))
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agents() -> Iterator[list[int]]:
    """Pids of the agents a test started; each one still running is killed afterwards."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, 5.0):
                os.kill(pid, signal.SIGKILL)


class Citizen:
    """A wallet with its runtime directory; ``run`` without a passphrase unless asked."""

    def __init__(self, held: Wallet, runtime_dir: Path, agents: list[int]) -> None:
        self.held, self.runtime_dir, self.agents = held, runtime_dir, agents

    def env(self, passphrase: str | None = None) -> dict[str, Any]:
        return {"XDG_RUNTIME_DIR": str(self.runtime_dir), "CIVIC_WALLET_PASSPHRASE": passphrase}

    def run(self, *args: str, passphrase: str | None = None) -> Any:
        return self.held.run(*args, env=self.env(passphrase))

    def unlock(self, *args: str) -> dict[str, Any]:
        result = self.run("unlock", *args, "--json", passphrase=PASSPHRASE)
        assert result.exit_code == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        self.agents.append(document["pid"])
        return document

    @property
    def socket_path(self) -> Path:
        return agent_socket_path(self.held.home, {"XDG_RUNTIME_DIR": str(self.runtime_dir)})


@pytest.fixture
def citizen(wallet: Wallet, runtime_dir: Path, agents: list[int]) -> Citizen:  # noqa: F811
    return Citizen(wallet, runtime_dir, agents)


# --- unlock, then no passphrase -----------------------------------------------------------------


def test_unlock_then_commands_need_no_passphrase(citizen: Citizen) -> None:
    locked = citizen.run("list", "--json")
    assert locked.exit_code == 1  # the prompt read nothing: no agent, no passphrase

    unlocked = citizen.unlock("--for", "15m")
    assert unlocked["seconds"] == 900 and _alive(unlocked["pid"])
    assert oct(citizen.socket_path.stat().st_mode & 0o777) == "0o600"
    assert oct(citizen.socket_path.parent.stat().st_mode & 0o777) == "0o700"

    listed = citizen.run("list", "--json")
    assert listed.exit_code == 0, listed.stderr
    ids = [row["id"] for row in json.loads(listed.stdout)["credentials"]]
    assert ids == list(citizen.held.ids.values())
    assert "warning" not in listed.stderr

    shown = citizen.run("show", ids[0], "--offline", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["id"] == ids[0], shown.stderr

    # A write through the agent: sealed with the wallet's own key, so the passphrase opens it.
    deleted = citizen.run("delete", ids[0], "--yes", "--json")
    assert deleted.exit_code == 0, deleted.stderr
    assert [c.id for c in citizen.held.store().read().credentials] == ids[1:]
    assert (citizen.held.home / "wallet.sealed.prev").exists()

    # Nothing secret on the way out, nor in the agent's command line or environment.
    output = json.dumps(unlocked)
    assert PASSPHRASE not in output
    pid = unlocked["pid"]
    assert PASSPHRASE.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{pid}/environ")
    if os.geteuid() == 0:  # the agent is not dumpable: only root reads its environment
        assert b"XDG_RUNTIME_DIR=" in environ.read_bytes()
        assert PASSPHRASE.encode() not in environ.read_bytes()


def test_lock_stops_the_agent_and_wipes(citizen: Citizen) -> None:
    pid = citizen.unlock()["pid"]
    locked = citizen.run("lock", "--json")
    assert json.loads(locked.stdout) == {"locked": True, "agent_was_running": True}
    assert _wait_gone(pid)
    assert not citizen.socket_path.exists()
    assert citizen.run("list").exit_code == 1  # the passphrase again
    again = citizen.run("lock", "--json")
    assert json.loads(again.stdout)["agent_was_running"] is False


def test_a_second_unlock_replaces_the_first_agent(citizen: Citizen) -> None:
    first = citizen.unlock()["pid"]
    second = citizen.unlock("--for", "2h")["pid"]
    assert first != second and _wait_gone(first) and _alive(second)
    status = AgentClient(citizen.held.home, citizen.env()).status()
    assert status is not None and status["pid"] == second and status["expires_in"] > 3600


def test_unlock_asks_for_the_passphrase_once(citizen: Citizen) -> None:
    result = citizen.held.run("unlock", "--json", env=citizen.env(), input=PASSPHRASE + "\n")
    assert result.exit_code == 0, result.stderr
    citizen.agents.append(json.loads(result.stdout)["pid"])
    assert result.stderr.count("Wallet passphrase") == 1
    assert PASSPHRASE not in result.stdout + result.stderr
    assert citizen.run("list").exit_code == 0


def test_unlock_with_a_wrong_passphrase_starts_nothing(citizen: Citizen) -> None:
    result = citizen.run("unlock", passphrase="not the wallet passphrase")
    assert result.exit_code == 1
    assert "wallet_passphrase_wrong" in result.stderr
    assert not citizen.socket_path.exists()


@pytest.mark.parametrize("value", ["0", "13h", "15 minutes", "-5m", "1d"])
def test_unlock_for_is_a_bounded_duration(citizen: Citizen, value: str) -> None:
    result = citizen.run("unlock", "--for", value, passphrase=PASSPHRASE)
    assert result.exit_code == 2 and "malformed_input" in result.stderr
    assert not citizen.socket_path.exists()


def test_durations() -> None:
    assert [parse_duration(v) for v in ("90", "90s", "15m", "2h", "12h")] == [
        90,
        90,
        900,
        7200,
        43_200,
    ]


# --- the wallet changes under the agent ---------------------------------------------------------


def test_the_agent_refuses_and_stops_once_the_wallet_is_replaced(
    citizen: Citizen,
    city: City,  # noqa: F811
) -> None:
    pid = citizen.unlock()["pid"]
    home = citizen.held.home
    for name in ("wallet.sealed", "wallet.sealed.prev"):
        (home / name).unlink()
    WalletStore(home, lambda: PASSPHRASE, unsafe_kdf=UnsafeFastKdfForTests()).create(
        WalletData(created_at=NOW, alg="EdDSA")
    )  # same place, same passphrase: a new salt, so another key
    refused = citizen.run("list", "--json")
    assert refused.exit_code == 1  # the agent did not open it; the prompt read nothing
    assert _wait_gone(pid)
    assert not citizen.socket_path.exists()
    fresh = citizen.run("list", "--json", passphrase=PASSPHRASE)
    assert json.loads(fresh.stdout) == {"credentials": []}


def test_a_stale_socket_is_skipped_then_replaced(citizen: Citizen) -> None:
    path = citizen.socket_path
    path.parent.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # an agent that died without cleaning up
    listed = citizen.run("list", "--json", passphrase=PASSPHRASE)
    assert listed.exit_code == 0 and "warning" not in listed.stderr
    citizen.unlock()
    assert citizen.run("list").exit_code == 0


def test_an_agent_directory_open_to_others_is_not_trusted(citizen: Citizen) -> None:
    pid = citizen.unlock()["pid"]
    os.chmod(citizen.socket_path.parent, 0o755)  # noqa: S103 (the point of the test)
    listed = citizen.run("list", "--json", passphrase=PASSPHRASE)
    assert listed.exit_code == 0
    assert "warning: wallet_agent_untrusted" in listed.stderr
    unlock = citizen.run("unlock", passphrase=PASSPHRASE)
    assert unlock.exit_code == 1 and "wallet_agent_untrusted" in unlock.stderr
    lock = citizen.run("lock")  # not "locked": the agent may still hold the key
    assert lock.exit_code == 1 and "wallet_agent_untrusted" in lock.stderr
    os.kill(pid, signal.SIGTERM)
    assert _wait_gone(pid)


# --- the agent in this process: clock, identity, peers ------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _agent(held: Wallet, path: Path, clock: Clock, **kwargs: Any) -> Agent:
    key, envelope = held.store().unlock()
    return Agent(
        bind_socket(path),
        path,
        WalletIdentity.of(held.home, envelope),
        SecretKey.from_bytes(key.key),
        lifetime=60,
        clock=clock,
        **kwargs,
    )


def test_the_agent_stops_when_its_time_is_up(citizen: Citizen) -> None:
    clock = Clock()
    agent = _agent(citizen.held, citizen.socket_path, clock, poll=0.01)
    server = threading.Thread(target=agent.serve_forever, daemon=True)
    server.start()
    client = AgentClient(citizen.held.home, citizen.env())
    store = WalletStore(
        citizen.held.home, lambda: "", unsafe_kdf=UnsafeFastKdfForTests(), agent=client
    )
    assert len(store.read().credentials) == 2  # opened by the agent: the passphrase is ""
    clock.now += 59
    assert client.status() is not None
    clock.now += 1
    server.join(timeout=10)
    assert not server.is_alive() and agent.stopped == "expired"
    assert not citizen.socket_path.exists()
    assert client.status() is None


def test_the_agent_stops_when_its_socket_is_taken_away(citizen: Citizen) -> None:
    agent = _agent(citizen.held, citizen.socket_path, Clock(), poll=0.01)
    server = threading.Thread(target=agent.serve_forever, daemon=True)
    server.start()
    assert AgentClient(citizen.held.home, citizen.env()).status() is not None
    citizen.socket_path.unlink()  # nobody could reach it any more: no key kept for nothing
    server.join(timeout=10)
    assert not server.is_alive() and agent.stopped == "socket removed"


def test_requests_are_checked_against_the_wallet_and_the_clock(citizen: Citizen) -> None:
    clock = Clock()
    agent = _agent(citizen.held, citizen.socket_path, clock)
    try:
        _, envelope = citizen.held.store().unlock()
        identity = WalletIdentity.of(citizen.held.home, envelope).to_json()
        answer, plaintext = agent.answer({"op": "open", "wallet": identity}, envelope.sealed)
        assert answer == {"ok": True} and b'"credentials"' in plaintext
        other = identity | {"home": "/elsewhere"}
        refused, _ = agent.answer({"op": "open", "wallet": other}, envelope.sealed)
        assert refused["error"] == ReasonCode.WALLET_AGENT_MISMATCH
        damaged = envelope.sealed[:-1] + bytes([envelope.sealed[-1] ^ 1])
        refused, _ = agent.answer({"op": "open", "wallet": identity}, damaged)
        assert refused["error"] == ReasonCode.WALLET_AGENT_MISMATCH
        assert agent.answer({"op": "unwrap"}, b"")[0]["error"] == ReasonCode.MALFORMED_INPUT
        clock.now += 60
        expired, data = agent.answer({"op": "open", "wallet": identity}, envelope.sealed)
        assert expired["error"] == ReasonCode.WALLET_AGENT_UNAVAILABLE and data == b""
        assert agent.stopped == "expired"
    finally:
        agent.close()
    assert not citizen.socket_path.exists()


def test_an_agent_of_another_wallet_is_not_used(citizen: Citizen, city: City) -> None:  # noqa: F811
    clock = Clock()
    agent = _agent(citizen.held, citizen.socket_path, clock, poll=0.01)
    server = threading.Thread(target=agent.serve_forever, daemon=True)
    server.start()
    try:
        other_home = citizen.held.home.parent / "other"
        other = WalletStore(other_home, lambda: PASSPHRASE, unsafe_kdf=UnsafeFastKdfForTests())
        other.create(WalletData(created_at=NOW, alg="EdDSA"))
        add_credential(other, city, RESIDENCY_VCT)
        warnings: list[str] = []
        # Pointed at this agent's socket, as if it had been put where the other wallet's goes.
        client = AgentClient(other_home, citizen.env(), warn=warnings.append)
        client.socket_path = citizen.socket_path
        asked: list[int] = []

        def passphrase() -> str:
            asked.append(1)
            return PASSPHRASE

        store = WalletStore(
            other_home, passphrase, unsafe_kdf=UnsafeFastKdfForTests(), agent=client
        )
        assert len(store.read().credentials) == 1
        assert asked == [1]
        assert warnings and warnings[0].startswith("wallet_agent_mismatch")
    finally:
        citizen.held.run("lock", env=citizen.env())
        server.join(timeout=10)
    assert agent.stopped == "locked"


def test_the_agent_going_away_mid_command_falls_back_to_the_checked_passphrase(
    citizen: Citizen,
) -> None:
    agent = _agent(citizen.held, citizen.socket_path, Clock(), poll=0.01)
    server = threading.Thread(target=agent.serve_forever, daemon=True)
    server.start()
    client = AgentClient(citizen.held.home, citizen.env())
    given = ["a wrong passphrase, typed in haste"]
    store = WalletStore(
        citizen.held.home, lambda: given.pop(0), unsafe_kdf=UnsafeFastKdfForTests(), agent=client
    )
    before = (citizen.held.home / "wallet.sealed").read_bytes()
    with pytest.raises(VerificationError) as wrong, store.transaction() as data:
        data.credentials.pop()
        assert client.lock() is not None  # times out, say, while the citizen reads
    assert wrong.value.reason is ReasonCode.WALLET_PASSPHRASE_WRONG
    assert (citizen.held.home / "wallet.sealed").read_bytes() == before  # nothing written
    server.join(timeout=10)

    given.append(PASSPHRASE)
    with store.transaction() as data:
        data.credentials.pop()
    assert len(citizen.held.store().read().credentials) == 1


def test_peer_credentials_come_from_the_kernel() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        peer = peer_credentials(left)
        assert (peer.pid, peer.uid, peer.gid) == (os.getpid(), os.geteuid(), os.getegid())
        require_same_uid(peer, os.geteuid())
        with pytest.raises(VerificationError) as refused:
            require_same_uid(peer, os.geteuid() + 1)
        assert refused.value.reason is ReasonCode.WALLET_AGENT_UNTRUSTED


def test_the_agent_says_nothing_to_another_uid(citizen: Citizen) -> None:
    # The agent is told its user is someone else: this process is then "another uid" to it.
    agent = _agent(citizen.held, citizen.socket_path, Clock(), uid=os.geteuid() + 1)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
            peer.settimeout(10)
            peer.connect(str(citizen.socket_path))
            agent.serve_one()  # it reads nothing from a stranger
            assert peer.recv(1) == b""  # closed without a word
    finally:
        agent.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing to another uid needs root")
def test_a_process_of_another_uid_gets_no_answer(citizen: Citizen) -> None:
    path = citizen.socket_path  # before the runtime directory stops being private
    agent = _agent(citizen.held, path, Clock())
    # Let another user reach the socket at all (the agent's own directory never allows it).
    os.chmod(citizen.runtime_dir, 0o711)  # noqa: S103
    os.chmod(path.parent, 0o711)  # noqa: S103
    os.chmod(path, 0o666)  # noqa: S103 (the point of the test)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit status
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
                peer.settimeout(10)
                peer.connect(str(path))
                code = 2  # connected, so it got that far
                try:
                    peer.sendall(b"\x00\x00\x00\x0f\x00\x00\x00\x00" + b'{"op":"status"}')
                    code = 0 if peer.recv(4096) == b"" else 1
                except (ConnectionResetError, BrokenPipeError):
                    code = 0  # hung up on
        finally:
            os._exit(code)
    status: int | None = None
    try:
        ready, _, _ = select.select([agent._listener], [], [], 10)
        assert ready, "the other user never connected"
        agent.serve_one()
        deadline = time.monotonic() + 10
        while status is None and time.monotonic() < deadline:
            pid, wait_status = os.waitpid(child, os.WNOHANG)
            status = os.waitstatus_to_exitcode(wait_status) if pid == child else None
            time.sleep(0.02)
        assert status == 0  # 1: the agent answered; 2, 3: the child failed otherwise
    finally:
        if status is None:  # not reaped yet, so the pid is still the child's
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        agent.close()


# --- the console script -------------------------------------------------------------------------


def test_the_console_script_lists_through_the_agent(
    tmp_path: Path,
    runtime_dir: Path,
    agents: list[int],
    city: City,  # noqa: F811
) -> None:
    home = tmp_path / "real"
    store = WalletStore(home, lambda: PASSPHRASE)  # the real KDF: what a citizen runs
    store.create(WalletData(created_at=NOW, alg="EdDSA"))
    add_credential(store, city, RESIDENCY_VCT)
    env = {
        **os.environ,
        "CIVIC_WALLET_HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime_dir),
        "CIVIC_WALLET_PASSPHRASE": PASSPHRASE,
    }

    def script(*args: str, **changes: str | None) -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in (env | changes).items() if v is not None}
        return subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
            [sys.executable, *args],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    cli = ("-m", "wallet_cli")  # what the console script runs (wallet_cli.quick:main)
    unlocked = script(*cli, "unlock", "--for", "5m", "--json")
    assert unlocked.returncode == 0, unlocked.stderr
    agents.append(json.loads(unlocked.stdout)["pid"])
    listed = script(*cli, "list", "--json", CIVIC_WALLET_PASSPHRASE=None)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["credentials"]) == 1
    table = script(*cli, "--home", str(home), "list", "--lang", "ko", CIVIC_WALLET_PASSPHRASE=None)
    assert table.returncode == 0 and "거주" in table.stdout, table.stderr

    # The direct path imports neither Typer nor libsodium nor any protocol code.
    probe = script(
        "-c",
        "import sys; from wallet_cli.quick import fast_list;"
        " code = fast_list(['list', '--json']);"
        " heavy = ('typer', 'click', 'pydantic', 'nacl', 'httpx', 'qrcode', 'PIL', 'jsonschema');"
        " loaded = {m.split('.')[0] for m in sys.modules};"
        " print(code, sorted(loaded & set(heavy)), file=sys.stderr)",
        CIVIC_WALLET_PASSPHRASE=None,
    )
    assert probe.stderr.strip() == "0 []", probe.stderr

    assert script(*cli, "lock").returncode == 0
    assert script(*cli, "list", CIVIC_WALLET_PASSPHRASE=None).returncode == 1


def test_the_store_constants_are_libsodiums() -> None:
    # Written out in wallet_cli/store.py so that opening through the agent imports no libsodium.
    import nacl.pwhash
    import nacl.secret

    from wallet_cli import store

    argon2 = nacl.pwhash.argon2id
    assert store.SALT_BYTES == argon2.SALTBYTES
    assert (store.KEY_BYTES, store.NONCE_BYTES) == (
        nacl.secret.SecretBox.KEY_SIZE,
        nacl.secret.SecretBox.NONCE_SIZE,
    )
    assert (store.MODERATE.opslimit, store.MODERATE.memlimit) == (
        argon2.OPSLIMIT_MODERATE,
        argon2.MEMLIMIT_MODERATE,
    )
    assert (store._CEILING.opslimit, store._CEILING.memlimit) == (
        argon2.OPSLIMIT_SENSITIVE,
        argon2.MEMLIMIT_SENSITIVE,
    )
    fast = UnsafeFastKdfForTests.limits
    assert (fast.opslimit, fast.memlimit) == (argon2.OPSLIMIT_MIN, argon2.MEMLIMIT_MIN)
