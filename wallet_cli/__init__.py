"""The holder wallet CLI, ``civic-wallet`` (issue 6).

A citizen's wallet: an encrypted local store (:mod:`wallet_cli.store`, Argon2id + SecretBox),
credentials received over OpenID4VCI 1.0 (:mod:`wallet_cli.oid4vci`), presented over
OpenID4VP 1.0 or as an offline QR (:mod:`wallet_cli.oid4vp`), with the trust registry deciding
which issuers and verifiers are believed (:mod:`wallet_cli.trust`). :mod:`wallet_cli.cli` is the
Typer adapter; the decisions (what to disclose, what to ask consent for, whether a request is
acceptable) are pure functions in the protocol modules.
"""
