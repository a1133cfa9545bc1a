"""Issuer service: OpenID4VCI 1.0 issuance of civic SD-JWT VCs, status lists, admin API.

Modules: :mod:`issuer.oid4vci` (the protocol's pure parts), :mod:`issuer.issuance` (offers,
tokens, nonces, credentials over the database), :mod:`issuer.admin` (API keys, offers,
credential status), :mod:`issuer.statuslists` (random index allocation, Status List Tokens),
:mod:`issuer.keys` (file signers behind ``civic.jose.Signer``), :mod:`issuer.trust` (registry
accreditation before signing), :mod:`issuer.db`, :mod:`issuer.settings`, :mod:`issuer.app`
(FastAPI; routes in :mod:`issuer.api`), :mod:`issuer.cli` (``civic-issuer``) and
:mod:`issuer.testing` (a loopback issuer with an in-memory registry, for tests and demos).
"""
