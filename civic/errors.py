"""One exception family for the whole system, rooted at :class:`CivicError`.

Every error carries a stable :class:`ReasonCode`. Reason codes are public API: verifiers put
them in verdicts, services put them in HTTP error bodies, and tests assert them. Messages are
for operators and must never contain personal data (claim values, names, birth dates): say
*what* failed, never *whose* data it was.

Parsers in this package raise :class:`MalformedError` and never leak ``ValueError``,
``binascii.Error``, ``UnicodeDecodeError`` or ``json.JSONDecodeError``.
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    """Stable machine-readable reasons. Values never change once released; add, never rename."""

    # Generic input handling
    MALFORMED_BASE64 = "malformed_base64"
    MALFORMED_JSON = "malformed_json"
    DUPLICATE_JSON_MEMBER = "duplicate_json_member"
    MALFORMED_UTF8 = "malformed_utf8"
    INPUT_TOO_LARGE = "input_too_large"
    NESTING_TOO_DEEP = "nesting_too_deep"
    NUMBER_OUT_OF_RANGE = "number_out_of_range"
    MALFORMED_INPUT = "malformed_input"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"

    # JOSE: JWS and JWK
    MALFORMED_JWS = "malformed_jws"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    ALG_KEY_MISMATCH = "alg_key_mismatch"
    CRIT_UNSUPPORTED = "crit_unsupported"
    TYP_MISMATCH = "typ_mismatch"
    SIGNATURE_INVALID = "signature_invalid"
    MALFORMED_JWK = "malformed_jwk"
    UNSUPPORTED_KEY_TYPE = "unsupported_key_type"
    PRIVATE_KEY_MATERIAL = "private_key_material"

    # DIDs
    MALFORMED_DID = "malformed_did"
    UNSUPPORTED_DID_METHOD = "unsupported_did_method"

    # SD-JWT (RFC 9901) and SD-JWT VC
    MALFORMED_SD_JWT = "malformed_sd_jwt"
    MALFORMED_DISCLOSURE = "malformed_disclosure"
    DISCLOSURE_DUPLICATE = "disclosure_duplicate"
    DISCLOSURE_UNREFERENCED = "disclosure_unreferenced"
    DIGEST_DUPLICATE = "digest_duplicate"
    CLAIM_NAME_COLLISION = "claim_name_collision"
    RESERVED_CLAIM_NAME = "reserved_claim_name"
    SD_ALG_UNSUPPORTED = "sd_alg_unsupported"
    CLAIM_MISSING = "claim_missing"
    CLAIM_NOT_DISCLOSABLE = "claim_not_disclosable"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    IAT_IN_FUTURE = "iat_in_future"
    CNF_MISSING = "cnf_missing"
    KB_JWT_MISSING = "kb_jwt_missing"
    KB_JWT_UNEXPECTED = "kb_jwt_unexpected"
    KB_JWT_MALFORMED = "kb_jwt_malformed"
    KB_JWT_TYP = "kb_jwt_typ"
    KB_JWT_SIGNATURE_INVALID = "kb_jwt_signature_invalid"
    KB_JWT_AUD_MISMATCH = "kb_jwt_aud_mismatch"
    KB_JWT_NONCE_MISMATCH = "kb_jwt_nonce_mismatch"
    KB_JWT_NONCE_REUSED = "kb_jwt_nonce_reused"
    KB_JWT_SD_HASH_MISMATCH = "kb_jwt_sd_hash_mismatch"
    KB_JWT_IAT_STALE = "kb_jwt_iat_stale"
    KB_JWT_IAT_IN_FUTURE = "kb_jwt_iat_in_future"

    # Credential types and schemas
    VCT_UNKNOWN = "vct_unknown"
    SCHEMA_INVALID = "schema_invalid"
    PROGRAMME_RULE_FAILED = "programme_rule_failed"

    # Token Status List
    STATUS_INVALID = "status_invalid"
    STATUS_SUSPENDED = "status_suspended"
    STATUS_LIST_MALFORMED = "status_list_malformed"
    STATUS_LIST_TOO_LARGE = "status_list_too_large"
    STATUS_LIST_SIGNATURE_INVALID = "status_list_signature_invalid"
    STATUS_LIST_EXPIRED = "status_list_expired"
    STATUS_LIST_SUBJECT_MISMATCH = "status_list_subject_mismatch"
    STATUS_LIST_UNAVAILABLE = "status_list_unavailable"
    STATUS_INDEX_OUT_OF_RANGE = "status_index_out_of_range"
    STATUS_CLAIM_MALFORMED = "status_claim_malformed"
    STATUS_VALUE_UNKNOWN = "status_value_unknown"

    # Merkle log (RFC 9162)
    MALFORMED_PROOF = "malformed_proof"
    INCLUSION_PROOF_INVALID = "inclusion_proof_invalid"
    CONSISTENCY_PROOF_INVALID = "consistency_proof_invalid"
    INDEX_OUT_OF_RANGE = "index_out_of_range"

    # Signed notes, checkpoints, cosignatures (C2SP)
    MALFORMED_NOTE = "malformed_note"
    MALFORMED_NOTE_KEY = "malformed_note_key"
    NOTE_AMBIGUOUS_KEY = "note_ambiguous_key"
    NOTE_SIGNATURE_INVALID = "note_signature_invalid"
    NOTE_NO_VERIFIABLE_SIGNATURE = "note_no_verifiable_signature"
    MALFORMED_CHECKPOINT = "malformed_checkpoint"
    CHECKPOINT_ORIGIN_MISMATCH = "checkpoint_origin_mismatch"
    MALFORMED_COSIGNATURE = "malformed_cosignature"
    COSIGNATURE_INVALID = "cosignature_invalid"
    WITNESS_QUORUM_NOT_MET = "witness_quorum_not_met"
    LOG_ORIGIN_UNKNOWN = "log_origin_unknown"
    WITNESS_SIZE_CONFLICT = "witness_size_conflict"
    WITNESS_REJECTED = "witness_rejected"
    WITNESS_UNAVAILABLE = "witness_unavailable"

    # Trust registry: entries, governance, trust state, client sync (docs/registry.md)
    REGISTRY_ENTRY_MALFORMED = "registry_entry_malformed"
    REGISTRY_ENTRY_DUPLICATE = "registry_entry_duplicate"
    GOVERNANCE_SIGNATURE_INVALID = "governance_signature_invalid"
    GOVERNANCE_QUORUM_NOT_MET = "governance_quorum_not_met"
    DUPLICATE_KID = "duplicate_kid"
    ISSUER_UNKNOWN = "issuer_unknown"
    KEY_UNKNOWN = "key_unknown"
    KEY_NOT_ACCREDITED_FOR_VCT = "key_not_accredited_for_vct"
    KEY_OUTSIDE_WINDOW = "key_outside_window"
    KEY_REVOKED = "key_revoked"
    KEY_RETIRED = "key_retired"
    VERIFIER_UNKNOWN = "verifier_unknown"
    VERIFIER_REVOKED = "verifier_revoked"
    VERIFIER_CLAIMS_NOT_ACCREDITED = "verifier_claims_not_accredited"
    LOG_ROLLBACK = "log_rollback"
    LOG_FORK = "log_fork"
    LOG_ROOT_MISMATCH = "log_root_mismatch"
    LOG_UNAVAILABLE = "log_unavailable"
    TRUST_STALE = "trust_stale"
    MALFORMED_BUNDLE = "malformed_bundle"
    WITNESS_KEY_MISMATCH = "witness_key_mismatch"

    # DCQL (OpenID4VP 1.0 section 6)
    MALFORMED_DCQL = "malformed_dcql"
    DCQL_UNSATISFIED = "dcql_unsatisfied"

    # Verifier: policies, verdicts, OpenID4VP requests (civic/policy.py, civic/verdict.py)
    MALFORMED_POLICY = "malformed_policy"
    POLICY_NOT_SATISFIED = "policy_not_satisfied"
    STATUS_URI_NOT_ACCREDITED = "status_uri_not_accredited"
    STATUS_CLAIM_MISSING = "status_claim_missing"
    MALFORMED_VP_TOKEN = "malformed_vp_token"
    NONCE_UNKNOWN = "nonce_unknown"
    REQUEST_EXPIRED = "request_expired"
    REQUEST_ALREADY_ANSWERED = "request_already_answered"

    # QR codec
    MALFORMED_QR_PAYLOAD = "malformed_qr_payload"
    QR_UNSUPPORTED_VERSION = "qr_unsupported_version"
    QR_NOT_FOUND = "qr_not_found"
    QR_TOO_LARGE = "qr_too_large"

    # Holder wallet (wallet_cli): its store, and the services it talks to
    WALLET_NOT_FOUND = "wallet_not_found"
    WALLET_EXISTS = "wallet_exists"
    WALLET_PASSPHRASE_WRONG = "wallet_passphrase_wrong"
    WALLET_CORRUPTED = "wallet_corrupted"
    WALLET_BUSY = "wallet_busy"
    WALLET_AGENT_UNAVAILABLE = "wallet_agent_unavailable"
    WALLET_AGENT_MISMATCH = "wallet_agent_mismatch"
    WALLET_AGENT_UNTRUSTED = "wallet_agent_untrusted"
    HOLDER_KEY_MISMATCH = "holder_key_mismatch"
    CONSENT_DECLINED = "consent_declined"
    ISSUER_ERROR = "issuer_error"
    VERIFIER_ERROR = "verifier_error"
    SERVICE_UNAVAILABLE = "service_unavailable"


class CivicError(Exception):
    """Root of every error this system raises on purpose.

    ``detail`` is an operator-facing explanation free of personal data.
    """

    reason: ReasonCode
    detail: str

    def __init__(self, reason: ReasonCode, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail or reason.value.replace("_", " ")
        super().__init__(f"{reason.value}: {self.detail}")


class MalformedError(CivicError):
    """The input could not be parsed: wrong encoding, wrong structure, over a size limit."""


class VerificationError(CivicError):
    """The input parsed but failed a check: a signature, a digest, a time, a policy."""


class UsageError(CivicError):
    """The caller asked for something this API refuses (e.g. signing with a public key)."""
