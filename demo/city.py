"""The city: a registry with two witnesses, three agencies, a counter service, on 127.0.0.1.

Set-up goes through the services' own command lines, as an operator would type them:
``civic-registry init`` / ``witness init`` / ``accredit-issuer`` / ``accredit-verifier``,
``civic-issuer init`` / ``create-api-key``, ``civic-verifier init`` (run in this process with
Click's runner, so a dozen commands do not each pay for a Python start-up), and every service
runs as its own process from its CLI's ``serve`` (:mod:`demo.processes`). Accreditation is only
ever a governance-signed entry appended to the registry over HTTP; the issuers and the counter
service learn it by syncing the witnessed log, like any relying party (docs/registry.md).

Staff actions (offers, OpenID4VP requests, challenges, offline verification, revocation) use
the services' HTTP admin APIs with the API keys created here.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import typer
from typer.testing import CliRunner

from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, YOUTH_ALLOWANCE_VCT, get_type
from civic.encoding import json_dumps, json_loads_object
from demo.processes import DemoError, Service, Supervisor, clean_environment, free_port

ORIGIN = "registry.civic.example/seoul"
VERIFIER_ID = "counters.seoul.example"
VERIFIER_PURPOSE = "Seoul city counters: youth allowance desk, pharmacy, bar entry"
GOVERNANCE_KEYS = 3
GOVERNANCE_QUORUM = 2
WITNESS_NAMES = ("witness.civic.example/w1", "witness.civic.example/w2")
ACCREDITATION_SECONDS = 2 * 365 * 86_400
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class AgencyProfile:
    slug: str
    name_en: str
    name_ko: str
    vct: str

    @property
    def type_name(self) -> str:
        return get_type(self.vct).type_name("en")

    def env(self) -> dict[str, str]:
        """The issuer settings that make this agency (for every ``civic-issuer`` command)."""
        return {
            "CIVIC_ISSUER_VCTS": json_dumps([self.vct]),
            "CIVIC_ISSUER_NAME_EN": self.name_en,
            "CIVIC_ISSUER_NAME_KO": self.name_ko,
        }


AGENCIES = (
    AgencyProfile("district", "Mapo-gu District Office", "마포구청", RESIDENCY_VCT),
    AgencyProfile("youth", "Seoul Youth Policy Office", "서울시 청년정책과", YOUTH_ALLOWANCE_VCT),
    AgencyProfile(
        "health", "Korea Disease Control and Prevention Agency", "질병관리청", VACCINATION_VCT
    ),
)


def command(script: str, module: str) -> list[str]:
    """How to run a civic CLI: its console script when installed, else the module's app."""
    installed = BIN / script
    if installed.exists():
        return [str(installed)]
    return [
        sys.executable,
        "-c",
        f"import sys; sys.argv[0] = {script!r}; from {module} import app; app()",
    ]


def run_cli(app: typer.Typer, args: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """Run a CLI command in this process and return its stdout; a failure stops the demo."""
    # Only the variables given here reach the command: the user's own civic settings
    # (or a DATABASE_URL meant for something else) must not.
    isolated: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith("CIVIC_") or name == "DATABASE_URL"
    }
    isolated.update(env or {})
    result = CliRunner().invoke(app, list(args), env=isolated)
    if result.exit_code != 0:
        detail = (result.stderr or result.output).strip() or repr(result.exception)
        raise DemoError(f"`{' '.join(args[:2])}` failed: {detail}")
    return result.stdout


