"""``make demo`` / ``make up``: the whole city on 127.0.0.1, with SQLite in a temporary folder.

``python -m demo`` sets the city up (a registry with two witnesses, three agencies, a counter
service; :mod:`demo.walkthrough`), gives a fresh wallet its three credentials over OpenID4VCI,
plays the counters (OpenID4VP, an offline QR, a revocation, two forgeries), prints every verdict
with its reason code and the elapsed time, stops every process and exits 0.

``python -m demo up`` sets up the same city and keeps it running for a person to use: it prints
the counter page, the service URLs and the wallet commands to try, and waits for Ctrl-C.

``--keep`` leaves the temporary folder (databases, keys, QR images, service logs) in place.
Whatever happens (a failed step, Ctrl-C, SIGTERM, SIGHUP) every service process is stopped
before the demo exits (:mod:`demo.processes`). ``python -m demo.core`` is the library-level
walk-through of a single credential, with no services.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from civic.credentials import YOUTH_ALLOWANCE_VCT
from civic.encoding import json_dumps
from demo.city import BIN, City
from demo.processes import (
    DemoError,
    Interrupted,
    Supervisor,
    signals_ignored,
    signals_raise,
)
from demo.walkthrough import Held, Narrator, build_city, example_offer, walk_through
from demo.wallet import WalletCli, wallet_command

TIME_BUDGET = 60.0


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "mode",
        nargs="?",
        choices=("demo", "up"),
        default="demo",
        help="demo: run the walk-through and stop (default); up: keep the city running",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="civic-city-")).resolve()
    supervisor = Supervisor(root / "logs")
    narrator = Narrator()
    status = 0
    narrator.print("Civic Wallet: a city of credentials, every party a real service on 127.0.0.1")
    narrator.print(f"data: {root} (SQLite; {'kept' if arguments.keep else 'removed'} at the end)")
    with signals_raise():
        try:
            city, wallet, held = build_city(root, supervisor, narrator)
            if arguments.mode == "up":
                stay_up(city, wallet, held, supervisor, narrator)
            else:
                outcomes = walk_through(city, wallet, held, narrator)
                elapsed = time.monotonic() - started
                narrator.print("\nSummary")
                for name, outcome in outcomes.items():
                    narrator.say(f"{name:<18} {outcome}")
                budget = "within" if elapsed < TIME_BUDGET else "OVER"
                narrator.print(
                    f"\nCity demo finished in {elapsed:.1f} s ({budget} the {TIME_BUDGET:.0f} s"
                    " budget)."
                )
        except DemoError as error:
            print(f"\nDEMO FAILED: {error}", file=sys.stderr, flush=True)
            status = 1
        except KeyboardInterrupt:
            narrator.print("\nInterrupted (Ctrl-C).")
            status = 0 if arguments.mode == "up" else 128 + signal.SIGINT
        except Interrupted as interrupted:
            narrator.print(f"\nInterrupted ({interrupted}).")
            status = 128 + interrupted.signum
        finally:
            with signals_ignored():
                # Processes and files first: the report below may fail (a closed pipe).
                stopped = supervisor.stop_all()
                if not arguments.keep:
                    shutil.rmtree(root, ignore_errors=True)
                with contextlib.suppress(OSError):
                    narrator.print(f"Stopped {stopped} service processes.")
                    if arguments.keep:
                        narrator.print(f"Kept {root}.")
    return status


def stay_up(
    city: City, wallet: WalletCli, held: dict[str, Held], supervisor: Supervisor, narrator: Narrator
) -> None:
    """Print what a person can do with the running city, then wait for Ctrl-C."""
    say = narrator.say
    counters, registry = city.counters, city.registry
    examples = city.root / "examples"
    examples.mkdir()
    key_files = {}
    for slug, agency in city.agencies.items():
        key_file = agency.data_dir / "staff-api.key"
        key_file.touch(mode=0o600)
        key_file.write_text(agency.api_key + "\n", encoding="utf-8")
        key_files[slug] = key_file
        claims, evidence = example_offer(agency.profile.vct)
        (examples / f"{slug}-claims.json").write_text(json_dumps(claims) + "\n", encoding="utf-8")
        if evidence is not None:
            (examples / f"{slug}-evidence.json").write_text(json_dumps(evidence) + "\n")
    fresh = city.offer("district", *example_offer(city.agencies["district"].profile.vct))

    wallet_cli = " ".join(shlex.quote(part) for part in wallet_command())
    if wallet_cli.startswith(str(BIN)):
        wallet_cli = "civic-wallet"
    narrator.print("\nThe city is up. Ctrl-C stops every service and removes the data folder.")
    narrator.print("\nCounter page (staff)")
    say(f"{counters.url}/")
    say(f"staff API key (this run only): {counters.api_key}")
    say("unlock, pick a policy, 'Show request QR' (online) or 'New challenge' (offline QR)")
    narrator.print("\nServices (the URLs to try; API reference: README.md, docs/registry.md)")
    say(f"registry         {registry.url}/checkpoint   {registry.url}/entries?start=0&end=4")
    for witness in city.witnesses:
        say(f"{witness.name:<16} {witness.url}/healthz")
    for slug, agency in city.agencies.items():
        say(f"issuer-{slug:<9} {agency.url}/.well-known/openid-credential-issuer")
    say(f"verifier         {counters.url}/openapi.json   {counters.url}/healthz")

    narrator.print("\nThe citizen's wallet (it holds the three credentials)")
    say(f"export PATH={shlex.quote(str(BIN))}:$PATH")
    say(
        f"export CIVIC_WALLET_HOME={shlex.quote(str(wallet.home))}"
        f" CIVIC_WALLET_PASSPHRASE={shlex.quote(wallet.passphrase)}"
    )
    say(f"{wallet_cli} list")
    say(f"{wallet_cli} show {held['district'].id}")
    say(f"{wallet_cli} trust show")
    say(f"{wallet_cli} present 'openid4vp://...'        # the link under the page's request QR")
    say("# or create the request from a shell:")
    say(
        f"curl -s -H 'Authorization: Bearer {counters.api_key}' -H 'Content-Type:"
        f' application/json\' -d \'{{"policy": "bar-entry"}}\' {counters.url}/requests'
    )
    say(
        f"{wallet_cli} qr {held['district'].id} --disclose age_over_19 --challenge-image"
        " challenge.png --png qr.png   # then upload qr.png on the page"
    )
    say(f"{wallet_cli} history")
    say(f"# a fresh residency offer (valid {(fresh['expires_at'] - int(time.time())) // 60} min):")
    say(f"{wallet_cli} receive '{fresh['credential_offer_uri']}' --tx-code {fresh['tx_code']}")
    say("# more offers, as agency staff:")
    for slug, agency in city.agencies.items():
        evidence_file = examples / f"{slug}-evidence.json"
        extra = f" --evidence {evidence_file}" if agency.profile.vct == YOUTH_ALLOWANCE_VCT else ""
        say(
            f"civic-issuer offer --server {agency.url} --api-key-file {key_files[slug]}"
            f" --vct {agency.profile.vct} --claims {examples / f'{slug}-claims.json'}{extra}"
        )
    say(f"civic-registry show --registry {registry.url} --config {registry.trust_config}")
    narrator.print("\nWaiting; press Ctrl-C to stop.")
    while True:
        time.sleep(1.0)
        supervisor.check_alive()


if __name__ == "__main__":
    sys.exit(main())
