"""The wallet agent: ``civic-wallet unlock`` derives the key once, a small background process
keeps it, and the other commands ask it instead of running Argon2id again (issue 6).

Design, in the manner of ssh-agent and gpg-agent:

- **The key never leaves the agent.** The agent does not hand the key out; it *opens* the
  sealed store (``nonce || ciphertext`` in, plaintext out) and *seals* new contents (plaintext
  in, a fresh nonce and ciphertext out), for the one wallet it was unlocked for (its real
  path, salt and KDF limits). A process of the same user can therefore read and change the
  wallet while the agent runs (so can it with the key), but cannot carry the key away: the
  store's key never changes (each write reuses the salt), so a copied key would open every
  later copy of the wallet, backups of the directory included, for good. When the agent
  stops, nothing that outlives it was handed out.
- **Only the same user.** The socket lives in a private directory (``0700``, owned by the
  user, checked on every use): ``$XDG_RUNTIME_DIR/civic-wallet`` when that is a private
  directory, else ``<wallet>/agent``; the socket itself is ``0600``. On top of that both
  sides check the peer's uid with ``SO_PEERCRED`` (:func:`require_same_uid`): the agent
  answers nobody else, and a client talks to no agent run by someone else.
- **Memory only.** The key is read from a pipe into libsodium-allocated memory that is
  ``mlock``-ed (best effort) and zeroed when the agent stops; it never becomes a Python
  ``bytes`` object in the agent. Core dumps are disabled and the process is made
  non-dumpable (``PR_SET_DUMPABLE``), which also keeps same-user debuggers out.
- **It stops by itself** when its time is up (``--for``, measured on ``CLOCK_BOOTTIME`` so a
  suspended laptop does not extend it), on ``civic-wallet lock``, when the wallet is replaced
  (the store's salt or limits change, or it disappears), when its socket is removed, and on
  SIGTERM/SIGHUP/SIGINT.
- **Clients fall back.** Any trouble (no agent, a stale socket, an agent for another wallet,
  one that has just timed out, a wrong uid) and the command asks for the passphrase as before;
  only the suspicious cases print a warning (with its reason code).

Wire format, one request per connection: ``!II`` (header length, payload length), a JSON
header, the payload bytes; the answer has the same shape. Operations: ``status``, ``open``,
``seal``, ``lock``.

This module is imported by every command that opens the wallet, ``list`` included, so the
client half imports nothing heavy; the agent's own half imports libsodium when it runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import select
import signal
import socket
import stat
import struct
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from civic.encoding import b64url_decode, b64url_encode, json_dumps, json_loads
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError

if TYPE_CHECKING:
    from wallet_cli.store import Envelope

PROTOCOL: Final = "civic-wallet-agent/1"
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 24
MAC_BYTES: Final = 16
MAX_HEADER: Final = 64 << 10
MAX_PAYLOAD: Final = (64 << 20) + 4096
"""A sealed store is at most 64 MiB (``store.MAX_SEALED_BYTES``)."""
MAX_LIFETIME: Final = 12 * 3600
DEFAULT_LIFETIME: Final = "15m"
SOCKET_PATH_MAX: Final = 107
"""``sun_path`` is 108 bytes on Linux, the terminating NUL included."""
_FRAME = struct.Struct("!II")
_PEERCRED = struct.Struct("3i")
_DURATION = re.compile(r"([0-9]{1,6})([smh]?)")


# --- where the socket is ------------------------------------------------------------------------


def _untrusted(detail: str) -> VerificationError:
    return VerificationError(ReasonCode.WALLET_AGENT_UNTRUSTED, detail)


def _is_private_dir(path: str) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077


def agent_directory(home: Path, env: Mapping[str, str]) -> Path:
    """``$XDG_RUNTIME_DIR/civic-wallet`` when the runtime directory is absolute, ours and
    private (as the XDG Base Directory spec promises); else ``<wallet>/agent``."""
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime) and _is_private_dir(runtime):
        return Path(runtime) / "civic-wallet"
    return Path(os.path.realpath(home)) / "agent"


def agent_socket_path(home: Path, env: Mapping[str, str]) -> Path:
    """One agent per wallet: the socket is named after the wallet directory's real path."""
    real = os.path.realpath(home)
    tag = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return agent_directory(home, env) / f"agent-{tag}.sock"


