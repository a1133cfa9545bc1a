"""The trust registry service: a witnessed transparency log of accreditation events.

Implements docs/registry.md, "HTTP API of the registry" and "One sequencer": a FastAPI app
(:mod:`registry.app`) over sqlmodel tables (:mod:`registry.db`) with the Merkle node store
(:mod:`registry.store`), a single sequencer that validates every entry against the trust state
before appending it (:mod:`registry.sequencer`), a checkpoint publisher that gathers witness
cosignatures (:mod:`registry.publisher`), HTTP clients (:mod:`registry.client`) and the
``civic-registry`` command line (:mod:`registry.cli`). The witness service lives in
:mod:`registry.witness`.
"""
