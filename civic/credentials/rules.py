"""Programme rules of the Seoul Youth Allowance (서울시 청년수당) over credential claims.

The rules the city publishes for the allowance, as far as a verifier can check them from
claims: applicants aged 19 to 34 on the day they apply (만 나이, see :mod:`.dates`), resident
in Seoul, paid 500,000 KRW a month for at most six months. A six-month period ends on the day
before the corresponding day six months on (Korean Civil Act article 160), so 1 June to
30 November is six months and 1 June to 1 December is not.

The functions are pure. :func:`check_youth_allowance_rules` lists every violation as a stable
rule identifier with a value-free explanation; :func:`enforce_youth_allowance_rules` raises
``PROGRAMME_RULE_FAILED`` naming them. ``allowance_status`` is not a rule here: whether a
suspended allowance may still be shown is the verifier policy's call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from civic.credentials.dates import age_on, last_day_of_period, parse_full_date
from civic.errors import CivicError, ReasonCode, VerificationError

MIN_AGE: Final = 19
MAX_AGE: Final = 34
MONTHLY_AMOUNT_KRW: Final = 500_000
MAX_PERIOD_MONTHS: Final = 6
SEOUL_REGION: Final = "Seoul"
PROGRAMME_ID_PREFIX: Final = "seoul-youth-allowance-"


@dataclass(frozen=True)
class RuleViolation:
    rule: str
    """Stable identifier, e.g. ``age_19_to_34``."""
    detail: str
    """Operator-facing explanation, without claim values."""


def _date_claim(value: object) -> date | None:
    try:
        return parse_full_date(value)
    except CivicError:
        return None


def check_youth_allowance_rules(
    claims: Mapping[str, Any],
    birth_date: date | str,
    application_date: date | str,
    *,
    residence_region: str | None = None,
) -> list[RuleViolation]:
    """Every programme rule that ``claims`` (youth allowance subject claims) break.

    ``birth_date`` comes from a credential that carries it (residency); ``residence_region``,
    when given, is the ``address.region`` of the holder's residency credential and must be
    Seoul as well as the allowance's own ``eligibility.seoul_resident`` fact.
    """
    violations: list[RuleViolation] = []

    def fail(rule: str, detail: str) -> None:
        violations.append(RuleViolation(rule, detail))

    programme = claims.get("programme_id")
    if not (isinstance(programme, str) and programme.startswith(PROGRAMME_ID_PREFIX)):
        fail("programme", "programme_id is not a Seoul Youth Allowance round")

    try:
        born = parse_full_date(birth_date) if isinstance(birth_date, str) else birth_date
        applied = (
            parse_full_date(application_date)
            if isinstance(application_date, str)
            else application_date
        )
        age = age_on(born, applied)
    except CivicError:
        fail("age_19_to_34", "birth date or application date missing or invalid")
    else:
        if not MIN_AGE <= age <= MAX_AGE:
            fail("age_19_to_34", "holder not aged 19 to 34 on the application date")

    eligibility = claims.get("eligibility")
    facts = eligibility if isinstance(eligibility, Mapping) else {}
    if facts.get("age_19_to_34") is not True:
        fail("age_19_to_34", "eligibility.age_19_to_34 is not true")
    if facts.get("seoul_resident") is not True:
        fail("seoul_residency", "eligibility.seoul_resident is not true")
    if residence_region is not None and residence_region != SEOUL_REGION:
        fail("seoul_residency", "residency credential region is not Seoul")

    amount = claims.get("monthly_amount")
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int | float)
        or amount != MONTHLY_AMOUNT_KRW
    ):
        fail("monthly_amount", "monthly_amount is not 500,000")
    if claims.get("currency") != "KRW":
        fail("monthly_amount", "currency is not KRW")

    period = claims.get("period")
    start = _date_claim(period.get("start")) if isinstance(period, Mapping) else None
    end = _date_claim(period.get("end")) if isinstance(period, Mapping) else None
    if start is None or end is None:
        fail("period", "period start or end missing or invalid")
    elif end < start:
        fail("period", "period ends before it starts")
    elif end > last_day_of_period(start, MAX_PERIOD_MONTHS):
        fail("period", "period longer than 6 months")
    return violations


def enforce_youth_allowance_rules(
    claims: Mapping[str, Any],
    birth_date: date | str,
    application_date: date | str,
    *,
    residence_region: str | None = None,
) -> None:
    """Raise ``PROGRAMME_RULE_FAILED`` naming every broken rule (no claim values)."""
    violations = check_youth_allowance_rules(
        claims, birth_date, application_date, residence_region=residence_region
    )
    if violations:
        rules = sorted({v.rule for v in violations})
        raise VerificationError(
            ReasonCode.PROGRAMME_RULE_FAILED, "youth allowance rules failed: " + ", ".join(rules)
        )