def check_private_directory(path: Path, *, create: bool) -> None:
    """The socket's directory must be a real directory (no symlink), ours, mode 0700."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise VerificationError(
            ReasonCode.WALLET_AGENT_UNAVAILABLE, "no agent directory (civic-wallet unlock)"
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise _untrusted(f"{path} is not a directory")
    if info.st_uid != os.geteuid():
        raise _untrusted(f"{path} belongs to another user")
    if info.st_mode & 0o077:
        raise _untrusted(f"{path} is open to other users (mode 0700 expected)")


# --- peer credentials ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """The process at the other end of a Unix socket, from the kernel (``SO_PEERCRED``)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:  # pragma: no cover - Linux only
        raise UsageError(ReasonCode.WALLET_AGENT_UNTRUSTED, "the agent needs SO_PEERCRED (Linux)")
    pid, uid, gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _PEERCRED.size))
    return PeerCredentials(pid, uid, gid)


def require_same_uid(peer: PeerCredentials, uid: int) -> None:
    """Refuse a peer that is not the same user (root is not exempt: the agent serves one uid)."""
    if peer.uid != uid:
        raise _untrusted("the other end of the agent socket is another user")


# --- framing ------------------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    while view:
        received = sock.recv_into(view)
        if received == 0:
            raise MalformedError(ReasonCode.MALFORMED_INPUT, "the agent connection closed early")
        view = view[received:]
    return bytes(buffer)


def send_message(sock: socket.socket, header: Mapping[str, Any], payload: bytes = b"") -> None:
    encoded = json_dumps(dict(header)).encode("utf-8")
    sock.sendall(_FRAME.pack(len(encoded), len(payload)) + encoded + payload)


def receive_message(sock: socket.socket) -> tuple[dict[str, Any], bytes]:
    header_size, payload_size = _FRAME.unpack(_recv_exact(sock, _FRAME.size))
    if header_size > MAX_HEADER or payload_size > MAX_PAYLOAD:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "agent message too large")
    header = json_loads(_recv_exact(sock, header_size))
    if not isinstance(header, dict):
        raise MalformedError(ReasonCode.MALFORMED_INPUT, "agent message is not an object")
    return header, _recv_exact(sock, payload_size) if payload_size else b""


