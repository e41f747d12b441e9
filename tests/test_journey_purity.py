"""The journey core imports no presentation and no server library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

JOURNEY = Path(__file__).resolve().parent.parent / "onboard" / "journey"
MODULES = sorted(f"onboard.journey.{p.stem}" for p in JOURNEY.glob("*.py") if p.stem != "__init__")
CHECK = (
    "import importlib, sys; importlib.import_module(sys.argv[1]); "
    "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'aiomqtt', 'serial',"
    " 'can') or m.startswith(('onboard.display', 'onboard.portal', 'onboard.driver',"
    " 'onboard.link', 'onboard.web'))); print(' '.join(bad))"
)


@pytest.mark.parametrize("module", ["onboard.journey", *MODULES])
def test_a_journey_module_loads_no_presentation_and_no_aiohttp(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK, module], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_every_journey_module_is_checked() -> None:
    assert {"onboard.journey.runtime", "onboard.journey.tracker"} <= set(MODULES)
