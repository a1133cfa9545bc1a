"""Running an issuer for tests and demos: a loopback server thread and an in-memory registry.

Nothing here is a shortcut around a check: :class:`MemoryRegistry` is a real log
(:class:`civic.logsync.MemoryLog`) of governance-signed entries, and the issuer reaches it
through the same :class:`~issuer.trust.RegistryTrust` sync (checkpoint, consistency, root,
fold) as in production; only the transport is in-process instead of HTTP.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from civic.clock import Clock, system_clock
from civic.jose import Alg, PrivateKey, PublicKey
from civic.logsync import LogConfig, MemoryLog
from civic.note import NoteSigner, NoteVerifier, generate_note_key
from civic.trust import GovernanceConfig, new_event, sign_event
from issuer import db
from issuer.admin import create_api_key
from issuer.app import build_context, create_app
from issuer.keys import FileKeySigner, KeyStore
from issuer.server import listening_socket
from issuer.settings import IssuerSettings, load_runtime
from issuer.trust import RegistryTrust


class ServerThread:
    """Serve an ASGI app with uvicorn on ``127.0.0.1`` and a free port, in a thread.

    The port is bound at construction, so the URL is known before the app is built (the
    issuer's identifier contains it); :meth:`start` then serves the app on that socket.
    """

    def __init__(self, *, host: str = "127.0.0.1", startup_timeout: float = 10.0) -> None:
        # TCP_NODELAY on accepted connections: see issuer.server.listening_socket.
        self._socket = listening_socket(host, 0)
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        self._timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, app: Any) -> ServerThread:
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self._timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=self._timeout)
        self._socket.close()


def free_loopback_port() -> int:
    """A port free on 127.0.0.1 right now (for servers that bind it themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MemoryRegistry:
    """A trust registry log in memory, with one governance key and no witnesses."""

    def __init__(self, origin: str = "registry.test/civic", *, now: Clock = system_clock) -> None:
        self.now = now
        self.governance_key = PrivateKey.generate("EdDSA")
        self.governance_kid = self.governance_key.public_key.thumbprint()
        skey, vkey = generate_note_key(origin)
        self.log = MemoryLog(origin, NoteSigner.from_skey(skey))
        self.config = LogConfig(
            origin=origin,
            log_verifier=NoteVerifier.from_vkey(vkey),
            witnesses=(),
            witness_quorum=0,
            governance=GovernanceConfig({self.governance_kid: self.governance_key.public_key}, 1),
        )
        self.log.publish()

    def post(self, event_type: str, **members: Any) -> dict[str, Any]:
        """Sign an event with the governance key, append it and publish a checkpoint."""
        event = new_event(event_type, now=self.now, **members)
        entry = sign_event(event, [(self.governance_kid, self.governance_key)])
        self.log.append(entry)
        self.log.publish()
        return event

    def accredit(
        self,
        issuer: str,
        kid: str,
        public_key: PublicKey,
        vcts: list[str],
        *,
        status_base_url: str,
        not_before: int,
        not_after: int,
    ) -> dict[str, Any]:
        return self.post(
            "issuer.key.add",
            issuer=issuer,
            kid=kid,
            jwk=public_key,
            vct=vcts,
            status_base_url=status_base_url,
            not_before=not_before,
            not_after=not_after,
        )

    def retire(self, issuer: str, kid: str, retired_at: int) -> dict[str, Any]:
        return self.post("issuer.key.retire", issuer=issuer, kid=kid, retired_at=retired_at)

    def revoke(self, issuer: str, kid: str, revoked_at: int) -> dict[str, Any]:
        return self.post("issuer.key.revoke", issuer=issuer, kid=kid, revoked_at=revoked_at)

    def trust(self, *, refresh_interval: int = 1, max_age: int = 3600) -> RegistryTrust:
        return RegistryTrust(
            self.log, self.config, refresh_interval=refresh_interval, max_age=max_age
        )


class LocalIssuer:
    """A complete issuer on a loopback port: settings, database, one signing key accredited in
    a :class:`MemoryRegistry`, and an admin API key for every type it issues.

    ``with LocalIssuer(tmp_path, now=clock) as issuer: ...`` then talk to ``issuer.url``. The
    clock is shared with the registry, so tests move time for both at once.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        now: Clock = system_clock,
        alg: Alg = "EdDSA",
        accredit: bool = True,
        registry: MemoryRegistry | None = None,
        **settings: Any,
    ) -> None:
        self.now = now
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.server = ServerThread()
        self.url = self.server.url
        self.settings = IssuerSettings(data_dir=data_dir, issuer_url=self.url, **settings)
        self.runtime = load_runtime(self.settings)
        self.registry = registry if registry is not None else MemoryRegistry(now=now)
        self.context = build_context(self.runtime, trust=self.registry.trust(), now=now)
        db.create_schema(self.context.engine)
        assert isinstance(self.context.keys, KeyStore)
        self.keys: KeyStore = self.context.keys
        self.signer = self.keys.create(alg, now=now())
        if accredit:
            self.accredit(self.signer)
        _, self.admin_key = create_api_key(
            self.context.engine, vcts=list(self.runtime.vcts), label="test", now=now()
        )
        self.app = create_app(self.context)

    def accredit(self, signer: FileKeySigner, vcts: list[str] | None = None) -> None:
        now = self.now()
        self.registry.accredit(
            self.runtime.issuer_url,
            signer.kid,
            signer.public_key,
            list(self.runtime.vcts) if vcts is None else vcts,
            status_base_url=self.runtime.status_base_url,
            not_before=now - 60,
            not_after=now + 10 * 365 * 86400,
        )

    def api_key(self, vcts: list[str], label: str = "test") -> str:
        return create_api_key(self.context.engine, vcts=vcts, label=label, now=self.now())[1]

    def start(self) -> LocalIssuer:
        self.server.start(self.app)
        return self

    def stop(self) -> None:
        self.server.stop()
        self.context.engine.dispose()

    def __enter__(self) -> LocalIssuer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
