"""The wallet's encrypted store: one sealed file, written atomically, under a file lock.

Sealing (issue 6, "init"): a 256-bit key is derived from the passphrase with Argon2id
(RFC 9106; libsodium ``crypto_pwhash``, version 1.3) at libsodium's *moderate* limits, and the
store's JSON is sealed with XSalsa20-Poly1305 (libsodium ``crypto_secretbox``, through
``nacl.secret.SecretBox``) under a fresh random nonce at every write. The envelope is JSON:

    {"format": "civic-wallet-sealed/1", "kind": "store" | "backup",
     "kdf": {"alg": "argon2id13", "opslimit": n, "memlimit": n, "salt": b64url(16 bytes)},
     "sealed": b64url(nonce || ciphertext), "sha256": b64url(SHA-256(nonce || ciphertext))}

The unkeyed SHA-256 tells a damaged file (``wallet_corrupted``) from a wrong passphrase
(``wallet_passphrase_wrong``: the digest matches but the Poly1305 tag does not). Limits below
*moderate* are refused when opening, so a doctored header cannot weaken the key derivation;
only code can pass :class:`UnsafeFastKdfForTests` (no option, variable or file reaches it).

Unlocked (``civic-wallet unlock``): a :class:`KeyAgent` holding the key opens and seals in its
stead (the same envelope, the same salt), so a command derives nothing and asks for nothing.

Safety (issue 6, item 7):

- every write goes to a temporary file in the same directory, is fsynced, and is renamed over
  the store (POSIX ``rename`` is atomic), then the directory is fsynced;
- before that rename the current store is hard-linked to ``wallet.sealed.prev``: the previous
  copy is always kept, and the store path never disappears;
- a store is only ever written inside a transaction that opened it successfully, so a
  corrupted store (or one opened with a wrong passphrase) is never overwritten;
- an ``fcntl.flock`` on ``wallet.lock`` serialises invocations: shared for reading, exclusive
  for a read-modify-write transaction, with a bounded wait (``wallet_busy``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from civic.clock import RandomBytes, system_random
from civic.encoding import b64url_decode, b64url_encode, json_dumps, json_loads
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from wallet_cli.model import WalletData

SEALED_FORMAT: Final = "civic-wallet-sealed/1"
KDF_NAME: Final = "argon2id13"
SALT_BYTES: Final = 16
"""``crypto_pwhash_argon2id_SALTBYTES``. libsodium's constants are written out here (a test
checks them against PyNaCl) so that opening the store through the agent imports no libsodium."""
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 24
STORE_FILE: Final = "wallet.sealed"
PREVIOUS_FILE: Final = "wallet.sealed.prev"
LOCK_FILE: Final = "wallet.lock"
MIN_PASSPHRASE_LENGTH: Final = 10
MAX_SEALED_BYTES: Final = 64 << 20
"""A wallet of a few hundred credentials is well under a megabyte; more is not a store."""

_WELL_KNOWN = frozenset(
    {"password", "passphrase", "changeme", "change-me", "0123456789", "1234567890", "qwertyuiop"}
)


@dataclass(frozen=True)
class KdfLimits:
    """Argon2id cost: passes over memory and bytes of memory."""

    opslimit: int
    memlimit: int


MODERATE: Final = KdfLimits(3, 256 << 20)
"""What every store and backup is sealed with (about a second, 256 MiB)."""
_CEILING: Final = KdfLimits(4, 1 << 30)
"""Above this a header is not ours: refuse rather than allocate what it asks."""


class UnsafeFastKdfForTests:
    """Argon2id at libsodium's minimum limits: milliseconds, and no protection worth the name.

    Tests pass an instance to :class:`WalletStore` (or to the CLI's runtime object) so that a
    test suite does not spend a second per command. Nothing a user can configure selects it.
    """

    limits: Final = KdfLimits(1, 8192)


def wallet_home(env: Mapping[str, str]) -> Path:
    """``CIVIC_WALLET_HOME``, else ``$XDG_DATA_HOME/civic-wallet`` (XDG Base Directory spec;
    ``~/.local/share`` when unset or not absolute)."""
    configured = env.get("CIVIC_WALLET_HOME")
    if configured:
        return Path(configured)
    xdg = env.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "civic-wallet"


def check_new_passphrase(passphrase: str) -> None:
    """Refuse passphrases that an offline guesser would find first."""
    text = normalize_passphrase(passphrase)
    if len(text) < MIN_PASSPHRASE_LENGTH or text.lower() in _WELL_KNOWN or len(set(text)) < 4:
        raise UsageError(
            ReasonCode.MALFORMED_INPUT,
            f"the passphrase needs at least {MIN_PASSPHRASE_LENGTH} characters and must not be"
            " a well-known one",
        )


def normalize_passphrase(passphrase: str) -> str:
    """NFC, so that the same Korean passphrase typed on two keyboards derives the same key."""
    return unicodedata.normalize("NFC", passphrase)


# --- sealing (pure) -------------------------------------------------------------------------


@dataclass(frozen=True)
class SealingKey:
    """A derived key with the salt and limits it came from. ``repr`` shows no key bytes."""

    key: bytes
    salt: bytes
    limits: KdfLimits

    def __repr__(self) -> str:
        return f"SealingKey(limits={self.limits!r})"


def derive_key(passphrase: str, salt: bytes, limits: KdfLimits) -> SealingKey:
    import nacl.pwhash  # noqa: PLC0415

    raw = nacl.pwhash.argon2id.kdf(
        KEY_BYTES,
        normalize_passphrase(passphrase).encode("utf-8"),
        salt,
        opslimit=limits.opslimit,
        memlimit=limits.memlimit,
    )
    return SealingKey(bytes(raw), salt, limits)


def new_key(
    passphrase: str,
    limits: KdfLimits = MODERATE,
    random: RandomBytes = system_random,
) -> SealingKey:
    return derive_key(passphrase, random(SALT_BYTES), limits)


def seal(
    plaintext: bytes, key: SealingKey, *, kind: str, random: RandomBytes = system_random
) -> bytes:
    import nacl.secret  # noqa: PLC0415

    box = nacl.secret.SecretBox(key.key)
    sealed = bytes(box.encrypt(plaintext, random(NONCE_BYTES)))
    return wrap_sealed(sealed, key.salt, key.limits, kind=kind)


def wrap_sealed(sealed: bytes, salt: bytes, limits: KdfLimits, *, kind: str) -> bytes:
    """The envelope around ``nonce || ciphertext`` (sealed here, or by the agent)."""
    envelope = {
        "format": SEALED_FORMAT,
        "kind": kind,
        "kdf": {
            "alg": KDF_NAME,
            "opslimit": limits.opslimit,
            "memlimit": limits.memlimit,
            "salt": b64url_encode(salt),
        },
        "sealed": b64url_encode(sealed),
        "sha256": b64url_encode(hashlib.sha256(sealed).digest()),
    }
    return (json_dumps(envelope) + "\n").encode("ascii")


@dataclass(frozen=True)
class Envelope:
    kind: str
    salt: bytes
    limits: KdfLimits
    sealed: bytes


def _corrupted(what: str, detail: str) -> MalformedError:
    return MalformedError(ReasonCode.WALLET_CORRUPTED, f"{what}: {detail}")


def parse_envelope(data: bytes, *, kind: str, what: str, floor: KdfLimits = MODERATE) -> Envelope:
    """Read an envelope; anything unexpected is ``wallet_corrupted`` naming ``what``."""
    if len(data) > MAX_SEALED_BYTES:
        raise _corrupted(what, "larger than any wallet")
    try:
        document = json_loads(data)
    except MalformedError:
        raise _corrupted(what, "not a sealed wallet file (unreadable JSON)") from None
    if not isinstance(document, dict) or document.get("format") != SEALED_FORMAT:
        raise _corrupted(what, f"not a {SEALED_FORMAT} file")
    if document.get("kind") != kind:
        raise _corrupted(what, f"this file is not a wallet {kind}")
    kdf = document.get("kdf")
    sealed_b64, digest_b64 = document.get("sealed"), document.get("sha256")
    if (
        not isinstance(kdf, dict)
        or kdf.get("alg") != KDF_NAME
        or not isinstance(sealed_b64, str)
        or not isinstance(digest_b64, str)
    ):
        raise _corrupted(what, "envelope members missing")
    opslimit, memlimit, salt_b64 = kdf.get("opslimit"), kdf.get("memlimit"), kdf.get("salt")
    if type(opslimit) is not int or type(memlimit) is not int or not isinstance(salt_b64, str):
        raise _corrupted(what, "key derivation parameters missing")
    if not (floor.opslimit <= opslimit <= _CEILING.opslimit) or not (
        floor.memlimit <= memlimit <= _CEILING.memlimit
    ):
        raise _corrupted(what, "key derivation limits outside what this wallet uses")
    try:
        salt, sealed, digest = (
            b64url_decode(salt_b64),
            b64url_decode(sealed_b64),
            b64url_decode(digest_b64),
        )
    except MalformedError:
        raise _corrupted(what, "bad base64url in the envelope") from None
    if len(salt) != SALT_BYTES:
        raise _corrupted(what, "salt of the wrong length")
    if not hmac.compare_digest(hashlib.sha256(sealed).digest(), digest):
        raise _corrupted(what, "the sealed data is damaged (checksum mismatch)")
    return Envelope(kind, salt, KdfLimits(opslimit, memlimit), sealed)


def open_sealed(envelope: Envelope, key: SealingKey, *, what: str) -> bytes:
    import nacl.exceptions  # noqa: PLC0415
    import nacl.secret  # noqa: PLC0415

    try:
        return bytes(nacl.secret.SecretBox(key.key).decrypt(envelope.sealed))
    except nacl.exceptions.CryptoError:
        raise VerificationError(
            ReasonCode.WALLET_PASSPHRASE_WRONG, f"wrong passphrase for the {what}"
        ) from None


def decode_wallet(plaintext: bytes, *, what: str) -> WalletData:
    try:
        return WalletData.from_json(json_loads(plaintext))
    except CivicError as error:
        raise _corrupted(what, error.detail) from None


# --- files ----------------------------------------------------------------------------------


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, keep_previous: Path | None = None) -> None:
    """Write ``data`` to ``path`` atomically (mode 0600): temporary file, fsync, rename.

    With ``keep_previous``, the file being replaced is first hard-linked there (itself
    atomically), so a copy of the last good version always exists next to the new one.
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if keep_previous is not None and path.exists():
            link = directory / f".{keep_previous.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
            os.link(path, link)
            os.replace(link, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_directory(directory)


@contextlib.contextmanager
def file_lock(path: Path, *, exclusive: bool, timeout: float) -> Iterator[None]:
    """``flock`` on ``path`` (created if missing), waiting at most ``timeout`` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        operation = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, operation)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise VerificationError(
                        ReasonCode.WALLET_BUSY, "another civic-wallet command is using the wallet"
                    ) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --- the store ------------------------------------------------------------------------------


class KeyAgent(Protocol):
    """Opens and seals the store with a key held elsewhere (:mod:`wallet_cli.agent`); ``None``
    means "not now", and the store falls back to the passphrase."""

    def open(self, envelope: Envelope) -> bytes | None: ...

    def seal(self, plaintext: bytes, envelope: Envelope) -> bytes | None: ...


class WalletStore:
    """The sealed wallet in ``home``.

    ``passphrase`` is called at most once, when a key must first be derived (so a prompt only
    appears when needed); the derived key is kept for the life of the object, which lets a
    command read, then update, with one Argon2id run. With an ``agent`` (an unlocked wallet),
    the agent opens and seals instead and the passphrase is not asked for at all; if the agent
    goes away in the middle of a command (its time is up), the passphrase is asked for then,
    and checked against the store that was opened before anything is written.
    """

    def __init__(
        self,
        home: Path,
        passphrase: Callable[[], str],
        *,
        unsafe_kdf: UnsafeFastKdfForTests | None = None,
        lock_timeout: float = 30.0,
        random: RandomBytes = system_random,
        agent: KeyAgent | None = None,
    ) -> None:
        self.home = home
        self._passphrase = passphrase
        self._agent = agent
        self._opened: Envelope | None = None
        self._limits = unsafe_kdf.limits if unsafe_kdf is not None else MODERATE
        self._floor = self._limits
        self._lock_timeout = lock_timeout
        self._random = random
        self._key: SealingKey | None = None

    def __repr__(self) -> str:
        return f"WalletStore({str(self.home)!r})"

    @property
    def path(self) -> Path:
        return self.home / STORE_FILE

    @property
    def previous_path(self) -> Path:
        return self.home / PREVIOUS_FILE

    @property
    def kdf_limits(self) -> KdfLimits:
        return self._limits

    def exists(self) -> bool:
        return self.path.exists()

    def _lock(self, *, exclusive: bool) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.home / LOCK_FILE, exclusive=exclusive, timeout=self._lock_timeout)

    def _ensure_home(self) -> None:
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)

    # -- opening and saving -------------------------------------------------------------------

    def _not_found(self) -> CivicError:
        return VerificationError(
            ReasonCode.WALLET_NOT_FOUND, f"no wallet in {self.home} (run `civic-wallet init`)"
        )

    def _load(self) -> WalletData:
        """Open the store; the caller holds the lock."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise self._not_found() from None
        except OSError as error:
            raise _corrupted("wallet store", f"unreadable ({error.strerror})") from None
        try:
            envelope = parse_envelope(data, kind="store", what="wallet store", floor=self._floor)
        except CivicError as error:
            hint = (
                f"; the previous copy is kept in {self.previous_path}"
                if self.previous_path.exists()
                else ""
            )
            raise _corrupted("wallet store", error.detail.split(": ", 1)[-1] + hint) from None
        key = self._key
        plaintext = None
        if key is None or key.salt != envelope.salt or key.limits != envelope.limits:
            if self._agent is not None and key is None:
                plaintext = self._agent.open(envelope)
            if plaintext is None:
                key = derive_key(self._passphrase(), envelope.salt, envelope.limits)
        if plaintext is None:
            assert key is not None
            plaintext = open_sealed(envelope, key, what="wallet store")
            self._key = key
        self._opened = envelope
        return decode_wallet(plaintext, what="wallet store")

    def _save(self, wallet: WalletData) -> None:
        plaintext = json_dumps(wallet.to_json()).encode("utf-8")
        opened = self._opened
        if self._key is None and self._agent is not None and opened is not None:
            sealed = self._agent.seal(plaintext, opened)
            if sealed is not None:
                data = wrap_sealed(sealed, opened.salt, opened.limits, kind="store")
                atomic_write(self.path, data, keep_previous=self.previous_path)
                return
            key = derive_key(self._passphrase(), opened.salt, opened.limits)
            open_sealed(opened, key, what="wallet store")  # a wrong passphrase writes nothing
            self._key = key
        assert self._key is not None
        sealed_store = seal(plaintext, self._key, kind="store", random=self._random)
        atomic_write(self.path, sealed_store, keep_previous=self.previous_path)

    # -- public operations --------------------------------------------------------------------

    def create(self, wallet: WalletData) -> None:
        """Seal a new wallet; refuses if any store (even an unreadable one) is there."""
        if self.exists():
            raise VerificationError(
                ReasonCode.WALLET_EXISTS, f"a wallet already exists in {self.home}"
            )
        passphrase = self._passphrase()
        check_new_passphrase(passphrase)
        self._ensure_home()
        with self._lock(exclusive=True):
            if self.exists():
                raise VerificationError(
                    ReasonCode.WALLET_EXISTS, f"a wallet already exists in {self.home}"
                )
            self._key = new_key(passphrase, self._limits, self._random)
            self._save(wallet)

    def read(self) -> WalletData:
        if not self.exists():
            raise self._not_found()
        with self._lock(exclusive=False):
            return self._load()

    def unlock(self) -> tuple[SealingKey, Envelope]:
        """Derive the store's key from the passphrase (never through an agent) and prove it by
        opening the store: for ``civic-wallet unlock``."""
        if not self.exists():
            raise self._not_found()
        agent, self._agent, self._key = self._agent, None, None
        try:
            with self._lock(exclusive=False):
                self._load()
        finally:
            self._agent = agent
        assert self._key is not None and self._opened is not None
        return self._key, self._opened

    @contextlib.contextmanager
    def transaction(self) -> Iterator[WalletData]:
        """Read, let the caller change, write back: all under the exclusive lock. An exception
        inside the block writes nothing."""
        if not self.exists():
            raise self._not_found()
        with self._lock(exclusive=True):
            wallet = self._load()
            yield wallet
            self._save(wallet)

    # -- backups ------------------------------------------------------------------------------

    def export_backup(self, destination: Path, backup_passphrase: str) -> WalletData:
        """Seal the whole wallet under ``backup_passphrase`` (a fresh salt) into
        ``destination``; refuses to overwrite an existing file."""
        check_new_passphrase(backup_passphrase)
        wallet = self.read()
        key = new_key(backup_passphrase, self._limits, self._random)
        sealed = seal(
            json_dumps(wallet.to_json()).encode("utf-8"), key, kind="backup", random=self._random
        )
        if destination.exists():
            raise VerificationError(
                ReasonCode.MALFORMED_INPUT, f"{destination} exists; not overwritten"
            )
        atomic_write(destination, sealed)
        return wallet

    def read_backup(self, source: Path, backup_passphrase: str) -> WalletData:
        try:
            data = source.read_bytes()
        except OSError as error:
            raise UsageError(
                ReasonCode.NOT_FOUND, f"cannot read the backup ({error.strerror})"
            ) from None
        envelope = parse_envelope(data, kind="backup", what="backup", floor=self._floor)
        key = derive_key(backup_passphrase, envelope.salt, envelope.limits)
        return decode_wallet(open_sealed(envelope, key, what="backup"), what="backup")


def describe_store(store: WalletStore) -> dict[str, Any]:
    """Where things are, for ``init`` and error messages."""
    return {
        "home": str(store.home),
        "store": str(store.path),
        "previous": str(store.previous_path),
        "kdf": {"alg": KDF_NAME, **store.kdf_limits.__dict__},
    }
