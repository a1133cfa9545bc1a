"""Issuer service (OpenID4VCI, status lists). Not built yet: see the Issuer issue."""
