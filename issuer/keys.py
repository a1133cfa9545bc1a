"""Issuer signing keys behind :class:`civic.jose.Signer` (issue 4, "Keys").

The service signs only through the ``Signer`` protocol (``alg``, ``public_key``, ``sign``), so
an HSM or a KMS can replace :class:`FileKeySigner` without touching the protocol code. The file
signer never hands out its private key: there is no export method and ``repr`` shows only the
kid.

A key file holds one private JWK (RFC 7517; OKP Ed25519 per RFC 8037, or EC P-256), either

- as plain JSON in a file of mode 0600, or
- sealed with a passphrase: ``{"format": "civic-sealed-key/1", "kdf": "argon2id", "opslimit",
  "memlimit", "salt", "nonce", "ciphertext"}``, the key derived with Argon2id (RFC 9106) and
  the JWK encrypted with XSalsa20-Poly1305 (libsodium ``crypto_secretbox``), also mode 0600.

Files readable by group or others are refused either way. A key's ``kid`` is its RFC 7638
thumbprint, which is also how the registry names it (docs/registry.md, ``issuer.key.add``).
"""

from __future__ import annotations

import re
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import nacl.exceptions
import nacl.pwhash
import nacl.secret
from sqlalchemy import Engine, func, select, update

from civic.clock import RandomBytes, system_random
from civic.encoding import (
    b64url_decode,
    b64url_encode,
    json_dumps,
    json_loads_object,
    utf8_decode,
)
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.jose import Alg, PrivateKey, PublicKey, public_key_from_jwk
from civic_service.config import write_private_file
from issuer import db

SEALED_FORMAT: Final = "civic-sealed-key/1"
MIN_PASSPHRASE_LENGTH: Final = 12
# Passphrases that ship in examples; a key sealed or opened with one of them is refused.
WEAK_PASSPHRASES: Final = frozenset(
    {"changeme", "change-me", "password", "passphrase", "secret", "civic", "issuer", "test"}
)
_ARGON2 = nacl.pwhash.argon2id
_MAX_KEY_FILE_BYTES = 16 * 1024
_SELECT_ACTIVE_KEYS = (
    "SELECT kid, key_file FROM {issuer_signing_keys} WHERE retired_at IS NULL"
    " ORDER BY created_at DESC, kid"
)


def kid_for(public_key: PublicKey) -> str:
    """The key id used in JWS headers and the registry: the RFC 7638 thumbprint."""
    return public_key.thumbprint()


def _is_well_known(passphrase: str) -> bool:
    """A default word, maybe repeated or padded with digits and punctuation."""
    letters = re.sub(r"[^a-z]", "", passphrase.casefold())
    return not letters or any(
        letters == weak * repeat for weak in WEAK_PASSPHRASES for repeat in range(1, 5)
    )


def check_passphrase(passphrase: str) -> None:
    """Refuse an empty, short or well-known passphrase."""
    if len(passphrase) < MIN_PASSPHRASE_LENGTH or _is_well_known(passphrase):
        raise UsageError(
            ReasonCode.MALFORMED_INPUT,
            f"key passphrase must have at least {MIN_PASSPHRASE_LENGTH} characters"
            " and not be a well-known default",
        )


# --- sealing (pure) ------------------------------------------------------------------------


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return bytes(
        _ARGON2.kdf(
            nacl.secret.SecretBox.KEY_SIZE,
            passphrase.encode("utf-8"),
            salt,
            opslimit=opslimit,
            memlimit=memlimit,
        )
    )


def seal_private_jwk(
    jwk: Mapping[str, Any],
    passphrase: str,
    *,
    opslimit: int = _ARGON2.OPSLIMIT_MODERATE,
    memlimit: int = _ARGON2.MEMLIMIT_MODERATE,
    random: RandomBytes = system_random,
) -> dict[str, Any]:
    """Encrypt a private JWK under a passphrase (Argon2id + XSalsa20-Poly1305)."""
    check_passphrase(passphrase)
    if not _ARGON2.OPSLIMIT_MIN <= opslimit <= _ARGON2.OPSLIMIT_MAX:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "Argon2id opslimit out of range")
    if not _ARGON2.MEMLIMIT_MIN <= memlimit <= _ARGON2.MEMLIMIT_MAX:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "Argon2id memlimit out of range")
    salt = random(_ARGON2.SALTBYTES)
    nonce = random(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit))
    ciphertext = box.encrypt(json_dumps(dict(jwk)).encode("utf-8"), nonce).ciphertext
    return {
        "format": SEALED_FORMAT,
        "kdf": "argon2id",
        "opslimit": opslimit,
        "memlimit": memlimit,
        "salt": b64url_encode(salt),
        "nonce": b64url_encode(nonce),
        "ciphertext": b64url_encode(ciphertext),
    }


