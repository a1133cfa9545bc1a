"""The catalogue keeps its promises: enough attacks, unique names, real reason codes, and a test
that mounts each one (an attack is exercised when its name is a parameter id of a test in the
module that declares it, as collected by pytest itself)."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from civic.errors import ReasonCode
from tests import security
from tests.security import Attack

MINIMUM_ATTACKS = 60
HERE = Path(security.__file__).parent
REPO = HERE.parent.parent


def attack_modules() -> list[ModuleType]:
    names = sorted(
        info.name
        for info in pkgutil.iter_modules([str(HERE)])
        if info.name.startswith("test_") and info.name != "test_catalogue"
    )
    return [importlib.import_module(f"tests.security.{name}") for name in names]


def declared_attacks() -> dict[str, list[Attack]]:
    return {
        module.__name__.rsplit(".", 1)[1]: list(getattr(module, "ATTACKS", ()))
        for module in attack_modules()
    }


def test_every_module_declares_its_attacks() -> None:
    for module, attacks in declared_attacks().items():
        assert attacks, f"{module} declares no ATTACKS"
        assert all(isinstance(attack, Attack) for attack in attacks), module


def test_catalogue_is_large_enough_with_unique_names_and_real_codes() -> None:
    attacks = [attack for group in declared_attacks().values() for attack in group]
    names = [attack.name for attack in attacks]
    assert len(attacks) >= MINIMUM_ATTACKS, f"only {len(attacks)} attacks"
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"attack names used twice: {duplicates}"
    for attack in attacks:
        assert re.fullmatch(r"[a-z0-9_]+", attack.name), attack.name
        assert isinstance(attack.code, ReasonCode), attack.name
        assert attack.description.strip(), attack.name


@pytest.fixture(scope="module")
def collected_ids() -> dict[str, set[str]]:
    """Parameter ids per module, exactly as pytest collects them."""
    modules = sorted(str(path.relative_to(REPO)) for path in HERE.glob("test_*.py"))
    modules = [m for m in modules if not m.endswith("test_catalogue.py")]
    listing = subprocess.run(  # noqa: S603 -- this interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            *modules,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert listing.returncode == 0, listing.stdout[-2000:] + listing.stderr[-2000:]
    ids: dict[str, set[str]] = {}
    for line in listing.stdout.splitlines():
        match = re.fullmatch(r"tests/security/(test_\w+)\.py::[\w:]+\[(.+)\]", line.strip())
        if match:
            ids.setdefault(match.group(1), set()).update(match.group(2).split("-"))
    return ids


def test_every_attack_is_mounted_by_a_test(collected_ids: dict[str, set[str]]) -> None:
    unmounted = [
        f"{module}:{attack.name}"
        for module, attacks in declared_attacks().items()
        for attack in attacks
        if attack.name not in collected_ids.get(module, set())
    ]
    assert not unmounted, f"attacks with no test: {unmounted}"
