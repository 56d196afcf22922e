"""logger=wandb end to end, offline: runs told apart by name, group and tags; results, lists and
figures in the run; no API key online fails in one line; the combiner dashboard's spec; the
sweep report logged to W&B. Nothing reaches the network."""

import importlib.util
import json
import random
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, wandb_records, write_digits, write_glue

wandb = pytest.importorskip("wandb")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"sweep_{name}", ROOT / f"sweep/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """W&B offline, every W&B folder (runs, staged tables, cache, settings) under tmp_path."""
    for var, sub in (
        ("WANDB_DIR", "wandb_dir"),
        ("WANDB_DATA_DIR", "wandb_data"),
        ("WANDB_CACHE_DIR", "wandb_cache"),
        ("WANDB_CONFIG_DIR", "wandb_config"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def _dir(metrics):
    return Path(metrics["run_dir"])


def _complete_records(log, timeout=30.0):
    """The records of an offline run file once it holds the run's exit record: wandb's service
    may still be writing it when finish() returns (seen on the first run after a teardown)."""
    from google.protobuf.message import DecodeError

    deadline = time.monotonic() + timeout
    while True:
        try:
            records = list(wandb_records(log))
        except (DecodeError, AssertionError):  # a partly written file
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{log} has no exit record after {timeout} s")
        time.sleep(0.1)


def read_run(folder):
    """(run record, summary, config keys of wandb.init, files dir) of the offline run in folder."""
    (log,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    summary, run = {}, None
    for rec in _complete_records(log):
        kind = rec.WhichOneof("record_type")
        if kind == "summary":
            for u in rec.summary.update:
                summary[u.key or "/".join(u.nested_key)] = json.loads(u.value_json)
        elif kind == "run":
            run = rec.run
    init_config = {u.key: json.loads(u.value_json) for u in run.config.update}
    return run, summary, init_config, log.parent / "files"


def test_toy_runs_differ_by_preference_and_carry_lists_and_figures(run_train, offline):
    runs = [
        read_run(_dir(run_train("task=toy", "logger=wandb", "data.steps=15", f"preference={r}")))
        for r in (0.2, 0.6)
    ]
    (a, sa, ca, files), (b, _, _, _) = runs
    assert a.display_name != b.display_name and a.run_group != b.run_group
    assert "r=0.2" in a.tags and "r=0.6" in b.tags and "combiner=epo" in a.tags
    assert a.display_name == "toy epo r0.2 lr0.2 seed0" and a.run_group == "toy r0.2 lr0.2"
    # the toy task has no encoder and no objective: neither is a tag, a label or the job type
    assert not [t for t in a.tags if t.startswith(("encoder=", "objective=", "tau=", "lam="))]
    assert (
        a.job_type == "toy" and ca["labels"]["combiner"] == "epo" and "encoder" not in ca["labels"]
    )
    # lists: the list and one entry per index; the trajectory figure as an image
    assert sa["preference"] == pytest.approx([0.2, 0.8]) and sa["preference/1"] == pytest.approx(
        0.8
    )
    assert len(sa["final_losses"]) == 2 and sa["final_losses/0"] == sa["final_losses"][0]
    assert sa["status"] == "ok" and sa["steps"] == 15
    assert sa["figures/trajectory/_type"] == "images/separated"
    assert list(files.glob("media/images/figures/trajectory_*.png"))


def test_text_runs_differ_by_tau_and_log_test_results(run_train, offline, tmp_path):
    data = write_glue(tmp_path / "sst2", "sst2")
    common = (
        "task=sst2",
        "encoder=tiny",
        f"data.path={data}",
        "logger=wandb",
        "trainer.max_steps=2",
        "trainer.val_check_interval=1",
    )
    (a, sa, ca, files), (b, _, _, _) = [
        read_run(_dir(run_train(f"objective.temperature={t}", *common))) for t in (0.1, 0.5)
    ]
    assert a.display_name != b.display_name and a.run_group != b.run_group
    assert "tau=0.1" in a.tags and "tau=0.5" in b.tags
    for tag in ("task=sst2", "N=20", "encoder=tiny", "objective=moo", "lam=0.3", "lr=1e-05"):
        assert tag in a.tags
    assert (
        a.display_name.startswith("sst2 N20 tiny moo epo r0.1,0.9 tau0.1") and a.job_type == "sst2"
    )
    assert ca["labels"]["tau"] == 0.1 and ca["labels"]["objective"] == "moo"
    assert {"test/acc", "val/acc_best", "final_train_losses/0", "final_train_losses/1"} <= set(sa)
    assert sa["tables/val_history/_type"] == "table-file"
    (table,) = files.glob("media/table/tables/val_history_*.table.json")
    history = json.loads(table.read_text())
    assert history["columns"] == ["step", "value"] and [r[0] for r in history["data"]] == [1, 2]


@pytest.fixture
def fresh_wandb_settings():
    """W&B caches its settings (WANDB_MODE included) per process: read them again before and
    after the test, so that the other tests' runs stay offline."""
    wandb.teardown()
    yield
    wandb.teardown()


