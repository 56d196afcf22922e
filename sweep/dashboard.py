"""A W&B workspace (saved view) that compares combiners, built with wandb-workspaces.

    python sweep/dashboard.py --entity E --project P [--group G ...] [--losses KEY] [--save]

Panels, each grouped by the combiner (the run config's ``labels.combiner``, written by
logger=wandb) with the mean ± std over the runs of a combiner (its seeds):

- validation: val/acc and val/acc_best against the step;
- test: test/acc per combiner (bars);
- loss space: the final losses of every run (summary KEY/0 against KEY/1, KEY =
  final_train_losses for the GLUE tasks, final_losses for task=toy);
- weights: the combiner weights train/weight_0 and train/weight_1 against the step;
- figures: the runs' trajectory.png / loss_space.png.

--study adds a section per study (repeatable): ``combiners_mm`` (sweep=combiners_mm, the
Multi-MNIST league table): test/acc_1 and test/acc_2 (the TaskAccuracy callback's scalars) and
wall_time_s per combiner, bars with mean ± std over seeds, and the league table with Δm% and
p against LS (a comparison with the LS runs' mean, which a per-run panel cannot compute:
``sweep/combiner_table.py --wandb`` logs it as ``league_table`` in a report run; keep that
run in the view, e.g. no --group filter); ``combiners_sst2`` (sweep=combiners_sst2): test and
best validation accuracy and wall time per combiner, and the table with p against LS that
``sweep/report.py --baseline CE+LS --wandb`` logs (``table1``).

--group keeps the runs of the given W&B groups (repeat it to compare several; a group holds the
runs of one setting, every combiner and seed). Without --save the view's spec (what --save
uploads) is printed as JSON and nothing is sent; --save needs network and a W&B API key.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws

GROUP_BY = "labels.combiner"  # the run config key logger=wandb writes (moo_lightning/loggers.py)
STEP = "trainer/global_step"  # Lightning's x axis
# characters wandb-workspaces rewrites in a filter's value (= to ==, < to <=, ...) or cannot quote
_MANGLED = ("=", "<", ">", "'", '"')


def _by_combiner() -> dict:
    return {
        "groupby": wr.Config(GROUP_BY),
        "groupby_aggfunc": "mean",
        "groupby_rangefunc": "stddev",
    }


def _curve(title: str, metric: str) -> wr.LinePlot:
    return wr.LinePlot(title=title, x=STEP, y=[metric], title_x="step", **_by_combiner())


def _bars(title: str, metrics: list[str]) -> wr.BarPlot:
    return wr.BarPlot(title=title, metrics=metrics, orientation="v", **_by_combiner())


# the sections each study adds (--study)
STUDIES = {
    "combiners_mm": lambda: ws.Section(
        name="Multi-MNIST league (sweep=combiners_mm; mean ± std over seeds, by combiner)",
        is_open=True,
        panels=[
            _bars("test accuracy, task 1 (top-left digit)", ["test/acc_1"]),
            _bars("test accuracy, task 2 (bottom-right digit)", ["test/acc_2"]),
            _bars("wall time per run (s)", ["wall_time_s"]),
            _bars("test HV of the errors, ref (0.9, 0.9)", ["test/hv_error"]),
            # Δm% and p against LS: the league table that `combiner_table.py --wandb` logs
            wr.WeavePanelSummaryTable(table_name="league_table"),
        ],
    ),
    "combiners_sst2": lambda: ws.Section(
        name="SST-2 N=20 combiners (sweep=combiners_sst2; mean ± std over seeds, by combiner)",
        is_open=True,
        panels=[
            _bars("test accuracy", ["test/acc"]),
            _bars("best validation accuracy", ["val/acc_best"]),
            _bars("wall time per run (s)", ["wall_time_s"]),
            # p against LS: the table `report.py --baseline CE+LS --wandb` logs
            wr.WeavePanelSummaryTable(table_name="table1"),
        ],
    ),
}


def build_workspace(
    entity: str,
    project: str,
    groups: list[str] | tuple[str, ...] = (),
    losses: str = "final_train_losses",
    name: str = "Combiners compared",
    studies: list[str] | tuple[str, ...] = (),
) -> ws.Workspace:
    """The workspace object (nothing is sent until its save())."""
    sections = [
        ws.Section(
            name="Validation (mean ± std over seeds, by combiner)",
            is_open=True,
            panels=[
                _curve("val/acc by combiner", "val/acc"),
                _curve("val/acc_best by combiner", "val/acc_best"),
            ],
        ),
        ws.Section(
            name="Test accuracy (mean ± std over seeds, by combiner)",
            is_open=True,
            panels=[
                wr.BarPlot(
                    title="test/acc by combiner",
                    metrics=["test/acc"],
                    orientation="v",
                    **_by_combiner(),
                ),
            ],
        ),
        ws.Section(
            name="Loss space (final losses, one point per run)",
            is_open=True,
            panels=[
                wr.ScatterPlot(
                    title=f"{losses}: objective 1 against objective 2",
                    x=wr.SummaryMetric(f"{losses}/0"),
                    y=wr.SummaryMetric(f"{losses}/1"),
                ),
            ],
        ),
        ws.Section(
            name="Combiner weights over steps (mean ± std over seeds, by combiner)",
            is_open=True,
            panels=[
                _curve("weight of objective 1", "train/weight_0"),
                _curve("weight of objective 2", "train/weight_1"),
            ],
        ),
        ws.Section(
            name="Figures",
            panels=[
                wr.MediaBrowser(
                    title="run figures",
                    media_keys=["figures/trajectory", "figures/loss_space"],
                ),
            ],
        ),
    ]
    for study in studies:
        if study not in STUDIES:
            raise ValueError(
                f"study {study!r}: the studies with a section are {', '.join(STUDIES)}"
            )
        sections.append(STUDIES[study]())
    for group in groups:
        if set(group) & set(_MANGLED):
            raise ValueError(
                f"group {group!r}: wandb-workspaces rewrites {' '.join(_MANGLED)} inside filter "
                "values, so this group cannot be selected by name; name groups without them"
            )
    filters = [ws.Metric("Group").isin(list(groups))] if groups else ""
    return ws.Workspace(
        entity=entity,
        project=project,
        name=name,
        sections=sections,
        settings=ws.WorkspaceSettings(x_axis=STEP, max_runs=200),  # combiners × seeds
        runset_settings=ws.RunsetSettings(
            filters=filters,
            # the runs table grouped the way the panels are (panels follow the table's grouping
            # by default)
            groupby=[ws.Config(GROUP_BY)],
            pinned_columns=["summary:test/acc", "summary:val/acc_best", f"config:{GROUP_BY}"],
        ),
    )


def view_spec(workspace: ws.Workspace) -> dict:
    """The view spec save() uploads (built locally; wandb-workspaces keeps this step private)."""
    return workspace._to_model().model_dump(by_alias=True, exclude_none=True, mode="json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entity", required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--group", action="append", default=[], help="a W&B group (repeatable)")
    ap.add_argument(
        "--losses",
        default="final_train_losses",
        help="summary key of the final losses (final_losses for task=toy)",
    )
    ap.add_argument("--name", default="Combiners compared", help="the view's name")
    ap.add_argument(
        "--study",
        action="append",
        default=[],
        help=f"add a study's section (repeatable): {', '.join(STUDIES)}",
    )
    ap.add_argument("--save", action="store_true", help="upload the view to W&B")
    args = ap.parse_args(argv)
    try:
        workspace = build_workspace(
            args.entity, args.project, args.group, args.losses, args.name, args.study
        )
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if not args.save:
        print(json.dumps(view_spec(workspace), indent=2))
        return 0
    # the repository root, so that `python sweep/dashboard.py` finds moo_lightning
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from moo_lightning.loggers import require_wandb_credentials

    try:
        require_wandb_credentials(mode="online")  # a view is saved online, whatever WANDB_MODE says
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    workspace.save()
    print(workspace.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
