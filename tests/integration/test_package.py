"""An installed copy runs: the wheel carries the Hydra configs, and its entry point trains from
a folder that has no checkout in it."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_installed_wheel_runs_without_a_checkout(tmp_path):
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # built from a copy of what the wheel is made of: the build leaves nothing in the checkout
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "moo_lightning", source / "moo_lightning", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(wheels)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("moo_lightning-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {
        n.removeprefix("moo_lightning/conf/") for n in names if n.startswith("moo_lightning/conf/")
    }
    in_repo = {
        str(p.relative_to(ROOT / "moo_lightning" / "conf"))
        for p in (ROOT / "moo_lightning" / "conf").rglob("*.yaml")
    }
    assert in_repo and in_repo <= shipped, sorted(in_repo - shipped)
    assert any(n.endswith("entry_points.txt") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry).decode()
    assert "moo-train = moo_lightning.cli.train:cli" in scripts
    assert "moo-evaluate = moo_lightning.cli.evaluate:cli" in scripts

    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target)}  # ahead of the checkout's editable install
    run_dir = elsewhere / "run"
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys, moo_lightning.cli.train as t; print('FROM', t.__file__, file=sys.stderr); "
         "sys.argv = ['moo-train', *sys.argv[1:]]; t.cli()",
         "task=toy", "debug=fast", f"hydra.run.dir={run_dir}"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"FROM {target}" in proc.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "ok"