def run_cli_json(
    app: typer.Typer, args: Sequence[str], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return json_loads_object(run_cli(app, [*args, "--json"], env).strip().splitlines()[-1])


@dataclass
class Registry:
    data_dir: Path
    url: str
    trust_config: Path
    governance_key_files: list[Path]
    log_vkey: str


@dataclass
class Witness:
    name: str
    key_file: Path
    vkey: str
    url: str


@dataclass
class Agency:
    profile: AgencyProfile
    data_dir: Path
    url: str
    kid: str
    public_jwk_file: Path
    api_key: str = field(repr=False)


@dataclass
class Counters:
    data_dir: Path
    url: str
    kid: str
    public_jwk_file: Path
    api_key: str = field(repr=False)
    allowed: list[dict[str, Any]]


@dataclass
class City:
    """Everything the walk-through needs to talk to the running city."""

    root: Path
    registry: Registry
    witnesses: list[Witness]
    agencies: dict[str, Agency]
    counters: Counters
    services: list[Service] = field(default_factory=list)

    # -- staff actions over the admin APIs ------------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        key: str,
        body: dict[str, Any] | None = None,
        expect: int = 200,
    ) -> dict[str, Any]:
        with httpx.Client(timeout=30.0) as client:
            answer = client.request(
                method, url, json=body, headers={"Authorization": f"Bearer {key}"}
            )
        if answer.status_code != expect:
            raise DemoError(f"{method} {url} answered {answer.status_code}: {answer.text[:300]}")
        document: dict[str, Any] = answer.json()
        return document

    def offer(
        self,
        slug: str,
        claims: dict[str, Any],
        evidence: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        agency = self.agencies[slug]
        body: dict[str, Any] = {"vct": agency.profile.vct, "claims": claims}
        if evidence is not None:
            body["evidence"] = evidence
        return self._call("POST", f"{agency.url}/admin/offers", agency.api_key, body, 201)

    def issued(self, slug: str) -> list[dict[str, Any]]:
        agency = self.agencies[slug]
        answer = self._call(
            "GET", f"{agency.url}/admin/credentials?vct={agency.profile.vct}", agency.api_key
        )
        credentials: list[dict[str, Any]] = answer["credentials"]
        return credentials

    def revoke(self, slug: str, credential_id: str) -> dict[str, Any]:
        agency = self.agencies[slug]
        return self._call(
            "POST", f"{agency.url}/admin/credentials/{credential_id}/revoke", agency.api_key
        )

    def request(self, policy: str) -> dict[str, Any]:
        return self._call(
            "POST", f"{self.counters.url}/requests", self.counters.api_key, {"policy": policy}, 201
        )

    def request_status(self, request_id: str) -> dict[str, Any]:
        return self._call(
            "GET", f"{self.counters.url}/requests/{request_id}", self.counters.api_key
        )

    def challenge(self) -> dict[str, Any]:
        return self._call(
            "POST", f"{self.counters.url}/challenges", self.counters.api_key, None, 201
        )

    def verify(self, policy: str, nonce: str, **presentation: str) -> dict[str, Any]:
        body = {"policy": policy, "nonce": nonce, **presentation}
        return self._call("POST", f"{self.counters.url}/verify", self.counters.api_key, body)


# --- building the city ------------------------------------------------------------------------


def _write_json(path: Path, document: Any) -> Path:
    path.write_text(json_dumps(document) + "\n", encoding="utf-8")
    return path


def init_registry(root: Path) -> Registry:
    from registry.cli import app as registry_app  # noqa: PLC0415

    data_dir = root / "registry"
    created = run_cli_json(
        registry_app,
        [
            "init",
            "--data-dir",
            str(data_dir),
            "--origin",
            ORIGIN,
            "--governance-keys",
            str(GOVERNANCE_KEYS),
            "--quorum",
            str(GOVERNANCE_QUORUM),
        ],
    )
    port = free_port()
    keys = sorted(data_dir.glob("governance-key-*.jwk"))
    return Registry(
        data_dir=data_dir,
        url=f"http://127.0.0.1:{port}",
        trust_config=data_dir / "trust-config.json",
        governance_key_files=keys,
        log_vkey=str(created["log_vkey"]),
    )


def init_witnesses(root: Path, registry: Registry) -> list[Witness]:
    from registry.cli import app as registry_app  # noqa: PLC0415

    witnesses = []
    for number, name in enumerate(WITNESS_NAMES, 1):
        directory = root / f"witness-{number}"
        directory.mkdir(mode=0o700)
        key_file = directory / "witness.key"
        vkey = run_cli(
            registry_app, ["witness", "init", "--key-file", str(key_file), "--name", name]
        ).strip()
        witnesses.append(Witness(name, key_file, vkey, f"http://127.0.0.1:{free_port()}"))
    # Relying parties believe a checkpoint only with both cosignatures.
    config = json_loads_object(registry.trust_config.read_bytes())
    config["witnesses"] = [witness.vkey for witness in witnesses]
    config["witness_quorum"] = len(witnesses)
    _write_json(registry.trust_config, config)
    return witnesses


def init_agency(root: Path, profile: AgencyProfile, registry: Registry) -> Agency:
    from issuer.cli import app as issuer_app  # noqa: PLC0415

    data_dir = root / f"issuer-{profile.slug}"
    url = f"http://127.0.0.1:{free_port()}"
    env = profile.env()
    created = run_cli_json(
        issuer_app, ["init", "--data-dir", str(data_dir), "--issuer-url", url], env
    )
    shutil.copy(registry.trust_config, data_dir / "trust-config.json")
    staff = run_cli_json(
        issuer_app,
        [
            "create-api-key",
            "--vct",
            profile.vct,
            "--label",
            f"{profile.name_en} staff",
            "--data-dir",
            str(data_dir),
        ],
        env,
    )
    return Agency(
        profile=profile,
        data_dir=data_dir,
        url=url,
        kid=str(created["kid"]),
        public_jwk_file=Path(created["public_jwk_file"]),
        api_key=str(staff["api_key"]),
    )


def accredited_claims() -> list[dict[str, Any]]:
    """Exactly the claims the counter policies ask for, per credential type."""
    from verifier.settings import PACKAGED_POLICIES, load_policies  # noqa: PLC0415

    by_vct: dict[str, list[list[Any]]] = {}
    for policy in load_policies(PACKAGED_POLICIES).values():
        for requirement in policy.credentials:
            for vct in requirement.vct:
                paths = by_vct.setdefault(vct, [])
                for path in requirement.paths:
                    if list(path) not in paths:
                        paths.append(list(path))
    return [{"vct": vct, "claims": claims} for vct, claims in by_vct.items()]


def init_counters(root: Path, registry: Registry) -> Counters:
    from verifier.cli import app as verifier_app  # noqa: PLC0415

    data_dir = root / "verifier"
    created = run_cli_json(verifier_app, ["init", "--data-dir", str(data_dir)])
    public_jwk_file = _write_json(data_dir / "verifier.pub.jwk", created["jwk"])
    shutil.copy(registry.trust_config, data_dir / "trust-config.json")
    api_key = Path(created["api_key_file"]).read_text(encoding="utf-8").strip()
    return Counters(
        data_dir=data_dir,
        url=f"http://127.0.0.1:{free_port()}",
        kid=str(created["kid"]),
        public_jwk_file=public_jwk_file,
        api_key=api_key,
        allowed=accredited_claims(),
    )


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


def start_trust_anchor(
    supervisor: Supervisor, root: Path, *, registry: Registry, witnesses: list[Witness]
) -> list[Service]:
    """Start the witnesses and the registry, without waiting for them: they boot while the
    agencies and the counter service are being set up."""
    registry_cli = command("civic-registry", "registry.cli")
    services = []
    for number, witness in enumerate(witnesses, 1):
        env = clean_environment(
            {
                "CIVIC_WITNESS_KEY_FILE": str(witness.key_file),
                "CIVIC_WITNESS_DATABASE_URL": f"sqlite:///{witness.key_file.parent}/witness.sqlite3",
                "CIVIC_WITNESS_LOGS": json_dumps({ORIGIN: registry.log_vkey}),
            }
        )
        argv = [*registry_cli, "witness", "serve", "--port", _port(witness.url)]
        argv += ["--log-level", "warning"]
        services.append(
            supervisor.start(f"witness-{number}", argv, env=env, url=witness.url, cwd=root)
        )
    env = clean_environment(
        {
            "CIVIC_REGISTRY_WITNESSES": json_dumps(
                [{"vkey": witness.vkey, "url": witness.url} for witness in witnesses]
            ),
            "CIVIC_REGISTRY_WITNESS_QUORUM": str(len(witnesses)),
            "CIVIC_REGISTRY_REPUBLISH_INTERVAL": "2",
        }
    )
    argv = [*registry_cli, "serve", "--data-dir", str(registry.data_dir)]
    argv += ["--port", _port(registry.url)]
    services.append(supervisor.start("registry", argv, env=env, url=registry.url, cwd=root))
    return services


def start_agencies(
    supervisor: Supervisor,
    root: Path,
    *,
    registry: Registry,
    agencies: dict[str, Agency],
    counters: Counters,
) -> list[Service]:
    """Start the issuers and the counter service, without waiting for them."""
    services = []
    issuer_cli = command("civic-issuer", "issuer.cli")
    for agency in agencies.values():
        env = clean_environment(
            {
                **agency.profile.env(),
                "CIVIC_ISSUER_REGISTRY_URL": registry.url,
                "CIVIC_ISSUER_TRUST_REFRESH_SECONDS": "1",
            }
        )
        argv = [*issuer_cli, "serve", "--data-dir", str(agency.data_dir)]
        argv += ["--issuer-url", agency.url, "--port", _port(agency.url)]
        services.append(
            supervisor.start(
                f"issuer-{agency.profile.slug}", argv, env=env, url=agency.url, cwd=root
            )
        )
    env = clean_environment(
        {
            "CIVIC_VERIFIER_CLIENT_ID": VERIFIER_ID,
            "CIVIC_VERIFIER_PUBLIC_URL": counters.url,
            "CIVIC_VERIFIER_REGISTRY_URL": registry.url,
            "CIVIC_VERIFIER_SYNC_INTERVAL": "1",
            # A revocation shows on the very next scan; a real counter may cache a status
            # list for its ttl (five minutes by default).
            "CIVIC_VERIFIER_STATUS_MAX_CACHE_SECONDS": "1",
        }
    )
    argv = [*command("civic-verifier", "verifier.cli"), "serve"]
    argv += ["--data-dir", str(counters.data_dir), "--port", _port(counters.url)]
    services.append(supervisor.start("verifier", argv, env=env, url=counters.url, cwd=root))
    return services


def governance_args(registry: Registry) -> list[str]:
    """Registry URL, token and the first k governance keys: k of n sign every entry."""
    args = ["--registry", registry.url, "--data-dir", str(registry.data_dir)]
    for key in registry.governance_key_files[:GOVERNANCE_QUORUM]:
        args += ["--key", str(key)]
    return args


def accredit(registry: Registry, agencies: dict[str, Agency], counters: Counters) -> list[str]:
    """Append the issuer keys and the counter service's key to the registry; one line each."""
    from registry.cli import app as registry_app  # noqa: PLC0415

    not_after = str(int(time.time()) + ACCREDITATION_SECONDS)
    lines = []
    for agency in agencies.values():
        answer = run_cli_json(
            registry_app,
            [
                "accredit-issuer",
                "--issuer",
                agency.url,
                "--jwk-file",
                str(agency.public_jwk_file),
                "--kid",
                agency.kid,
                "--vct",
                agency.profile.vct,
                "--status-base-url",
                f"{agency.url}/status",
                "--not-after",
                not_after,
                *governance_args(registry),
            ],
        )
        lines.append(
            f"#{answer['index']} issuer.key.add    {agency.profile.name_en}: "
            f"{agency.profile.type_name}, status lists under {agency.url}/status"
        )
    allowed_file = _write_json(counters.data_dir / "accredited-claims.json", counters.allowed)
    answer = run_cli_json(
        registry_app,
        [
            "accredit-verifier",
            "--verifier",
            VERIFIER_ID,
            "--jwk-file",
            str(counters.public_jwk_file),
            "--kid",
            counters.kid,
            "--purpose",
            VERIFIER_PURPOSE,
            "--allowed-file",
            str(allowed_file),
            "--not-after",
            not_after,
            *governance_args(registry),
        ],
    )
    claims = "; ".join(
        get_type(item["vct"]).type_name("en")
        + ": "
        + ", ".join(".".join(map(str, path)) for path in item["claims"])
        for item in counters.allowed
    )
    lines.append(f"#{answer['index']} verifier.add      {VERIFIER_ID}: {claims}")
    return lines


def wait_until(what: str, predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out waiting for {what}")
        time.sleep(0.1)


def witnessed_checkpoint(city: City, size: int) -> list[str]:
    """Wait for the registry to serve a checkpoint of ``size`` cosigned by every witness and
    for the counter service to have synced it; the witness names that cosigned."""
    names = {witness.name for witness in city.witnesses}

    def cosigned() -> list[str] | None:
        note = httpx.get(city.registry.url + "/checkpoint", timeout=5).text
        lines = note.split("\n")
        if len(lines) < 2 or lines[1] != str(size):
            return None
        signers = [line.split(" ")[1] for line in lines if line.startswith("\u2014 ")]
        found = [name for name in signers if name in names]
        return found if len(found) == len(names) else None

    signers: list[str] = wait_until(f"a checkpoint of size {size} with every witness", cosigned)

    def synced() -> bool:
        health = httpx.get(city.counters.url + "/healthz", timeout=5).json()
        return bool(health["trust"]["checkpoint_size"] == size)

    wait_until("the counter service to sync the registry", synced)
    return signers
