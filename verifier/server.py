"""ASGI entry point for ``uvicorn verifier.server:app`` (and ``civic-verifier serve``): the app
built from the environment's ``CIVIC_VERIFIER_*`` settings, once per worker process."""

from __future__ import annotations

from verifier.app import build_services, create_app
from verifier.settings import VerifierSettings, load_runtime

app = create_app(build_services(load_runtime(VerifierSettings())))
