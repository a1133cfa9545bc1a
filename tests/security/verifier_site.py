"""A verifier deployment for the trust, status, accreditation and replay attacks.

Built from tests/services/verifier_deploy.py (the city of tests/unit/verifier_city.py, its
Status List server and the verifier served by uvicorn in a thread on 127.0.0.1, on a fixed
clock), with the extra registry history the attacks need: a retired, a revoked, an expired and
a not-yet-valid key, a key accredited only for vaccination certificates, and a second issuer.
Every HTTP answer is checked for a 5xx on the way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from civic.clock import FixedClock
from civic.credentials import VACCINATION_VCT
from civic.jose import PrivateKey
from civic.statuslist import StatusList
from tests.services.verifier_deploy import STAFF, AppServer, Deployment
from tests.unit.verifier_city import ISSUER, YEAR, City
from verifier.app import Services, build_services, create_app
from verifier.settings import load_runtime

DAY = 86_400
BUSAN = "https://busan.example"
RETIRED_AT_AGO = 5 * DAY


def no_5xx(response: httpx.Response) -> httpx.Response:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    return response


@dataclass
class IssuerKeys:
    """The agency's extra keys, by kid, each accredited in the city's registry."""

    retired: PrivateKey
    revoked: PrivateKey
    expired: PrivateKey
    future: PrivateKey
    vaccination_only: PrivateKey
    busan: PrivateKey
    busan_shared: PrivateKey


def accredit_attack_keys(city: City, status_base: str) -> IssuerKeys:
    """Registry history for the trust attacks; each key publishes its lists under its own base
    (``{status_base}/{kid}``) so a list signed by one key is never the list of another."""
    keys = IssuerKeys(*(PrivateKey.generate() for _ in range(7)))
    now = city.now
    city.accredit_issuer("retired-1", keys.retired, status_base_url=f"{status_base}/retired-1")
    city.event("issuer.key.retire", issuer=ISSUER, kid="retired-1", retired_at=now - RETIRED_AT_AGO)
    city.accredit_issuer("revoked-1", keys.revoked, status_base_url=f"{status_base}/revoked-1")
    city.event("issuer.key.revoke", issuer=ISSUER, kid="revoked-1", revoked_at=now - RETIRED_AT_AGO)
    city.accredit_issuer(
        "expired-1",
        keys.expired,
        not_before=now - 2 * YEAR,
        not_after=now - DAY,
        status_base_url=f"{status_base}/expired-1",
    )
    city.accredit_issuer(
        "future-1", keys.future, not_before=now + DAY, status_base_url=f"{status_base}/future-1"
    )
    city.accredit_issuer(
        "vaccination-only",
        keys.vaccination_only,
        vct=[VACCINATION_VCT],
        status_base_url=f"{status_base}/vaccination-only",
    )
    city.accredit_issuer(
        "busan-1", keys.busan, issuer=BUSAN, status_base_url=f"{status_base}/busan-1"
    )
    # Busan also names a key "mapo-2026-1", Mapo's kid: kids are per issuer.
    city.accredit_issuer(
        city.kid, keys.busan_shared, issuer=BUSAN, status_base_url=f"{status_base}/busan-shared"
    )
    return keys


@dataclass
class Site:
    """A running verifier with its city, status server, fixed clock and an HTTP client."""

    deployment: Deployment
    services: Services
    clock: FixedClock
    client: httpx.Client
    keys: IssuerKeys

    @property
    def city(self) -> City:
        return self.deployment.city

    @property
    def url(self) -> str:
        return self.deployment.url

    def challenge(self) -> str:
        answer = no_5xx(self.client.post(f"{self.url}/challenges", headers=STAFF))
        assert answer.status_code == 201, answer.text
        nonce: str = answer.json()["nonce"]
        return nonce

    def verify_body(self, body: Mapping[str, Any]) -> httpx.Response:
        return no_5xx(self.client.post(f"{self.url}/verify", json=dict(body), headers=STAFF))

    def verify(self, credential: str, *, policy: str = "bar-entry", **present: Any) -> Any:
        """Present ``credential`` offline against a fresh challenge; the verdict JSON."""
        nonce = self.challenge()
        text = self.city.present(credential, nonce=nonce, at=self.clock(), **present)
        answer = self.verify_body({"policy": policy, "nonce": nonce, "presentation": text})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def publish(self, uri: str, token: str) -> None:
        """Serve ``token`` at ``uri`` (under the status server's base)."""
        prefix = self.deployment.status.base.removesuffix("/status")
        assert uri.startswith(prefix), uri
        self.deployment.status.tokens[uri[len(prefix) :]] = token

    def new_list(self, uri: str, size: int = 1024) -> StatusList:
        self.city.status_lists[uri] = StatusList(size, 2)
        return self.city.status_lists[uri]

    def post_request(self, policy: str = "bar-entry") -> httpx.Response:
        return no_5xx(
            self.client.post(f"{self.url}/requests", json={"policy": policy}, headers=STAFF)
        )


@contextmanager
def running_site(
    data_dir: Path,
    *,
    history: bool = True,
    policies_dir: Path | None = None,
    prepare: Callable[[Deployment], None] | None = None,
    **settings: Any,
) -> Iterator[Site]:
    """A verifier over the city (with the attack keys when ``history``) on 127.0.0.1.

    ``prepare`` may change the deployment (more registry history, other files) before the
    verifier reads its files."""
    deployment = Deployment.create(data_dir)
    city = deployment.city
    keys = (
        accredit_attack_keys(city, deployment.status.base)
        if history
        else IssuerKeys(*(PrivateKey.generate() for _ in range(7)))
    )
    if prepare is not None:
        prepare(deployment)
    deployment.write_files()  # the bundle now carries the extra history
    if policies_dir is not None:
        settings["policies_dir"] = policies_dir
    clock = FixedClock(city.now)
    services = build_services(load_runtime(deployment.settings(**settings)), now=clock)
    try:
        with (
            AppServer(create_app(services), deployment.port),
            httpx.Client(timeout=15) as client,
        ):
            yield Site(deployment, services, clock, client, keys)
    finally:
        deployment.close()
