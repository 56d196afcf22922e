"""Sweeps (`train.py -m`): job folder names and the sweeps refused before a job runs, seed ranges,
the launchers (joblib, submitit), Optuna searches, concurrent copies of a sweep, the experiment
and combiners_mm presets, the scripts that read sweep folders into tables, and the W&B reports
and dashboards."""

import csv
import json
import os
import random
import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_dir

from tests.helpers import (
    CONF,
    ROOT,
    TINY,
    load_script,
    mm_small,
    one_line_error,
    quick_sweep,
    read_wandb_run,
    readme_energy_rows,
    strict_json,
    tiny_sst2,
    train_py,
    wandb_records,
    write_digits,
)

# --- job folders, and sweeps refused before any job runs ------------------------------------------


def test_sweep_folder_names_carry_every_override_that_changes_results(tmp_path):
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from moo_lightning.cli.naming import job_folder

    plain = ["task=qnli", "combiner=epo", "seed=3", "preference=0.2", "+module.max_bad_steps=4"]
    parsed = OverridesParser.create().parse_overrides(plain)
    # without paths, the same names Hydra's override_dirname gives (finished sweeps still match)
    assert job_folder(plain) == get_overrides_dirname(parsed, [], ",", "=")
    # data and encoder paths are part of the name, as <last part>~<hash of the absolute path>
    a, b = tmp_path / "one" / "sst2", tmp_path / "two" / "sst2"
    name_a = job_folder(["task=sst2", f"data.path={a}", f"encoder.name={tmp_path}/enc/"])
    name_b = job_folder(["task=sst2", f"data.path={b}", f"encoder.name={tmp_path}/enc/"])
    assert "/" not in name_a and name_a != name_b
    assert name_a.startswith("data.path=sst2~") and ",encoder.name=enc~" in name_a
    # the same folder however it is written (quoted, relative, trailing slash) names one job
    spaced = tmp_path / "my sst2"
    spaced.mkdir()
    forms = [f"data.path='{spaced}'", f"data.path={spaced}/"]
    forms.append(f"data.path={os.path.relpath(spaced)}")
    assert len({job_folder([f]) for f in forms}) == 1 and "'" not in job_folder(forms[:1])
    # no other '/' nests folders: a config group path, a hub id
    assert job_folder(["combiner/criterion=weighted_distance"]) == (
        "combiner.criterion=weighted_distance"
    )
    assert job_folder(["encoder.name=FacebookAI/roberta-base"]) == (
        "encoder.name=FacebookAI--roberta-base"
    )
    # settings that change no result stay out: loggers, devices, folders, checkpoints, ...
    noise = [
        "logger=wandb",
        "trainer.devices=2",
        "save_model=false",
        "ckpt_path=/x/last.ckpt",
        "data.num_workers=4",
        "hydra/launcher=joblib",
        "trainer.enable_progress_bar=false",
    ]
    assert job_folder(["seed=1", *noise]) == "seed=1"