def _int_member(sealed: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = sealed.get(name)
    if type(value) is not int or not low <= value <= high:
        raise MalformedError(ReasonCode.MALFORMED_INPUT, f"sealed key: {name} out of range")
    return value


def open_sealed_jwk(sealed: Mapping[str, Any], passphrase: str) -> dict[str, Any]:
    """Decrypt a sealed private JWK; a wrong passphrase or a changed file fails the same way."""
    if sealed.get("format") != SEALED_FORMAT or sealed.get("kdf") != "argon2id":
        raise MalformedError(ReasonCode.MALFORMED_INPUT, "not a civic-sealed-key/1 file")
    opslimit = _int_member(sealed, "opslimit", _ARGON2.OPSLIMIT_MIN, _ARGON2.OPSLIMIT_MAX)
    memlimit = _int_member(sealed, "memlimit", _ARGON2.MEMLIMIT_MIN, _ARGON2.MEMLIMIT_MAX)
    parts = {}
    for name in ("salt", "nonce", "ciphertext"):
        value = sealed.get(name)
        if not isinstance(value, str):
            raise MalformedError(ReasonCode.MALFORMED_INPUT, f"sealed key: {name} missing")
        parts[name] = b64url_decode(value)
    if len(parts["salt"]) != _ARGON2.SALTBYTES or len(parts["nonce"]) != 24:
        raise MalformedError(ReasonCode.MALFORMED_INPUT, "sealed key: salt or nonce length")
    box = nacl.secret.SecretBox(_derive(passphrase, parts["salt"], opslimit, memlimit))
    try:
        plaintext = box.decrypt(parts["ciphertext"], parts["nonce"])
    except nacl.exceptions.CryptoError:
        raise VerificationError(
            ReasonCode.UNAUTHORIZED, "wrong key passphrase or damaged key file"
        ) from None
    return json_loads_object(plaintext, what="sealed private JWK")


# --- the signer ----------------------------------------------------------------------------


class FileKeySigner:
    """A :class:`civic.jose.Signer` over a private key loaded from a key file.

    Deliberately narrow: ``alg``, ``public_key``, ``kid``, ``sign``. Nothing returns the
    private key, so code holding a signer cannot leak it into a log or a response.
    """

    __slots__ = ("_key", "kid")

    def __init__(self, key: PrivateKey) -> None:
        self._key = key
        self.kid = kid_for(key.public_key)

    @property
    def alg(self) -> Alg:
        return self._key.alg

    @property
    def public_key(self) -> PublicKey:
        return self._key.public_key

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def __repr__(self) -> str:
        return f"FileKeySigner(alg={self.alg!r}, kid={self.kid!r})"


def _read_private(path: Path) -> bytes:
    try:
        info = path.stat()
    except OSError:
        raise UsageError(ReasonCode.MALFORMED_INPUT, f"key file {path.name} is missing") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(
            ReasonCode.MALFORMED_INPUT,
            f"key file {path.name} must not be accessible by group or others (chmod 600)",
        )
    if info.st_size > _MAX_KEY_FILE_BYTES:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, f"key file {path.name} too large")
    return path.read_bytes()


def write_key_file(
    path: Path,
    key: PrivateKey,
    *,
    passphrase: str | None,
    opslimit: int = _ARGON2.OPSLIMIT_MODERATE,
    memlimit: int = _ARGON2.MEMLIMIT_MODERATE,
) -> None:
    jwk = key.export_private_jwk()
    document: Mapping[str, Any] = (
        jwk
        if passphrase is None
        else seal_private_jwk(jwk, passphrase, opslimit=opslimit, memlimit=memlimit)
    )
    write_private_file(path, json_dumps(dict(document)).encode("utf-8"))


def load_key_file(path: Path, *, passphrase: str | None) -> FileKeySigner:
    """Load a key file (plain 0600 JWK or sealed); a sealed file needs the passphrase."""
    try:
        document = json_loads_object(utf8_decode(_read_private(path)), what="key file")
    except MalformedError:
        raise MalformedError(
            ReasonCode.MALFORMED_INPUT, f"key file {path.name} is not JSON"
        ) from None
    if "format" in document:
        if passphrase is None:
            raise UsageError(
                ReasonCode.UNAUTHORIZED, f"key file {path.name} is sealed: a passphrase is needed"
            )
        document = open_sealed_jwk(document, passphrase)
    try:
        return FileKeySigner(PrivateKey.from_jwk(document))
    except CivicError:
        raise MalformedError(
            ReasonCode.MALFORMED_JWK, f"key file {path.name} holds no usable private key"
        ) from None


