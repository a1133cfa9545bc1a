"""The adversarial catalogue: named attacks, each with the reason code it must produce.

Every module in this package declares ``ATTACKS``, a tuple of :class:`Attack`, and tests that
mount each attack against the real component (the core, or a service over HTTP on 127.0.0.1)
and assert its reason code. ``test_catalogue.py`` holds the catalogue to its promises: at least
60 attacks, unique names, every code a :class:`civic.errors.ReasonCode`, and a test per attack.
"""

from __future__ import annotations

from dataclasses import dataclass

from civic.errors import ReasonCode


@dataclass(frozen=True, slots=True)
class Attack:
    """One named attack: what the attacker does and the reason code that must stop it."""

    name: str
    code: ReasonCode
    surface: str  # "core", "verifier", "issuer", "registry", "witness", "wallet"
    description: str
