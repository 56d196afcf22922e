"""The architecture as a checked contract (pyproject.toml, [tool.importlinter]): the core never
imports a task, no task imports another, combiners stay pure math, Hydra stays at the edge."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.fail("lint-imports is missing: pip install -e '.[dev]' (import-linter)")
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_library_module_is_held_to_the_hydra_contract():
    """A module added beside the others cannot escape 'Hydra stays at the edge' by omission: the
    contract lists every top-level module of the package but the command-line edge and configs."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (hydra,) = [c for c in contracts["contracts"] if "hydra" in c.get("forbidden_modules", [])]
    package = ROOT / "moo_lightning"
    present = {
        f"moo_lightning.{p.stem}"
        for p in package.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    } - {"moo_lightning.cli", "moo_lightning.conf"}
    assert present == set(hydra["source_modules"])
