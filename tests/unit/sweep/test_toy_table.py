"""sweep/toy_table.py: one row per toy run, a preference-free combiner's row without a ray point."""

import json
import subprocess
import sys

from tests.helpers import ROOT


def _run(root, name, combiner, preference, final):
    folder = root / name
    folder.mkdir(parents=True)
    record = {
        "task": "toy", "status": "ok", "complete": True, "combiner": combiner, "seed": 0,
        "preference": preference, "final_losses": final, "final_g": 0.0, "wall_time_s": 2.0,
        "settings": {"seed": 0, "combiner": combiner, "preference": preference},
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(record))


def test_epo_on_its_ray_and_mgda_without_one(tmp_path):
    _run(tmp_path, "epo", "epo", [0.2, 0.8], [0.8939, 0.2228])
    _run(tmp_path, "mgda", "mgda", None, [0.5174, 0.7313])  # MGDA records no preference
    out = subprocess.run(
        [sys.executable, "sweep/toy_table.py", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "| EPO | 0.2 | (0.8939, 0.2228) | 0.0006 |" in out
    assert "| MGDA | — | (0.5174, 0.7313) | — | 0.5174 |" in out
    assert "left out" not in out