# --- identity -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalletIdentity:
    """What an agent is for: the wallet directory's real path and the store's KDF header (the
    salt stays the same across writes, and changes only when the wallet is replaced)."""

    home: str
    salt: bytes
    opslimit: int
    memlimit: int

    def to_json(self) -> dict[str, Any]:
        return {
            "home": self.home,
            "salt": b64url_encode(self.salt),
            "opslimit": self.opslimit,
            "memlimit": self.memlimit,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> WalletIdentity:
        home, salt = value.get("home"), value.get("salt")
        opslimit, memlimit = value.get("opslimit"), value.get("memlimit")
        if (
            not isinstance(home, str)
            or not isinstance(salt, str)
            or type(opslimit) is not int
            or type(memlimit) is not int
        ):
            raise MalformedError(ReasonCode.MALFORMED_INPUT, "agent wallet identity malformed")
        return cls(home, b64url_decode(salt), opslimit, memlimit)

    @classmethod
    def of(cls, home: Path, envelope: Envelope) -> WalletIdentity:
        return cls(
            os.path.realpath(home),
            envelope.salt,
            envelope.limits.opslimit,
            envelope.limits.memlimit,
        )


def _reason(value: object) -> ReasonCode:
    """A reason code the agent sent; an unknown one reads as "unavailable"."""
    try:
        return ReasonCode(value) if isinstance(value, str) else ReasonCode.WALLET_AGENT_UNAVAILABLE
    except ValueError:
        return ReasonCode.WALLET_AGENT_UNAVAILABLE


# --- the client ---------------------------------------------------------------------------------


class AgentClient:
    """Asks the wallet's agent, if one runs; every method returns ``None`` (after a warning
    for the suspicious cases) when the caller should use the passphrase instead."""

    def __init__(
        self,
        home: Path,
        env: Mapping[str, str],
        *,
        warn: Callable[[str], None] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.home = home
        self.socket_path = agent_socket_path(home, env)
        self._warn = warn
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"AgentClient({str(self.socket_path)!r})"

    def _warning(self, error: CivicError) -> None:
        if self._warn is not None:
            self._warn(f"{error.reason.value}: {error.detail}; using the passphrase")

    def _connect(self, *, strict: bool) -> socket.socket | None:
        """A connection to a trustworthy agent, or ``None``; ``strict`` raises what would
        otherwise only be a warning (an untrusted directory or peer)."""
        path = str(self.socket_path)
        if len(path.encode()) > SOCKET_PATH_MAX or not os.path.exists(path):
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._timeout)
        try:
            check_private_directory(self.socket_path.parent, create=False)
            sock.connect(path)
            require_same_uid(peer_credentials(sock), os.geteuid())
        except VerificationError as error:
            sock.close()
            if strict:
                raise
            self._warning(error)
            return None
        except OSError:  # a stale socket (nobody listening), or the agent just stopped
            sock.close()
            return None
        return sock

    def request(
        self, header: Mapping[str, Any], payload: bytes = b"", *, strict: bool = False
    ) -> tuple[dict[str, Any], bytes] | None:
        """One exchange. ``None`` if no agent answered; an answer with ``ok: false`` raises
        the :class:`VerificationError` it names."""
        sock = self._connect(strict=strict)
        if sock is None:
            return None
        with sock:
            try:
                send_message(sock, header, payload)
                answer, data = receive_message(sock)
            except (OSError, CivicError):
                return None
        if answer.get("ok") is not True:
            code = _reason(answer.get("error"))
            detail = answer.get("detail")
            raise VerificationError(code, detail if isinstance(detail, str) else "")
        return answer, data

    def _guarded(
        self, header: Mapping[str, Any], payload: bytes = b""
    ) -> tuple[dict[str, Any], bytes] | None:
        try:
            return self.request(header, payload)
        except VerificationError as error:
            if error.reason is not ReasonCode.WALLET_AGENT_UNAVAILABLE:
                self._warning(error)
            return None

    def open(self, envelope: Envelope) -> bytes | None:
        """The store's plaintext, opened by the agent; ``None``: use the passphrase."""
        identity = WalletIdentity.of(self.home, envelope)
        answer = self._guarded({"op": "open", "wallet": identity.to_json()}, envelope.sealed)
        return None if answer is None else answer[1]

    def seal(self, plaintext: bytes, envelope: Envelope) -> bytes | None:
        """``nonce || ciphertext`` under the agent's key, for the wallet ``envelope`` came
        from; ``None``: use the passphrase."""
        identity = WalletIdentity.of(self.home, envelope)
        answer = self._guarded({"op": "seal", "wallet": identity.to_json()}, plaintext)
        if answer is None:
            return None
        sealed = answer[1]
        if len(sealed) != NONCE_BYTES + MAC_BYTES + len(plaintext):
            self._warning(_untrusted("the agent answered a malformed seal"))
            return None
        return sealed

    def status(self) -> dict[str, Any] | None:
        answer = self._guarded({"op": "status"})
        return None if answer is None else answer[0]

    def lock(self, *, wait: float = 5.0) -> dict[str, Any] | None:
        """Stop the agent (it wipes the key); the status it had, or ``None`` if none ran.
        Waits, bounded, until its socket is gone. An agent that cannot be trusted (or
        reached through a directory that cannot) is an error here, not a fallback: saying
        "locked" while a key may still be held would be false."""
        answer = self.request({"op": "lock"}, strict=True)
        if answer is None:
            return None
        deadline = time.monotonic() + wait
        while os.path.exists(self.socket_path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return answer[0]


# --- the agent ----------------------------------------------------------------------------------


def boot_clock() -> float:
    """Seconds on a clock that keeps counting while the machine sleeps (Linux
    ``CLOCK_BOOTTIME``), so ``--for 15m`` means fifteen minutes of the user's time."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(boottime) if boottime is not None else time.monotonic()


def parse_duration(text: str) -> int:
    """``90s``, ``15m``, ``2h`` or plain seconds, from one second to twelve hours."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "--for is a duration like 90s, 15m or 2h")
    seconds = int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if not 1 <= seconds <= MAX_LIFETIME:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "--for is between 1s and 12h")
    return seconds


class _Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class SecretKey:
    """32 bytes in memory libsodium allocated: locked against swapping when the system allows,
    zeroed by :meth:`wipe`, never copied into a Python ``bytes`` object."""

    def __init__(self) -> None:
        from nacl._sodium import ffi, lib  # noqa: PLC0415

        self._ffi, self._lib = ffi, lib
        self._buffer = ffi.new("unsigned char[]", KEY_BYTES)
        self.locked_in_memory = lib.sodium_mlock(self._buffer, KEY_BYTES) == 0
        self.wiped = False

    def __repr__(self) -> str:
        return "SecretKey(...)"

    @classmethod
    def read_from(cls, stream: _Readable) -> SecretKey:
        key = cls()
        view = memoryview(key._ffi.buffer(key._buffer))
        while view:
            count = stream.readinto(view)
            if not count:
                key.wipe()
                raise MalformedError(ReasonCode.MALFORMED_INPUT, "the key was cut short")
            view = view[count:]
        return key

    @classmethod
    def from_bytes(cls, raw: bytes) -> SecretKey:
        if len(raw) != KEY_BYTES:
            raise UsageError(ReasonCode.MALFORMED_INPUT, "a wallet key is 32 bytes")
        import io  # noqa: PLC0415

        return cls.read_from(io.BytesIO(raw))

    def seal(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        out = self._ffi.new("unsigned char[]", MAC_BYTES + len(plaintext))
        if self._lib.crypto_secretbox_easy(out, plaintext, len(plaintext), nonce, self._buffer):
            raise VerificationError(ReasonCode.WALLET_AGENT_UNAVAILABLE, "sealing failed")
        return nonce + bytes(self._ffi.buffer(out))

    def open(self, sealed: bytes) -> bytes | None:
        if len(sealed) < NONCE_BYTES + MAC_BYTES:
            return None
        nonce, box = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        out = self._ffi.new("unsigned char[]", max(1, len(box) - MAC_BYTES))
        if self._lib.crypto_secretbox_open_easy(out, box, len(box), nonce, self._buffer):
            return None
        return bytes(self._ffi.buffer(out, len(box) - MAC_BYTES))

    def wipe(self) -> None:
        if not self.wiped:
            self._lib.sodium_memzero(self._buffer, KEY_BYTES)
            if self.locked_in_memory:
                self._lib.sodium_munlock(self._buffer, KEY_BYTES)
            self.wiped = True


def _store_header(path: Path) -> WalletIdentity | None:
    """The identity the store at ``path`` has now; ``None`` if it is missing or unreadable."""
    from wallet_cli.store import UnsafeFastKdfForTests, parse_envelope  # noqa: PLC0415

    try:
        envelope = parse_envelope(
            path.read_bytes(), kind="store", what="wallet store", floor=UnsafeFastKdfForTests.limits
        )
    except (OSError, CivicError):
        return None
    return WalletIdentity.of(path.parent, envelope)


class Agent:
    """The serving loop, one connection at a time. ``clock`` and ``poll`` are injectable: a
    test runs an agent in a thread with a clock it moves by hand."""

    def __init__(
        self,
        listener: socket.socket,
        socket_path: Path,
        identity: WalletIdentity,
        key: SecretKey,
        *,
        lifetime: float,
        clock: Callable[[], float] = boot_clock,
        poll: float = 1.0,
        uid: int | None = None,
        connection_timeout: float = 5.0,
    ) -> None:
        from wallet_cli.store import STORE_FILE  # noqa: PLC0415

        self._listener = listener
        self.socket_path = socket_path
        self.identity = identity
        self._key = key
        self._clock = clock
        self.deadline = clock() + lifetime
        self._poll = poll
        self._uid = os.geteuid() if uid is None else uid
        self._connection_timeout = connection_timeout
        self._store = Path(identity.home) / STORE_FILE
        self._store_seen: tuple[int, int, int, int] | None = None
        info = os.lstat(socket_path)
        self._socket_seen = (info.st_dev, info.st_ino)
        self.stopped: str | None = None

    # -- when to stop ----------------------------------------------------------------------------

    def _wallet_is_ours(self) -> bool:
        try:
            info = os.stat(self._store)
        except OSError:
            return False
        seen = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        if seen != self._store_seen:
            if _store_header(self._store) != self.identity:
                return False
            self._store_seen = seen
        return True

    def _socket_is_ours(self) -> bool:
        try:
            info = os.lstat(self.socket_path)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self._socket_seen

    def check(self) -> str | None:
        """Why the agent must stop now, if it must (and it then stops)."""
        if self.stopped is None:
            if self._clock() >= self.deadline:
                self.stopped = "expired"
            elif not self._socket_is_ours():
                self.stopped = "socket removed"
            elif not self._wallet_is_ours():
                self.stopped = "wallet replaced"
        return self.stopped

    # -- serving ---------------------------------------------------------------------------------

    def serve_forever(self) -> str:
        """Serve until a reason to stop; then wipe the key and remove the socket."""
        try:
            while self.check() is None:
                ready, _, _ = select.select([self._listener], [], [], self._poll)
                if ready:
                    self.serve_one()
        finally:
            self.close()
        return self.stopped or "stopped"

    def serve_one(self) -> None:
        try:
            connection, _ = self._listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(self._connection_timeout)
            try:
                require_same_uid(peer_credentials(connection), self._uid)
            except CivicError:
                return  # not a word to another user
            try:
                header, payload = receive_message(connection)
            except (OSError, CivicError):
                return
            answer, data = self.answer(header, payload)
            with contextlib.suppress(OSError):
                send_message(connection, answer, data)

    def _refusal(self, reason: ReasonCode, detail: str) -> tuple[dict[str, Any], bytes]:
        return {"ok": False, "error": reason.value, "detail": detail}, b""

    def answer(self, header: Mapping[str, Any], payload: bytes) -> tuple[dict[str, Any], bytes]:
        """One request, after checking the agent should still be serving."""
        if self.check() is not None:
            return self._refusal(
                ReasonCode.WALLET_AGENT_UNAVAILABLE, f"the agent has stopped ({self.stopped})"
            )
        op = header.get("op")
        if op in {"status", "lock"}:
            status = {
                "ok": True,
                "protocol": PROTOCOL,
                "pid": os.getpid(),
                "home": self.identity.home,
                "expires_in": max(0, round(self.deadline - self._clock())),
            }
            if op == "lock":
                self.stopped = "locked"
            return status, b""
        if op not in ("open", "seal"):
            return self._refusal(ReasonCode.MALFORMED_INPUT, "unknown agent operation")
        wallet = header.get("wallet")
        try:
            identity = WalletIdentity.from_json(wallet if isinstance(wallet, dict) else {})
        except MalformedError as error:
            return self._refusal(error.reason, error.detail)
        if identity != self.identity:
            return self._refusal(
                ReasonCode.WALLET_AGENT_MISMATCH, "the agent holds the key of another wallet"
            )
        if op == "seal":
            return {"ok": True}, self._key.seal(payload)
        plaintext = self._key.open(payload)
        if plaintext is None:
            return self._refusal(
                ReasonCode.WALLET_AGENT_MISMATCH, "the store does not open with the agent's key"
            )
        return {"ok": True}, plaintext

    def close(self) -> None:
        self._key.wipe()
        if self._socket_is_ours():
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
        self._listener.close()


def bind_socket(path: Path) -> socket.socket:
    """Listen on ``path`` (0600) in its private directory, replacing a stale socket; refuse if
    a live agent answers there."""
    if len(str(path).encode()) > SOCKET_PATH_MAX:
        raise UsageError(
            ReasonCode.MALFORMED_INPUT,
            "the agent socket path is too long for a Unix socket; set XDG_RUNTIME_DIR",
        )
    check_private_directory(path.parent, create=True)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(info.st_mode):
            raise _untrusted(f"{path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                os.unlink(path)  # stale: its agent is gone
            else:
                raise VerificationError(
                    ReasonCode.WALLET_AGENT_UNAVAILABLE, "another agent is listening there"
                )
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener


# --- starting one -------------------------------------------------------------------------------

_SECRET_VARIABLES: Final = ("CIVIC_WALLET_PASSPHRASE", "CIVIC_WALLET_BACKUP_PASSPHRASE")


def start_agent(
    socket_path: Path, identity: WalletIdentity, key: bytes, lifetime: int, timeout: float = 30.0
) -> int:
    """Start ``python -m wallet_cli.agent`` in its own session, hand it the key over a pipe
    (never argv, environment or disk), wait until it listens; its pid."""
    import subprocess  # noqa: PLC0415

    if len(key) != KEY_BYTES:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "a wallet key is 32 bytes")
    env = {k: v for k, v in os.environ.items() if k not in _SECRET_VARIABLES}
    header = {"socket": str(socket_path), "wallet": identity.to_json(), "lifetime": lifetime}
    process = subprocess.Popen(
        [sys.executable, "-m", "wallet_cli.agent"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(json_dumps(header).encode("utf-8") + b"\n" + key)
        process.stdin.close()
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline(4096).decode("utf-8", "replace").strip() if ready else ""
        process.wait(timeout)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait()
        line = ""
    finally:
        process.stdout.close()
    words = line.split(" ", 2)
    if words[0] == "ready" and len(words) == 2 and words[1].isdigit():
        return int(words[1])
    if words[0] == "error" and len(words) == 3:
        raise VerificationError(_reason(words[1]), words[2])
    raise VerificationError(ReasonCode.WALLET_AGENT_UNAVAILABLE, "the agent did not start")


def _harden() -> None:
    """No core dumps, and not dumpable: same-user debuggers cannot attach (Linux)."""
    import resource  # noqa: PLC0415

    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        import ctypes  # noqa: PLC0415

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0


def _stop_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> int:
    """``python -m wallet_cli.agent``: a JSON line and 32 key bytes on stdin; prints
    ``ready <pid>`` (or ``error <reason> <detail>``), then serves in the background."""
    _harden()
    stdin: Any = sys.stdin.buffer
    stdout = sys.stdout.buffer
    try:
        header = json_loads(stdin.readline(MAX_HEADER))
        if not isinstance(header, dict):
            raise MalformedError(ReasonCode.MALFORMED_INPUT, "agent start-up header")
        identity = WalletIdentity.from_json(header.get("wallet") or {})
        path, lifetime = header.get("socket"), header.get("lifetime")
        if not isinstance(path, str) or type(lifetime) is not int:
            raise MalformedError(ReasonCode.MALFORMED_INPUT, "agent start-up header")
        key = SecretKey.read_from(stdin)
        if _store_header(Path(identity.home) / "wallet.sealed") != identity:
            key.wipe()
            raise VerificationError(
                ReasonCode.WALLET_AGENT_MISMATCH, "the wallet changed while unlocking"
            )
        listener = bind_socket(Path(path))
    except CivicError as error:
        stdout.write(f"error {error.reason.value} {error.detail}\n".encode())
        stdout.flush()
        return 1
    child = os.fork()
    if child:
        stdout.write(f"ready {child}\n".encode())
        stdout.flush()
        os._exit(0)
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _stop_on_signal)
    agent = Agent(listener, Path(path), identity, key, lifetime=lifetime)
    agent.serve_forever()
    return 0


if __name__ == "__main__":  # pragma: no cover - runs in the agent process
    raise SystemExit(main())
