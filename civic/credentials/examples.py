"""Example subject claims for the three credential types (fictional people, realistic shapes).

All three belong to one fictional citizen, so that a demo wallet can hold a residency, a
youth allowance and a vaccination credential that agree with each other: 김서연, born
15 March 1998, living in Mapo-gu, Seoul. A second residency example (an older resident of
Busan) gives tests a credential that fails the youth allowance policy.

The data is frozen here; :meth:`civic.credentials.types.CredentialType.example_claims` hands
out deep copies.
"""

from __future__ import annotations

from typing import Any, Final

RESIDENCY_EXAMPLE: Final[dict[str, Any]] = {
    "given_name": "서연",
    "family_name": "김",
    "birth_date": "1998-03-15",
    "address": {"region": "Seoul", "locality": "Mapo-gu"},
    "resident_since": "2021-09-01",
    "age_over_14": True,
    "age_over_18": True,
    "age_over_19": True,
    "age_over_65": False,
}

RESIDENCY_EXAMPLE_BUSAN: Final[dict[str, Any]] = {
    "given_name": "영호",
    "family_name": "박",
    "birth_date": "1956-11-02",
    "address": {"region": "Busan", "locality": "Haeundae-gu"},
    "resident_since": "1988-04-20",
    "age_over_14": True,
    "age_over_18": True,
    "age_over_19": True,
    "age_over_65": True,
}

YOUTH_ALLOWANCE_EXAMPLE: Final[dict[str, Any]] = {
    "family_name": "김",
    "given_name": "서연",
    "programme_id": "seoul-youth-allowance-2025",
    "monthly_amount": 500000,
    "currency": "KRW",
    "period": {"start": "2025-06-01", "end": "2025-11-30"},
    "allowance_status": "active",
    "eligibility": {
        "age_19_to_34": True,
        "seoul_resident": True,
        "not_employed_full_time": True,
        "household_income_within_150_percent_median": True,
        "not_enrolled_as_student": True,
    },
}

YOUTH_ALLOWANCE_APPLICATION_DATE: Final = "2025-04-14"
"""The day the example holder applied (she was 27)."""

VACCINATION_EXAMPLE: Final[dict[str, Any]] = {
    "family_name": "김",
    "given_name": "서연",
    "birth_date": "1998-03-15",
    "vaccination": {
        "tg": "840539006",
        "vp": "1119349007",
        "mp": "EU/1/20/1528",
        "ma": "ORG-100030215",
        "dn": 3,
        "sd": 3,
        "dt": "2022-01-14",
        "co": "KR",
        "is": "Korea Disease Control and Prevention Agency",
        "ci": "URN:UVCI:01:KR:KDCA/20220114/7F3K9Q2M",
    },
}