@pytest.mark.slow  # make test-slow: kept out of the 4-minute default run
def test_a_preference_sweep_with_a_combiner_that_ignores_it_is_refused(tmp_path):
    """combiner=mgda (the min-norm point ignores r) swept over preference would run the same
    job twice: refused in one line before any job runs; LS runs it."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    def train(folder, *args):
        cmd = [sys.executable, "train.py", "-m", "task=toy", "logger=none",
               f"hydra.sweep.dir={tmp_path / folder}", *args]  # fmt: skip
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)

    proc = train("refused", "combiner=ls,mgda", "preference=0.2,0.8")
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "combiner mgda ignores the preference" in err[0], proc.stderr
    assert not list(tmp_path.rglob("metrics.json"))
    # no preference sweep: it runs
    proc = train("runs", "combiner=mgda", "seed=0,1", "trainer.max_steps=5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("metrics.json")]
    assert len(records) == 2 and all(r["preference"] is None for r in records)


# --- seed ranges (marker text) --------------------------------------------------------------------


@pytest.mark.text
@pytest.mark.slow
def test_the_literal_seed_range_command_launches_ten_jobs(glue_dir, tmp_path):
    cmd = [
        sys.executable,
        "train.py",
        "task=qnli",
        "combiner=epo",
        "-m",
        "seed=0-9",
        "encoder=tiny",
        f"data.path={glue_dir['qnli']}",
        "++trainer.fast_dev_run=true",
        "logger=none",
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seeds = sorted(json.loads(p.read_text())["seed"] for p in tmp_path.glob("*/metrics.json"))
    assert seeds == list(range(10))


@pytest.mark.text
@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_seed_range_function_form_also_works(glue_dir, tmp_path):
    cmd = [
        sys.executable,
        "train.py",
        "task=sst2",
        "-m",
        "seed=range(0,2)",
        "encoder=tiny",
        f"data.path={glue_dir['sst2']}",
        "++trainer.fast_dev_run=true",
        "logger=none",
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list(tmp_path.glob("*/metrics.json"))) == 2


# --- launchers ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_two_seed_sweep_and_report_reads_it(sst2, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    proc = train_py(
        [
            "-m",
            "hydra/launcher=submitit_local",
            "task=sst2",
            "encoder=tiny",
            f"data.path={sst2}",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "logger=none",
            "seed=0,1",
            f"hydra.sweep.dir={sweep}",
            "hydra.launcher.timeout_min=10",
        ],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(sweep.glob("*/metrics.json"))) == 2
    rep = subprocess.run(
        [sys.executable, "sweep/report.py", str(sweep), "--out", str(tmp_path / "report")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert rep.returncode == 0, rep.stderr
    assert "(n=2" in (tmp_path / "report" / "table.md").read_text()


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_processes(sst2, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    proc = train_py(
        quick_sweep(sst2, tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(tmp_path.glob("*/metrics.json"))) == 2


# --- Optuna searches (the probe's rows: marker trust) ---------------------------------------------


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_optuna_search_maximises_the_returned_validation_metric(sst2, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    import json

    import yaml

    args = [
        "-m",
        "hparams_search=glue_optuna",
        "task=sst2",
        "encoder=tiny",
        f"data.path={sst2}",
        "logger=none",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "trainer.enable_progress_bar=false",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = train_py(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = [json.loads(p.read_text()) for p in tmp_path.glob("*/metrics.json")]
    assert len(trials) == 3 and all(t["status"] == "ok" for t in trials)
    # every trial its own sampled values (and folder); the study kept the best validation
    lrs = {t["settings"]["optimizer"]["lr"] for t in trials}
    assert len(lrs) == 3 and all(1e-6 <= lr <= 1e-4 for lr in lrs)
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(t["val/acc_best"] for t in trials))
    assert set(best["best_params"]) == {
        "optimizer.lr", "module.objective.temperature", "module.objective.lam", "preference"
    }  # fmt: skip
    assert "setup plugin alembic" not in proc.stdout + proc.stderr


@pytest.mark.slow  # make test-slow: kept out of the 4-minute default run
def test_a_search_refuses_to_optimise_a_test_metric(sst2, tmp_path):
    """hparams_search with optimized_metric=test/acc stops in one line before any trial trains."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    args = [
        "-m", "hparams_search=glue_optuna", "optimized_metric=test/acc", "task=sst2",
        "encoder=tiny", f"data.path={sst2}", "logger=none", "trainer.max_steps=2",
        "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}",
    ]  # fmt: skip
    proc = train_py(args)
    assert proc.returncode != 0
    assert "optimized_metric='test/acc': a search may optimise a validation or training metric" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*/metrics.json"))


