"""Calendar helpers for credential claims: strict full-dates, ages and month periods.

- Dates in claims are RFC 3339 ``full-date`` (``YYYY-MM-DD``, ASCII digits only), the JSON Schema
  ``date`` format (JSON Schema 2020-12 Validation, section 7.3.1).
- Ages follow the Korean Civil Act: the day of birth counts (article 158) and a period of years
  ends on the day before the corresponding day, or on the last day of the month when that month
  has no corresponding day (article 160). A person born on 29 February therefore completes a
  year at the end of 28 February in a common year and is one year older from 1 March.
"""

from __future__ import annotations

import calendar
import re
from datetime import date

from civic.errors import MalformedError, ReasonCode, UsageError

AGE_THRESHOLDS: tuple[int, ...] = (14, 18, 19, 65)
"""The ``age_over_N`` flags a residency credential carries (14: consent age for personal data
under the Personal Information Protection Act, 19: civil majority, 18 and 65 for services)."""

_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_full_date(text: object) -> date:
    """Parse ``YYYY-MM-DD`` strictly. ``datetime.date.fromisoformat`` alone also accepts
    ``YYYYMMDD`` and week dates, which a claim must not carry."""
    if not isinstance(text, str) or not _FULL_DATE.fullmatch(text):
        raise MalformedError(ReasonCode.MALFORMED_INPUT, "date is not a YYYY-MM-DD full-date")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise MalformedError(ReasonCode.MALFORMED_INPUT, "date does not exist") from None


def is_full_date(text: object) -> bool:
    try:
        parse_full_date(text)
    except MalformedError:
        return False
    return True


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else parse_full_date(value)


def age_on(birth_date: date | str, on_date: date | str) -> int:
    """Completed years of age on ``on_date`` (Korean 'man' age, the legal age since 2023)."""
    born = _as_date(birth_date)
    on = _as_date(on_date)
    if on < born:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "reference date is before the birth date")
    # Tuple comparison makes a 29 February birthday fall on 1 March in common years, which is
    # what article 160(3) gives.
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def age_over_flags(birth_date: date | str, on_date: date | str) -> dict[str, bool]:
    """The ``age_over_N`` claims (N in :data:`AGE_THRESHOLDS`) as true on ``on_date``.

    ``age_over_N`` means "N years or older", as in the SD-JWT VC and ISO 18013-5 age claims.
    """
    age = age_on(birth_date, on_date)
    return {f"age_over_{n}": age >= n for n in AGE_THRESHOLDS}


def add_months(start: date, months: int) -> date:
    """The corresponding day ``months`` later, clamped to the end of a shorter month."""
    if months < 0:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "negative month count")
    index = start.year * 12 + (start.month - 1) + months
    year, month0 = divmod(index, 12)
    last_day = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(start.day, last_day))


def last_day_of_period(start: date, months: int) -> date:
    """The last day of a period of ``months`` months that begins on ``start`` (inclusive).

    Korean Civil Act article 160: the day before the corresponding day of the last month, or
    that month's last day when it has no corresponding day (a period from 31 August ends on
    28 or 29 February).
    """
    end_month_day = add_months(start, months)
    if end_month_day.day < start.day:  # no corresponding day: clamped to the month's end
        return end_month_day
    return date.fromordinal(end_month_day.toordinal() - 1)
