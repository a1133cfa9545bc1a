"""Civic credential types: SD-JWT VC ``vct`` values, JSON Schemas, display names, rules.

See :mod:`civic.credentials.types` (draft-ietf-oauth-sd-jwt-vc section 3, JSON Schema 2020-12)
and :mod:`civic.credentials.rules` (Seoul Youth Allowance programme rules).
"""

from __future__ import annotations

from civic.credentials.dates import (
    AGE_THRESHOLDS,
    age_on,
    age_over_flags,
    last_day_of_period,
    parse_full_date,
)
from civic.credentials.rules import (
    RuleViolation,
    check_youth_allowance_rules,
    enforce_youth_allowance_rules,
)
from civic.credentials.types import (
    CREDENTIAL_TYPES,
    RESIDENCY_VCT,
    VACCINATION_VCT,
    YOUTH_ALLOWANCE_VCT,
    ClaimPath,
    CredentialType,
    Lang,
    get_type,
    get_type_by_key,
    validate_claims,
)
from civic.sdjwtvc import NEVER_DISCLOSABLE, REGISTERED_CLAIMS

__all__ = [
    "AGE_THRESHOLDS",
    "CREDENTIAL_TYPES",
    "NEVER_DISCLOSABLE",
    "REGISTERED_CLAIMS",
    "RESIDENCY_VCT",
    "VACCINATION_VCT",
    "YOUTH_ALLOWANCE_VCT",
    "ClaimPath",
    "CredentialType",
    "Lang",
    "RuleViolation",
    "age_on",
    "age_over_flags",
    "check_youth_allowance_rules",
    "enforce_youth_allowance_rules",
    "get_type",
    "get_type_by_key",
    "last_day_of_period",
    "parse_full_date",
    "validate_claims",
]
