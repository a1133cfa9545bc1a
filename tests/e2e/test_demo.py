"""``python -m demo.core`` runs the core end to end: this runs it in a scratch directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from civic.qr import decode_png, unpack
from civic.sdjwt import parse_sd_jwt

ROOT = Path(__file__).resolve().parents[2]


def test_core_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo.core"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "VERDICT: valid" in result.stdout
    assert "VERDICT: invalid (kb_jwt_nonce_reused)" in result.stdout
    png = tmp_path / "out" / "presentation.png"
    presentation = unpack(decode_png(png.read_bytes()))
    parsed = parse_sd_jwt(presentation)
    assert parsed.kb_jwt is not None
    assert len(parsed.disclosures) == 3  # address (container), its region, age_over_19