def _train_cli(*args, timeout=300):
    cmd = [sys.executable, "train.py", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _search(probe_folders, sweep_dir, *extra):
    return (
        "-m", "hparams_search=glue_optuna", *TINY, f"data.path={probe_folders['GOOD']}",
        "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
        "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep_dir}", *extra,
    )  # fmt: skip


@pytest.mark.trust
@pytest.mark.parametrize(
    ("row", "override", "fragment"),
    [
        (
            "O3",
            'hydra.sweeper.params={optimizer.lr:"tag(log, interval(0, 1e-4))"}',
            "'optimizer.lr=tag(log, interval(0, 1e-4))' is not a search dimension Optuna accepts",
        ),
        pytest.param(
            "O4",
            'hydra.sweeper.params.preference="interval(0.9,0.1)"',
            "'preference=interval(0.9,0.1)' is not a search dimension",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "O10",
            "hydra.sweeper.n_trials=0",
            "hydra.sweeper.n_trials must be an integer >= 1",
            marks=pytest.mark.slow,
        ),
        (
            "O13",
            "hydra.sweeper.storage=sqlite:////nonexistent/dir/study.db",
            "the folder /nonexistent/dir does not exist",
        ),
    ],
)
def test_a_search_that_cannot_work_is_one_line_before_any_trial(
    probe_folders, tmp_path, row, override, fragment
):
    """Before: Optuna's own tracebacks (a log interval from 0, low > high, no trials, a SQLAlchemy
    error for the storage)."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    line = one_line_error(_train_cli(*_search(probe_folders, tmp_path / "s", override)))
    assert line.startswith("error: ") and fragment in line, line
    assert not list(tmp_path.glob("s/*/metrics.json"))  # no trial ran


@pytest.mark.trust
@pytest.mark.slow  # make test-slow: kept out of the 4-minute default run
def test_a_search_where_no_trial_returns_its_metric_ends_in_one_line(probe_folders, tmp_path):
    """O8/O9/O12: every trial without the optimised metric (here a metric no run records) ended
    in Optuna's "No trials are completed yet" traceback."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    proc = _train_cli(*_search(probe_folders, tmp_path / "s", "optimized_metric=val/nonexistent"))
    line = one_line_error(proc)
    assert "no trial of the search returned optimized_metric=val/nonexistent" in line, line


@pytest.mark.trust
@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_a_search_over_a_continuous_lambda_names_its_trials_within_the_folder_limit(
    probe_folders, tmp_path
):
    """O7/O14: one continuous dimension besides lr and the preference made the trial's folder
    name longer than 255 bytes ("File name too long" at the first trial). Long names are cut and
    told apart by a hash."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    extra = 'hydra.sweeper.params={objective.lam:"interval(0.1,0.9)"}'
    proc = _train_cli(*_search(probe_folders, tmp_path / "s", extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = [p.parent for p in (tmp_path / "s").glob("*/metrics.json")]
    assert len(trial.name.encode()) <= 200 and "~" in trial.name


# --- concurrent copies of a sweep (marker trust) --------------------------------------------------


@pytest.mark.trust
@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_two_copies_of_a_sweep_train_every_job_once(sst2, tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "train.py", "-m", *tiny_sst2(sst2), "seed=0,1,2,3"]
    cmd.append(f"hydra.sweep.dir={sweep}")
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    logs = "".join(o + e for o, e in outs)
    assert logs.count("== ok: ") == 4, logs[-3000:]  # every job trained exactly once
    assert set(codes) <= {0, 75}, logs[-3000:]  # 75: skipped folders the other copy was writing
    found = sorted(sweep.glob("*/metrics.json"))
    assert len(found) == 4 and all(strict_json(p)["status"] == "ok" for p in found)
    assert not list(sweep.rglob("*.tmp"))
    for code, (out, err) in zip(codes, outs):
        assert (code == 75) == ("being written by" in out + err)


# --- presets: every experiment, sweep=combiners_mm and its league table (multi_mnist) -------------


@pytest.mark.multi_mnist
@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_every_experiment_runs_as_one_fast_dev_run_sweep(digits, tmp_path):
    """`-m experiment=glob(*) debug=fast`: every preset composes, builds and takes a step."""
    import os
    import subprocess
    import sys

    env = os.environ | {"MNIST_DIR": str(digits), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "smoke"
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "experiment=glob(*)",
            "debug=fast",
            f"hydra.sweep.dir={out}",
            "trainer.enable_progress_bar=false",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    experiments = sorted(
        p.stem for p in (ROOT / "moo_lightning" / "conf" / "experiment").glob("*.yaml")
    )
    done = sorted(p.parent.name for p in out.glob("*/metrics.json"))
    assert done == [f"debug=fast,experiment={e}" for e in experiments]


MM_TINY = mm_small(num_train=128)


@pytest.mark.multi_mnist
@pytest.mark.combiners
def test_the_preset_is_every_combiner_one_model_equal_preference():
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("train", overrides=["sweep=combiners_mm"], return_hydra_config=True)
    assert cfg.task_name == "multi_mnist" and cfg.module.members == 1
    assert cfg.module.preferences == "spread"  # one member: (0.5, 0.5)
    assert cfg.save_model is False and list(cfg.callbacks) == ["task_accuracy"]
    params = cfg.hydra.sweeper.params
    assert params.combiner == "glob(*)" and params.seed == "range(0,5)"
    assert cfg.hydra.sweep.dir == "multirun/combiners_mm"
    with initialize_config_dir(CONF, version_base="1.3"):
        sst = compose("train", overrides=["sweep=combiners_sst2"], return_hydra_config=True)
    assert (sst.task_name, sst.data.num_train) == ("sst2", 20)
    assert "minilm" in sst.module.encoder.name.lower() and list(sst.preference) == [0.5, 0.5]
    assert sst.hydra.sweeper.params.seed == "range(0,10)"


@pytest.mark.multi_mnist
@pytest.mark.combiners
@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_a_tiny_combiners_mm_multirun_and_its_table(tmp_path):
    digits = write_digits(tmp_path / "mnist")
    sweep = tmp_path / "sweep"
    args = [sys.executable, "train.py", "-m", "sweep=combiners_mm", f"data.path={digits}"]
    args += ["combiner=ls,upgrad", "seed=0,1", f"hydra.sweep.dir={sweep}", *MM_TINY]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert len(runs) == 4
    for m in runs:
        assert m["members"] == 1 and m["preferences"] == [[pytest.approx(0.5), 0.5]]
        # the callback's scalars agree with the recorded errors
        assert m["test/acc_1"] == pytest.approx(1 - m["test_errors"][0][0], abs=1e-6)
        assert m["test/acc_2"] == pytest.approx(1 - m["test_errors"][0][1], abs=1e-6)
        assert "model" not in m  # save_model=false
    (sweep / "broken").mkdir()
    (sweep / "broken" / "metrics.json").write_text("{")
    out = tmp_path / "report"
    assert load_script("sweep/combiner_table.py").main([str(sweep), "--out", str(out)]) == 0
    text = (out / "table.md").read_text()
    assert text.index("| ls |") < text.index("| upgrad |") and "Left out (1)" in text
    rows = {r["row"]: r for r in csv.DictReader(open(out / "table.csv"))}
    assert set(rows) == {"ls", "upgrad"} and rows["ls"]["n"] == "2"
    assert float(rows["ls"]["delta_m"]) == 0.0
    assert len(list(csv.DictReader(open(out / "runs.csv")))) == 4


def _job(folder, combiner, seed, e1, e2, wall=10.0, **extra):
    folder.mkdir(parents=True)
    m = {
        "task": "multi_mnist",
        "status": "ok",
        "complete": True,
        "members": 1,
        "combiner": combiner,
        "seed": seed,
        "test_errors": [[e1, e2]],
        "val/error_mean": (e1 + e2) / 2,
        "wall_time_s": wall,
        "settings": {"seed": seed, "combiner": {"_target_": combiner}, "data": {"seed": 20180}},
    } | extra
    (folder / "metrics.json").write_text(json.dumps(m))


@pytest.mark.multi_mnist
@pytest.mark.combiners
def test_delta_m_p_values_and_left_out_runs(tmp_path):
    for s in range(3):
        _job(tmp_path / f"ls{s}", "ls", s, 0.10, 0.20 + 0.01 * s)
        # task 1: accuracy 0.95 against 0.90 (+5.56%); task 2 the same: Δm = +2.78%
        _job(tmp_path / f"a{s}", "a", s, 0.05, 0.20 + 0.01 * s, wall=20.0 + s)
    _job(tmp_path / "dup", "a", 0, 0.0, 0.0)
    _job(tmp_path / "set", "ls", 0, 0.1, 0.1, members=5, test_errors=[[0.1, 0.1]] * 5)
    _job(tmp_path / "div", "ls", 3, 0.1, 0.1, status="diverged")
    runs, settings_of, left_out = load_script("sweep/combiner_table.py").load(tmp_path)
    why = dict(left_out)
    assert set(why) == {"dup", "set", "div"}
    assert "duplicate" in why["dup"] and "members 5" in why["set"] and "diverged" in why["div"]
    table, base = load_script("sweep/combiner_table.py").summarise(runs, "ls")
    assert base == "ls" and list(table.index) == ["ls", "a"]
    assert table.loc["a", "delta_m"] == pytest.approx(100 * (0.95 / 0.90 - 1) / 2)
    assert table.loc["a", "p"] < 1e-3 and table.loc["a", "p_task2"] == 1.0
    assert table.loc["a", "q"] == pytest.approx(table.loc["a", "p"])  # a family of one
    assert table.loc["ls", "q"] is None or table.loc["ls", "q"] != table.loc["ls", "q"]  # none
    assert table.loc["a", "wall_time_s_mean"] == pytest.approx(21.0)
    # another baseline: the columns and the footnote name it (they used to say LS whatever it was)
    script = load_script("sweep/combiner_table.py")
    table, base = script.summarise(runs, "a")
    assert base == "a" and table.loc["ls", "delta_m"] < 0
    (tmp_path / "out").mkdir()
    text = script.write_tables(runs, table, base, "a", settings_of, left_out, tmp_path / "out")
    assert "| Δm% vs a | p vs a |" in text and "positive = more accurate than a." in text
    assert "LS" not in text.split("Accuracy = ")[1].split("p: ")[0]


# --- the toy-ensemble table script (marker toy) ---------------------------------------------------


@pytest.mark.toy
def test_the_readme_toy_energy_table_is_what_the_table_script_prints(tmp_path, capsys):
    """sweep/toy_energy_table.py reads run records into the README's layout (mean ± std)."""
    import json
    import sys

    from tests.helpers import ROOT

    sys.path.insert(0, str(ROOT / "sweep"))
    try:
        import toy_energy_table
    finally:
        sys.path.pop(0)
    for seed, hv in enumerate([0.80, 0.90]):
        job = tmp_path / f"seed={seed}"
        job.mkdir()
        record = {"task": "toy", "status": "ok", "complete": True, "criterion": "energy",
                  "start": "clustered",
                  "seed": seed, "hv_ratio": hv, "igd_plus": 0.05}  # fmt: skip
        (job / "metrics.json").write_text(json.dumps(record))
    toy_energy_table.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "| energy | clustered | 2 | 0.850 ± 0.071 (0.800–0.900) | 0.050 ± 0.000 |" in out
    assert out.splitlines()[0].startswith("| criterion | start | seeds |")
    readme_energy_rows()  # and the README holds rows of that layout


# --- W&B: the sweep report logged, the dashboards' specs (marker wandb) ---------------------------


@pytest.mark.wandb
def test_dashboard_spec_compares_combiners_and_is_not_saved(monkeypatch, capsys):
    pytest.importorskip("wandb")
    dashboard = load_script("sweep/dashboard.py")
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


@pytest.mark.wandb
def test_report_logs_table_1_and_the_loss_space_figure(offline, tmp_path, capsys):
    pytest.importorskip("wandb")
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
    load_script("sweep/report.py").main(
        [str(sweep), "--out", str(out), "--wandb", "--project", "moo-test"]
    )
    assert "W&B run: " in capsys.readouterr().out
    run, summary, _, files = read_wandb_run(out)
    assert run.job_type == "report" and summary["table1_rows"] == 3
    (table,) = files.glob("media/table/table1_*.table.json")
    table = json.loads(table.read_text())
    assert table["columns"][:3] == ["task", "N", "loss"]
    assert sorted(r[2] for r in table["data"]) == ["CE", "CE+EPO", "CE+LS"]
    assert summary["loss_space/_type"] == "image-file"
    assert list(files.glob("media/images/loss_space_*.png"))


def _study_section(name: str):
    """sweep/dashboard.py, the section ``--study name`` adds to the view, and its bar panels."""
    pytest.importorskip("wandb_workspaces")
    dashboard = load_script("sweep/dashboard.py")
    spec = dashboard.view_spec(dashboard.build_workspace("me", "proj", studies=[name]))
    sections = spec["spec"]["section"]["panelBankConfig"]["sections"]
    (study,) = [s for s in sections if name in s["name"]]
    bars = [p["config"] for p in study["panels"] if p["viewType"] == "Bar Chart"]
    return dashboard, study, bars


@pytest.mark.wandb
def test_the_combiners_mm_section_bars_accuracy_and_wall_time_by_combiner(monkeypatch, capsys):
    dashboard, study, bars = _study_section("combiners_mm")
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


@pytest.mark.wandb
def test_the_combiners_sst2_section_bars_accuracy_by_combiner():
    _, study, bars = _study_section("combiners_sst2")
    assert [b["metrics"] for b in bars] == [["test/acc"], ["val/acc_best"], ["wall_time_s"]]
    assert all(b["groupBy"] == "labels.value.combiner" for b in bars)
    assert "table1" in json.dumps(study)  # the report's table, p against LS


@pytest.mark.wandb
def test_the_dashboard_section_shows_the_league_table(capsys):
    pytest.importorskip("wandb_workspaces")
    dashboard = load_script("sweep/dashboard.py")
    spec = dashboard.view_spec(dashboard.build_workspace("me", "proj", studies=["combiners_mm"]))
    assert '"league_table"' in json.dumps(spec)


@pytest.mark.wandb
def test_combiner_table_logs_the_league_table_offline(monkeypatch, tmp_path, capsys):
    pytest.importorskip("wandb_workspaces")
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
    table = load_script("sweep/combiner_table.py")
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
