"""Verifier service (OpenID4VP, offline QR, policies). Not built yet: see the Verifier issue."""
