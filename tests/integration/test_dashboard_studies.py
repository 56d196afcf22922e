"""sweep/dashboard.py --study: the combiners_mm section groups the league-table runs by combiner
(offline: the view's spec is built and printed, nothing is sent)."""

import importlib.util
import json

import pytest

from tests.helpers import ROOT

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
