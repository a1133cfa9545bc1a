"""Civic Wallet shared core: pure, typed building blocks with no network and no database.

Modules: :mod:`civic.errors` (one exception family with reason codes), :mod:`civic.encoding`
(strict base64 and JSON), :mod:`civic.clock` (injectable time and randomness), :mod:`civic.jose`
(JWK and compact JWS), :mod:`civic.did`, :mod:`civic.sdjwt`, :mod:`civic.merkle`,
:mod:`civic.note`, :mod:`civic.statuslist`, :mod:`civic.credentials`, :mod:`civic.dcql`,
:mod:`civic.qr`.
"""
