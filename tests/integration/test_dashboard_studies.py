"""sweep/dashboard.py --study: the combiners_mm section groups the league-table runs by combiner
(offline: the view's spec is built and printed, nothing is sent)."""

import importlib.util
import json
import time

import pytest

from tests.helpers import ROOT, wandb_records

pytest.importorskip("wandb_workspaces")


def _dashboard():
    spec = importlib.util.spec_from_file_location("dashboard", ROOT / "sweep/dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_combiners_mm_section_bars_accuracy_and_wall_time_by_combiner(monkeypatch, capsys):
    dashboard = _dashboard()
    spec = dashboard.view_spec(dashboard.build_workspace("me", "proj", studies=["combiners_mm"]))
    sections = spec["spec"]["section"]["panelBankConfig"]["sections"]
    (study,) = [s for s in sections if "combiners_mm" in s["name"]]
    bars = [p["config"] for p in study["panels"] if p["viewType"] == "Bar Chart"]
    assert [b["metrics"] for b in bars] == [
        ["test/acc_1"],
        ["test/acc_2"],
        ["wall_time_s"],
        ["test/hv_error"],
    ]
    for b in bars:  # mean ± std over the seeds of each combiner
        assert (b["groupBy"], b["groupAgg"], b["groupArea"]) == (
            "labels.value.combiner",
            "mean",
            "stddev",
        )
    # without --study the view is the one it was
    plain = dashboard.view_spec(dashboard.build_workspace("me", "proj"))
    assert not [
        s
        for s in plain["spec"]["section"]["panelBankConfig"]["sections"]
        if "combiners_mm" in s["name"]
    ]

    def no_save(self):
        raise AssertionError("saved without --save")

    monkeypatch.setattr(dashboard.ws.Workspace, "save", no_save)
    assert dashboard.main(["--entity", "me", "--project", "p", "--study", "combiners_mm"]) == 0
    assert "test/acc_1" in json.dumps(json.loads(capsys.readouterr().out))
    with pytest.raises(SystemExit, match="studies with a section"):
        dashboard.main(["--entity", "me", "--project", "p", "--study", "nope"])


def test_the_dashboard_section_shows_the_league_table(capsys):
    dashboard = _dashboard()
    spec = dashboard.view_spec(dashboard.build_workspace("me", "proj", studies=["combiners_mm"]))
    assert '"league_table"' in json.dumps(spec)


def test_combiner_table_logs_the_league_table_offline(monkeypatch, tmp_path, capsys):
    pytest.importorskip("wandb")
    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    sweep = tmp_path / "sweep"
    for combiner, err in (("ls", 0.10), ("upgrad", 0.08)):
        for seed in (0, 1):
            folder = sweep / f"{combiner}{seed}"
            folder.mkdir(parents=True)
            m = {
                "task": "multi_mnist", "status": "ok", "complete": True, "members": 1,
                "combiner": combiner, "seed": seed, "wall_time_s": 1.0,
                "test_errors": [[err + 0.01 * seed, 0.2]],
                "settings": {"seed": seed, "combiner": combiner},
            }  # fmt: skip
            (folder / "metrics.json").write_text(json.dumps(m))
    spec = importlib.util.spec_from_file_location("table", ROOT / "sweep/combiner_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    out = tmp_path / "report"
    assert table.main([str(sweep), "--out", str(out), "--wandb", "--project", "t"]) == 0
    assert "W&B run: " in capsys.readouterr().out
    (log,) = out.glob("wandb/offline-run-*/run-*.wandb")
    deadline, records = time.monotonic() + 30, []
    while not any(r.WhichOneof("record_type") == "exit" for r in records):
        # wandb's service may still be writing the file when finish() returns
        assert time.monotonic() < deadline, "no exit record in the offline run"
        time.sleep(0.1)
        try:
            records = list(wandb_records(log))
        except Exception:  # a partly written file
            records = []
    summary = {}
    for rec in records:
        if rec.WhichOneof("record_type") == "summary":
            for u in rec.summary.update:
                summary[u.key or "/".join(u.nested_key)] = json.loads(u.value_json)
    assert summary["league_rows"] == 2 and summary["delta_m/ls"] == 0.0
    assert summary["delta_m/upgrad"] > 0 and summary["league_table/_type"] == "table-file"
    assert summary["league_table/nrows"] == 2