def test_online_without_a_key_fails_in_one_line_before_training(
    run_train, monkeypatch, tmp_path, fresh_wandb_settings
):
    from moo_lightning.cli import train

    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DISABLED", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    with pytest.raises(train.BadSetting) as err:
        run_train("task=toy", "logger=wandb", "data.steps=5")
    message = str(err.value)
    assert "\n" not in message and "wandb login" in message and "WANDB_MODE=offline" in message
    assert not list(tmp_path.rglob("metrics.json")) and not list(tmp_path.rglob("*.wandb"))


def test_dashboard_spec_compares_combiners_and_is_not_saved(monkeypatch, capsys):
    dashboard = _load("dashboard")
    group = "sst2 N20 tiny moo r0.1,0.9 tau0.3 lam0.3 lr1e-05"
    spec = dashboard.view_spec(dashboard.build_workspace("me", "proj", [group]))
    section = spec["spec"]["section"]
    panels = [p for s in section["panelBankConfig"]["sections"] for p in s["panels"]]
    by_type = {}
    for p in panels:
        by_type.setdefault(p["viewType"], []).append(p["config"])
    lines = by_type["Run History Line Plot"]
    assert [c["metrics"] for c in lines] == [
        ["val/acc"],
        ["val/acc_best"],
        ["train/weight_0"],
        ["train/weight_1"],
    ]
    (bar,) = by_type["Bar Chart"]
    assert bar["metrics"] == ["test/acc"]
    for c in [*lines, bar]:  # mean ± std over the seeds of each combiner
        assert (c["groupBy"], c["groupAgg"], c["groupArea"]) == (
            "labels.value.combiner",
            "mean",
            "stddev",
        )
    assert all(c["xAxis"] == "trainer/global_step" for c in lines)
    (scatter,) = by_type["Scatter Plot"]
    assert (scatter["xAxis"], scatter["yAxis"]) == (
        "summary:final_train_losses/0",
        "summary:final_train_losses/1",
    )
    (runset,) = section["runSets"]
    assert runset["grouping"] == [{"section": "config", "name": "labels.value.combiner"}]
    (flt,) = runset["filters"]["filters"]
    assert flt["key"]["name"] == "group" and flt["value"] == [group]

    # the CLI without --save prints that spec and sends nothing
    def no_save(self):
        raise AssertionError("saved without --save")

    monkeypatch.setattr(dashboard.ws.Workspace, "save", no_save)
    assert dashboard.main(["--entity", "me", "--project", "proj", "--losses", "final_losses"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "summary:final_losses/0" in json.dumps(printed)
    with pytest.raises(SystemExit, match="cannot be selected"):
        dashboard.main(["--entity", "me", "--project", "proj", "--group", "sst2 N=20"])


def test_report_logs_table_1_and_the_loss_space_figure(offline, tmp_path, capsys):
    rnd = random.Random(0)
    sweep = tmp_path / "sweep"
    for objective, combiner in (("ce", "ls"), ("moo", "ls"), ("moo", "epo")):
        for seed in (0, 1):
            folder = sweep / f"{objective}-{combiner}-{seed}"
            folder.mkdir(parents=True)
            obj = {"lam": 0.3, "temperature": 0.3} if objective == "moo" else {}
            metrics = {
                "task": "sst2",
                "status": "ok",
                "complete": True,
                "num_train": 20,
                "objective": objective,
                "combiner": combiner,
                "seed": seed,
                "preference": [0.1, 0.9],
                "val/acc_best": rnd.random(),
                "test/acc": rnd.random(),
                "final_train_losses": [rnd.random(), rnd.random()],
                "settings": {"seed": seed, "objective": obj, "combiner": combiner},
            }
            (folder / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "report"
    _load("report").main([str(sweep), "--out", str(out), "--wandb", "--project", "moo-test"])
    assert "W&B run: " in capsys.readouterr().out
    run, summary, _, files = read_run(out)
    assert run.job_type == "report" and summary["table1_rows"] == 3
    (table,) = files.glob("media/table/table1_*.table.json")
    table = json.loads(table.read_text())
    assert table["columns"][:3] == ["task", "N", "loss"]
    assert sorted(r[2] for r in table["data"]) == ["CE", "CE+EPO", "CE+LS"]
    assert summary["loss_space/_type"] == "image-file"
    assert list(files.glob("media/images/loss_space_*.png"))


def test_an_invalid_key_fails_in_one_line_and_a_found_key_builds_the_logger(
    monkeypatch, tmp_path, fresh_wandb_settings
):
    from moo_lightning.loggers import wandb_logger

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_API_KEY", "not a key!")  # refused by W&B before any request
    with pytest.raises(ValueError) as err:
        wandb_logger(labels={"task": "toy"}, save_dir=str(tmp_path))
    assert "\n" not in str(err.value) and "not a key" not in str(err.value)
    assert "WANDB_API_KEY" in str(err.value) and "WANDB_MODE=offline" in str(err.value)
    # a key W&B finds: the logger is built (its run starts only when first used)
    monkeypatch.setattr(wandb, "login", lambda **kwargs: True)
    labels = {"task": "toy", "N": None, "combiner": "ls", "r": [0.5, 0.5], "seed": 1}
    lg = wandb_logger(labels=labels, save_dir=str(tmp_path), requires={"objective": None})
    init = lg._wandb_init
    assert init["name"] == "toy ls r0.5,0.5 seed1" and init["group"] == "toy r0.5,0.5"
    assert init["tags"] == ["task=toy", "combiner=ls", "r=0.5,0.5", "seed=1"]
    assert init["config"] == {"labels": {k: v for k, v in labels.items() if v is not None}}


def test_an_ensemble_with_member_preferences_has_no_single_r_label(run_train, offline, tmp_path):
    """A Multi-MNIST set (5 members on spread preferences) is labelled by its preferences and
    members, not by the unused top-level r; metrics.json says the same (no single preference)."""
    from moo_lightning.loggers import run_labels

    digits = write_digits(tmp_path / "mnist")
    m = run_train(
        "experiment=mm_epo", f"data.path={digits}", "logger=wandb", "data.num_train=128",
        "data.num_val=32", "data.num_test=64", "data.batch_size=64", "trainer.max_epochs=1",
    )  # fmt: skip
    run, _, config, _ = read_run(_dir(m))
    assert m["preference"] is None and len(m["preferences"]) == 5
    assert not [t for t in run.tags if t.startswith("r=")]
    assert "preferences=spread" in run.tags and "members=5" in run.tags
    assert "r" not in config["labels"] and " r0.1" not in run.display_name
    # a shared preference keeps its label
    labels = {"task": "toy", "combiner": "epo", "r": [0.1, 0.9]}
    assert run_labels(labels, unless={"r": None})["r"] == [0.1, 0.9]
