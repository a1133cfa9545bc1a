"""The city demo's script: what happens, step by step, and what each party sees.

:func:`build_city` sets the city up and hands a wallet its three credentials (shared by
``make demo`` and ``make up``); :func:`walk_through` then plays the counters: an OpenID4VP
check at the youth allowance desk, an offline QR at a pharmacy, a revocation and its effect,
and two forgeries. Verdicts are the verifier's own JSON, printed with their reason codes.

``CIVIC_DEMO_UNSAFE_FAIL_AT=<step id>`` makes the demo fail on purpose at that step, so that
tests can check that a failing demo still stops every process it started. Only the demo reads
it; the services never see it (:func:`demo.processes.clean_environment`).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, YOUTH_ALLOWANCE_VCT, get_type
from civic.credentials.examples import YOUTH_ALLOWANCE_APPLICATION_DATE
from civic.encoding import (
    b64std_decode,
    b64std_encode,
    b64url_decode,
    b64url_encode,
    json_dumps,
    json_loads,
)
from civic.jose import PrivateKey
from civic.qr import decode_png, unpack
from civic.sdjwt import create_presentation
from civic.sdjwtvc import issue_credential
from demo.city import (
    AGENCIES,
    GOVERNANCE_KEYS,
    GOVERNANCE_QUORUM,
    VERIFIER_ID,
    City,
    accredit,
    init_agency,
    init_counters,
    init_registry,
    init_witnesses,
    start_agencies,
    start_trust_anchor,
    witnessed_checkpoint,
)
from demo.processes import DemoError, Supervisor
from demo.wallet import WalletCli

FAIL_AT_VARIABLE = "CIVIC_DEMO_UNSAFE_FAIL_AT"
STEP_IDS = (
    "registry",
    "witnesses",
    "agencies",
    "counters",
    "start",
    "accredit",
    "wallet",
    "issue",
    "youth-counter",
    "pharmacy",
    "revoke",
    "after-revoke",
    "forged-disclosure",
    "forged-issuer",
)


class Narrator:
    """Numbered steps and indented details on stdout; the failure injection point."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.number = 0
        self.fail_at = os.environ.get(FAIL_AT_VARIABLE) or None

    def step(self, step_id: str, title: str) -> None:
        assert step_id in STEP_IDS
        self.number += 1
        self.print(f"\n[{self.number}] {title}")
        if self.fail_at == step_id:
            raise DemoError(f"failure injected at step {step_id!r} ({FAIL_AT_VARIABLE})")

    def say(self, text: str = "", indent: int = 4) -> None:
        for line in text.splitlines() or [""]:
            self.print(" " * indent + line if line else "")

    def print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def verdict(self, verdict: dict[str, Any]) -> None:
        result, reason = verdict["result"], verdict.get("reason")
        self.say(f"VERDICT: {result}" + (f" ({reason})" if reason else ""))
        checks = verdict.get("checks", [])
        counts = {outcome: 0 for outcome in ("passed", "failed", "undetermined", "skipped")}
        for check in checks:
            counts[check["outcome"]] = counts.get(check["outcome"], 0) + 1
        self.say(", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n) + " checks", 6)
        for check in checks:
            if check["outcome"] in ("failed", "undetermined"):
                where = f" [{check['credential']}]" if check.get("credential") else ""
                self.say(f"{check['outcome']}: {check['name']}{where}: {check['reason']}", 6)
        for credential in verdict.get("credentials", []):
            for claim in credential.get("claims", []):
                label = claim.get("label", {}).get("en") or ".".join(map(str, claim["path"]))
                self.say(f"{label}: {json_dumps(claim['value'])}", 6)


def _day(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")


@dataclass
class Held:
    """What the wallet answered when it received a credential."""

    id: str
    vct: str


# --- the city, set up ---------------------------------------------------------------------------


def build_city(
    root: Path, supervisor: Supervisor, narrator: Narrator
) -> tuple[City, WalletCli, dict[str, Held]]:
    say = narrator.say
    narrator.step(
        "registry",
        f"The trust authority creates the registry: a log key and {GOVERNANCE_KEYS} governance"
        f" keys, any {GOVERNANCE_QUORUM} of which sign an entry",
    )
    registry = init_registry(root)
    say(f"civic-registry init: log {registry.log_vkey.split('+')[0]}, key files 0600")

    narrator.step(
        "witnesses",
        "Two independent witnesses create their keys; relying parties believe a checkpoint"
        " only with both cosignatures",
    )
    witnesses = init_witnesses(root, registry)
    for witness in witnesses:
        say(f"civic-registry witness init: {witness.name}")
    booting = time.monotonic()
    anchor = start_trust_anchor(supervisor, root, registry=registry, witnesses=witnesses)

    narrator.step("agencies", "Three agencies create their signing keys and a staff API key")
    agencies = {}
    for profile in AGENCIES:
        agency = init_agency(root, profile, registry)
        agencies[profile.slug] = agency
        say(f"{profile.name_en} ({profile.name_ko}): {profile.type_name}, kid {agency.kid[:12]}…")

    narrator.step(
        "counters",
        "The city's counter service creates its request-signing key; it runs three counters",
    )
    counters = init_counters(root, registry)
    say("youth-allowance-counter, pharmacy, bar-entry (verifier/policies/)")

    narrator.step("start", "Every service runs as its own process on 127.0.0.1 (SQLite files)")
    services = anchor + start_agencies(
        supervisor, root, registry=registry, agencies=agencies, counters=counters
    )
    supervisor.wait_ready(services)
    for service in services:
        say(f"{service.name:<16} {service.url:<24} pid {service.pid}")
    say(f"all {len(services)} answering {time.monotonic() - booting:.1f} s after the first started")
    city = City(root, registry, witnesses, agencies, counters, services)

    narrator.step(
        "accredit",
        "The trust authority accredits every key: governance-signed entries appended to the"
        " registry",
    )
    for line in accredit(registry, agencies, counters):
        say(line)
    signers = witnessed_checkpoint(city, len(agencies) + 1)
    say(f"checkpoint {len(agencies) + 1} cosigned by {' and '.join(signers)}")
    say("the counter service has synced it (checkpoint, consistency, root, every entry)")

    narrator.step("wallet", "A citizen, 김서연, creates a fresh wallet and trusts the registry")
    wallet = WalletCli(root / "wallet", root)
    wallet.run("init", "--registry-url", registry.url, "--trust-config", str(registry.trust_config))
    say(f"civic-wallet init: sealed with a passphrase in {wallet.home}")

    narrator.step(
        "issue", "Agency staff create offers; the wallet receives each credential (OpenID4VCI)"
    )
    held = {}
    for profile in AGENCIES:
        offer = city.offer(profile.slug, *example_offer(profile.vct))
        say(f"{profile.name_en}: offer {offer['credential_offer_uri'][:48]}…")
        say(f"tx_code {offer['tx_code']} handed to the citizen separately", 6)
        answer = wallet.run("receive", offer["credential_offer_uri"], "--tx-code", offer["tx_code"])
        received = answer.document
        held[profile.slug] = Held(str(received["id"]), profile.vct)
        say(
            f"wallet: {received['type']} verified against the registry and stored as"
            f" {received['id']} ({received['copies']} single-use copies, expires"
            f" {_day(int(received['expires_at']))})",
            6,
        )
    return city, wallet, held


def example_offer(vct: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The example citizen's claims, and the youth allowance's eligibility evidence."""
    claims = get_type(vct).example_claims()
    if vct != YOUTH_ALLOWANCE_VCT:
        return claims, None
    residency = get_type(RESIDENCY_VCT).example_claims()
    evidence = {
        "birth_date": residency["birth_date"],
        "application_date": YOUTH_ALLOWANCE_APPLICATION_DATE,
        "residence_region": residency["address"]["region"],
    }
    return claims, evidence


# --- the counters -------------------------------------------------------------------------------


def _present_online(
    city: City, wallet: WalletCli, narrator: Narrator, policy: str, *, show_consent: bool
) -> dict[str, Any]:
    created = city.request(policy)
    narrator.say(f"staff: request {created['id'][:10]}… shown as a QR: {created['uri'][:56]}…")
    answer = wallet.run("present", created["uri"], "--yes", exit_codes=(0, 1))
    if show_consent:
        narrator.say("wallet checks the signed request against the registry and asks for consent:")
        narrator.say(answer.messages.strip(), 6)
    else:
        narrator.say("wallet checks the request and shows the same consent screen as before")
    narrator.say(
        f"wallet: sent (--yes); the verifier answered {json_dumps(answer.document['answer'])}"
        f" (civic-wallet exit status {answer.exit_status})"
    )
    status = city.request_status(created["id"])
    verdict: dict[str, Any] = status["verdict"]
    narrator.verdict(verdict)
    return verdict


def walk_through(
    city: City, wallet: WalletCli, held: dict[str, Held], narrator: Narrator
) -> dict[str, str]:
    """The counters, the revocation and the forgeries; each verdict's result and reason."""
    say = narrator.say
    outcomes: dict[str, str] = {}

    def record(name: str, verdict: dict[str, Any]) -> None:
        outcomes[name] = verdict["result"] + (
            f" ({verdict['reason']})" if verdict["reason"] else ""
        )

    narrator.step(
        "youth-counter",
        "Youth allowance counter, online (OpenID4VP): a Seoul resident aged 19-34 with an active"
        " allowance?",
    )
    verdict = _present_online(city, wallet, narrator, "youth-allowance-counter", show_consent=True)
    record("youth-counter", verdict)

    narrator.step(
        "pharmacy", "Pharmacy, offline: the wallet shows a QR code, the scanner reads the PNG"
    )
    challenge = city.challenge()
    challenge_png = city.root / "pharmacy-challenge.png"
    challenge_png.write_bytes(b64std_decode(challenge["qr_png"]))
    say(f"counter shows a challenge QR (audience and a fresh nonce): {challenge_png.name}")
    presentation_png = city.root / "pharmacy-presentation.png"
    shown = wallet.run(
        "qr",
        held["health"].id,
        "--disclose",
        "vaccination.dn",
        "--challenge-image",
        str(challenge_png),
        "--png",
        str(presentation_png),
    ).document
    say(
        f"wallet: discloses only the dose number, bound to that nonce: QR version"
        f" {shown['qr_version']}, {shown['characters']} characters -> {presentation_png.name}"
    )
    png = presentation_png.read_bytes()
    scanned = decode_png(png)
    say(f"scanner: zxing decodes the PNG ({len(png)} bytes) to {scanned[:12]}…; POST /verify")
    verdict = city.verify("pharmacy", challenge["nonce"], image_png=b64std_encode(png))
    narrator.verdict(verdict)
    record("pharmacy", verdict)

    narrator.step("revoke", "The district office revokes the residency credential")
    revoked = []
    for issued in city.issued("district"):
        if issued["status"] == "valid":
            city.revoke("district", issued["id"])
            revoked.append(issued)
    lists = sorted({item["status_list"]["uri"] for item in revoked})
    say(
        f"staff: revoked {len(revoked)} copies (admin API); their bits in {', '.join(lists)}"
        " now read 'invalid'"
    )

    narrator.step("after-revoke", "Youth allowance counter again: the status list now says revoked")
    verdict = _present_online(city, wallet, narrator, "youth-allowance-counter", show_consent=False)
    record("after-revoke", verdict)

    narrator.step(
        "forged-disclosure",
        "Forgery 1: someone photographed the pharmacy QR, edits the dose number and shows it",
    )
    challenge = city.challenge()
    tampered, before, after = tamper_dose(unpack(scanned))
    say(f"the disclosed dose number {before} becomes {after}; the rest is the QR as it was scanned")
    verdict = city.verify("pharmacy", challenge["nonce"], presentation=tampered)
    narrator.verdict(verdict)
    record("forged-disclosure", verdict)

    narrator.step(
        "forged-issuer",
        "Forgery 2: a vaccination credential signed by a key the registry never accredited",
    )
    challenge = city.challenge()
    forged = forge_credential(city.agencies["health"].url, challenge["nonce"])
    say(f"iss {city.agencies['health'].url} (the health agency's), kid not in the registry")
    verdict = city.verify("pharmacy", challenge["nonce"], presentation=forged)
    narrator.verdict(verdict)
    record("forged-issuer", verdict)
    return outcomes


def tamper_dose(presentation: str) -> tuple[str, Any, Any]:
    """Change the value of the ``dn`` disclosure, re-encoded as a disclosure would be."""
    parts = presentation.split("~")
    for position, part in enumerate(parts[1:-1], 1):
        decoded = json_loads(b64url_decode(part))
        if isinstance(decoded, list) and len(decoded) == 3 and decoded[1] == "dn":
            before = decoded[2]
            decoded[2] = before + 1
            parts[position] = b64url_encode(json_dumps(decoded).encode("utf-8"))
            return "~".join(parts), before, decoded[2]
    raise DemoError("the captured presentation has no dose number disclosure")


def forge_credential(issuer: str, nonce: str) -> str:
    """A well-formed credential and presentation under an unaccredited key."""
    forger, holder = PrivateKey.generate(), PrivateKey.generate()
    credential = issue_credential(
        issuer=issuer,
        vct=VACCINATION_VCT,
        subject_claims=get_type(VACCINATION_VCT).example_claims(),
        signer=forger,
        kid=forger.public_key.thumbprint(),
        holder_key=holder.public_key,
        lifetime=365 * 86_400,
    )
    return create_presentation(
        credential,
        reveal=[("vaccination", "dn")],
        holder=holder,
        audience=VERIFIER_ID,
        nonce=nonce,
    )
