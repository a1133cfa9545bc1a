"""civic-verifier: init, and offline verification against a trust bundle with no network."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from civic.encoding import json_dumps, json_loads_object
from civic.qr import pack, render_png
from tests.unit.verifier_city import CLIENT_ID, City
from verifier.cli import app

runner = CliRunner()
NONCE = "counter-challenge-0123456789"


@pytest.fixture(scope="module")
def city() -> City:
    return City(now=int(time.time()))


@pytest.fixture
def files(tmp_path: Path, city: City) -> dict[str, Path]:
    bundle, config = city.bundle()
    paths = {
        "bundle": tmp_path / "trust.json",
        "config": tmp_path / "trust-config.json",
        "status": tmp_path / "status.jwt",
    }
    paths["bundle"].write_text(json_dumps(bundle))
    paths["config"].write_text(json_dumps(city.trust_config_json(config)))
    paths["status"].write_text(city.status_token())
    return paths


def run_verify(files: dict[str, Path], city: City, *args: str, status: bool = True) -> Result:
    command = _args(files, city)
    if not status:
        at = command.index("--status-list")
        del command[at : at + 2]
    return runner.invoke(app, [*command, *args])


def test_offline_verify_of_scanned_text(files: dict[str, Path], city: City) -> None:
    text = pack(city.present(city.issue(), nonce=NONCE, at=city.now))
    result = run_verify(files, city, text)
    assert result.exit_code == 0, result.output
    verdict = json_loads_object(result.stdout)
    assert verdict["result"] == "valid"
    assert verdict["checkpoint_size"] == len(city.entries)
    assert verdict["credentials"][0]["claims"][0]["value"] is True


def test_offline_verify_of_a_qr_image(files: dict[str, Path], city: City, tmp_path: Path) -> None:
    image = tmp_path / "scan.png"
    image.write_bytes(render_png(pack(city.present(city.issue(), nonce=NONCE, at=city.now))))
    result = run_verify(files, city, str(image))
    assert result.exit_code == 0, result.output


def test_human_output(files: dict[str, Path], city: City) -> None:
    text = city.present(city.issue(), nonce=NONCE, at=city.now)
    command = [a for a in _args(files, city) if a != "--json"]
    result = runner.invoke(app, [*command, text])
    assert result.exit_code == 0
    assert "verdict: valid" in result.stdout
    assert "passed       signature [residency]" in result.stdout


def _args(files: dict[str, Path], city: City) -> list[str]:
    return [
        "verify",
        "--bundle",
        str(files["bundle"]),
        "--config",
        str(files["config"]),
        "--policy",
        "bar-entry",
        "--nonce",
        NONCE,
        "--audience",
        CLIENT_ID,
        "--status-list",
        f"{city.status_uri}={files['status']}",
        "--json",
    ]


def test_without_a_status_list_the_verdict_is_undetermined(
    files: dict[str, Path], city: City
) -> None:
    text = city.present(city.issue(), nonce=NONCE, at=city.now)
    result = run_verify(files, city, text, status=False)
    assert result.exit_code == 1
    verdict = json_loads_object(result.stdout)
    assert (verdict["result"], verdict["reason"]) == ("undetermined", "status_list_unavailable")


def test_stale_bundle(files: dict[str, Path], city: City) -> None:
    text = city.present(city.issue(), nonce=NONCE, at=city.now)
    result = run_verify(files, city, text, "--max-age", "1")
    assert result.exit_code == 1
    assert json_loads_object(result.stdout)["reason"] == "trust_stale"


@pytest.mark.parametrize(
    ("presentation", "reason"),
    [("garbage", "malformed_sd_jwt"), ("CW1:%%%%", "malformed_qr_payload")],
)
def test_invalid_presentations_exit_1(
    files: dict[str, Path], city: City, presentation: str, reason: str
) -> None:
    result = run_verify(files, city, presentation)
    assert result.exit_code == 1
    verdict = json_loads_object(result.stdout)
    assert (verdict["result"], verdict["reason"]) == ("invalid", reason)


def test_wrong_audience_and_nonce(files: dict[str, Path], city: City) -> None:
    text = city.present(city.issue(), nonce="another-nonce-0000000", at=city.now)
    verdict = json_loads_object(run_verify(files, city, text).stdout)
    assert verdict["reason"] == "kb_jwt_nonce_mismatch"


def test_usage_errors_exit_2(files: dict[str, Path], city: City, tmp_path: Path) -> None:
    command = _args(files, city)
    unknown = command[:]
    unknown[unknown.index("bar-entry")] = "no-such-policy"
    assert runner.invoke(app, [*unknown, "x"]).exit_code == 2
    missing = command[:]
    missing[missing.index(str(files["config"]))] = str(tmp_path / "missing.json")
    assert runner.invoke(app, [*missing, "x"]).exit_code == 2
    assert runner.invoke(app, ["verify", "x"]).exit_code == 2


def test_a_tampered_bundle_is_refused(files: dict[str, Path], city: City) -> None:
    document = json_loads_object(files["bundle"].read_text())
    document["entries"] = document["entries"][:-1]
    files["bundle"].write_text(json_dumps(document))
    result = run_verify(files, city, "x")
    assert result.exit_code == 1
    assert "log_root_mismatch" in result.output


def test_init_writes_private_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = runner.invoke(app, ["init", "--data-dir", str(data_dir), "--json"])
    assert result.exit_code == 0, result.output
    answer = json_loads_object(result.stdout)
    assert set(answer["jwk"]) == {"kty", "crv", "x"}
    for name in ("verifier.jwk", "api.key"):
        mode = (data_dir / name).stat().st_mode
        assert not mode & (stat.S_IRWXG | stat.S_IRWXO), name
    assert "d" in json_loads_object((data_dir / "verifier.jwk").read_text())
    assert runner.invoke(app, ["init", "--data-dir", str(data_dir)]).exit_code == 1