# --- the key store: files plus their public halves in the database ---------------------------


class KeyStore:
    """The issuer's signing keys: private halves in ``keys_dir``, public halves in the database.

    Several server processes share one store (one database, one key directory); a key added by
    ``civic-issuer rotate-key`` is picked up by running servers at their next lookup.
    """

    def __init__(self, engine: Engine, keys_dir: Path, *, passphrase: str | None) -> None:
        self._engine = engine
        self._dir = keys_dir
        self._passphrase = passphrase
        self._loaded: dict[str, FileKeySigner] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyStore({str(self._dir)!r})"

    def create(
        self,
        alg: Alg,
        *,
        now: int,
        opslimit: int = _ARGON2.OPSLIMIT_MODERATE,
        memlimit: int = _ARGON2.MEMLIMIT_MODERATE,
    ) -> FileKeySigner:
        """Generate a key, write its file (sealed when a passphrase is set), record it."""
        key = PrivateKey.generate(alg)
        signer = FileKeySigner(key)
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        file_name = f"{signer.kid}.jwk"
        write_key_file(
            self._dir / file_name,
            key,
            passphrase=self._passphrase,
            opslimit=opslimit,
            memlimit=memlimit,
        )
        with db.write_transaction(self._engine) as connection:
            # "Newest" picks the signing key, so creation times must be strictly ordered: a key
            # made within the second of the newest one (a rotation scripted right after init)
            # is recorded one second later instead of tying with it.
            newest = connection.execute(select(func.max(db.signing_keys.c.created_at))).scalar()
            connection.execute(
                db.signing_keys.insert().values(
                    kid=signer.kid,
                    alg=alg,
                    public_jwk=json_dumps(signer.public_key.to_jwk()),
                    key_file=file_name,
                    created_at=now if newest is None else max(now, newest + 1),
                    retired_at=None,
                )
            )
        with self._lock:
            self._loaded[signer.kid] = signer
        return signer

    def public_keys(self, *, include_retired: bool = False) -> list[tuple[str, PublicKey, int]]:
        """``(kid, public key, created_at)`` newest first."""
        query = select(
            db.signing_keys.c.kid, db.signing_keys.c.public_jwk, db.signing_keys.c.created_at
        ).order_by(db.signing_keys.c.created_at.desc(), db.signing_keys.c.kid)
        if not include_retired:
            query = query.where(db.signing_keys.c.retired_at.is_(None))
        with db.read_transaction(self._engine) as connection:
            rows = connection.execute(query).all()
        return [
            (row.kid, public_key_from_jwk(json_loads_object(row.public_jwk)), row.created_at)
            for row in rows
        ]

    def signers(self, transaction: db.DriverTransaction | None = None) -> list[FileKeySigner]:
        """The keys not retired, newest first; files are read once per process.

        The list itself is read on every call (one driver-level SELECT, inside the caller's
        ``transaction`` if given): a key retired or added by another process counts from the
        next request on.
        """
        if transaction is None:
            with db.driver_transaction(self._engine, write=False) as own:
                rows = own.all(_SELECT_ACTIVE_KEYS)
        else:
            rows = transaction.all(_SELECT_ACTIVE_KEYS)
        out: list[FileKeySigner] = []
        with self._lock:
            for kid, key_file in rows:
                signer = self._loaded.get(kid)
                if signer is None:
                    signer = load_key_file(
                        self._dir / Path(key_file).name, passphrase=self._passphrase
                    )
                    if signer.kid != kid:
                        raise UsageError(
                            ReasonCode.MALFORMED_JWK, "a key file does not hold the recorded key"
                        )
                    self._loaded[kid] = signer
                out.append(signer)
        return out

    def retire(self, kid: str, *, now: int) -> None:
        """Stop signing with ``kid`` (its file stays, for the record)."""
        with db.write_transaction(self._engine) as connection:
            connection.execute(
                update(db.signing_keys)
                .where(db.signing_keys.c.kid == kid, db.signing_keys.c.retired_at.is_(None))
                .values(retired_at=now)
            )
        with self._lock:
            self._loaded.pop(kid, None)
