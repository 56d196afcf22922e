"""sweep/report.py on a synthetic sweep: selection by validation, incomplete groups, paired test."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import ROOT, load_script


def fake_run(
    root: Path,
    name: str,
    objective: str,
    combiner: str,
    seed: int,
    val: float,
    test: float,
    temperature=0.3,
    lam=0.3,
    r1=0.1,
    embeddings=False,
):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    cfg = {"objective": {} if objective == "ce" else {"temperature": temperature, "lam": lam}}
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    m = {
        "task": "sst2",
        "num_train": 20,
        "seed": seed,
        "objective": objective,
        "combiner": combiner,
        "preference": [1.0] if objective != "moo" else [r1, 1 - r1],
        "val/acc_best": val,
        "test/acc": test,
        "complete": True,
        "wall_time_s": 1.0,
        "final_train_losses": [0.5 + seed / 10, 0.6 - seed / 20] if objective == "moo" else [0.7],
    }
    (d / "metrics.json").write_text(json.dumps(m))
    if embeddings:
        rng = np.random.default_rng(seed)
        np.savez(
            d / "test_embeddings.npz", features=rng.normal(size=(40, 8)), labels=np.arange(40) % 2
        )


def _report(sweep: Path, out: Path, *extra: str) -> None:
    proc = subprocess.run(
        [sys.executable, "sweep/report.py", str(sweep), "--out", str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_report_selects_by_validation_and_flags_incomplete(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    ce_test = [0.60, 0.62, 0.58]
    for s in range(3):
        fake_run(sweep, f"ce_s{s}", "ce", "ls", s, 0.6, ce_test[s])
        # two complete EPO groups: τ=0.3 has the better validation accuracy and is chosen
        fake_run(sweep, f"epo_t03_s{s}", "moo", "epo", s, 0.7, ce_test[s] + 0.05, embeddings=True)
        fake_run(sweep, f"epo_t09_s{s}", "moo", "epo", s, 0.5, 0.99, temperature=0.9)
        fake_run(sweep, f"scl_s{s}", "ce_scl", "ls", s, 0.6, 0.61, embeddings=True)
    fake_run(sweep, "ls_s0", "moo", "ls", 0, 0.9, 0.9)  # one seed of three: incomplete
    (sweep / "interrupted").mkdir()
    (sweep / "interrupted" / "metrics.json.tmp").write_text("{")

    _report(sweep, out)
    table = (out / "table.md").read_text()
    assert "| CE | 20 | 60.0 ± 2.0 (n=3) |" in table
    assert (
        "| CE+EPO | 20 | 65.0 ± 2.0 (n=3, p<0.001, q<0.001) |" in table
    )  # τ=0.3 chosen, not 0.99 test
    assert "CE+LS τ=0.3 λ=0.3 r1=0.1: seeds [0] of [0, 1, 2]" in table
    assert "| CE+LS |" not in table  # never averaged
    rows = list(csv.DictReader(open(out / "runs.csv")))
    assert len(rows) == 13
    chosen = {r["loss"]: r for r in csv.DictReader(open(out / "table.csv"))}
    assert float(chosen["CE+EPO"]["temperature"]) == 0.3
    assert (out / "loss_space.png").exists() and (out / "tsne.png").exists()


def test_runs_without_a_result_duplicates_and_unreadable_files_are_left_out_and_listed(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    for s in range(2):
        fake_run(sweep, f"ce_s{s}", "ce", "ls", s, 0.6, 0.6 + s / 100)
    fake_run(sweep, "ce_s1_again", "ce", "ls", 1, 0.6, 0.99)  # same settings and seed
    for name, status in (("diverged", "diverged"), ("zero", "no_steps")):
        fake_run(sweep, name, "ce", "ls", 0, 0.9, 0.99)
        m = json.loads((sweep / name / "metrics.json").read_text())
        m.update(status=status, status_reason="why")
        (sweep / name / "metrics.json").write_text(json.dumps(m))
    (sweep / "broken").mkdir()
    (sweep / "broken" / "metrics.json").write_text('{"complete": tr')
    _report(sweep, out)
    table = (out / "table.md").read_text()
    assert "| CE | 20 | 60.5 ± 0.7 (n=2) |" in table  # 0.99 entered nowhere
    assert "- diverged: status diverged: why" in table
    assert "- zero: status no_steps: why" in table
    assert "- broken: unreadable metrics.json" in table
    assert "duplicate of ce_s1" in table
    assert "Steps skipped for non-finite values in the runs above: 0." in table


def settings_run(root: Path, name: str, loss: str, seed: int, test: float, val=0.6, **changes):
    """A run whose metrics.json records its settings (as train.py writes them), with
    ``changes`` to dotted settings (``{"optimizer.lr": 2e-5}``; None removes the key)."""
    objective, combiner = {"CE": ("ce", "ls"), "CE+EPO": ("moo", "epo")}[loss]
    obj = {"_target_": f"moo_lightning.tasks.glue.objectives.{objective}"}
    if objective == "moo":
        obj.update(lam=0.3, temperature=0.3)
    settings = {
        "seed": seed,
        "preference": [0.1, 0.9],
        "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-5},
        "trainer": {"max_steps": 150, "val_check_interval": 25},
        "encoder": {"_target_": "moo_lightning.tasks.glue.encoders.Backbone", "name": "minilm"},
        "combiner": {"_target_": f"moo_lightning.combiners.{combiner.upper()}"},
        "objective": obj,
        "scheduler": {"_target_": "moo_lightning.schedules.LinearWarmupDecay", "warmup": 0.1},
        "data": {"path": "/data/sst2", "num_train": 20, "seed": seed, "task": "sst2"},
        "module": {"objective": dict(obj), "dropout": 0.1},
        "task_name": "sst2",
    }
    if combiner == "epo":
        settings["combiner"]["eps"] = 1e-4
    for key, value in changes.items():
        *parents, last = key.split(".")
        node = settings
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    m = {
        "task": settings["task_name"],
        "num_train": 20,
        "seed": seed,
        "objective": objective,
        "combiner": combiner,
        "preference": [0.1, 0.9],
        "val/acc_best": val,
        "test/acc": test,
        "complete": True,
        "settings": settings,
    }
    (root / name).mkdir(parents=True)
    (root / name / "metrics.json").write_text(json.dumps(m))


def _md_rows(table: str) -> list[str]:
    """The rows of table.md's first table (Table 1; the paired differences follow it)."""
    return [line for line in table.split("\n\n")[0].splitlines() if line.startswith("| ")]


def test_rows_that_differ_in_encoder_get_it_as_a_column_and_their_own_ce_baseline(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    minilm, tiny = [0.60, 0.62, 0.58], [0.80, 0.70, 0.75]
    for s in range(3):
        settings_run(sweep, f"ce_minilm_s{s}", "CE", s, minilm[s])
        settings_run(sweep, f"ce_tiny_s{s}", "CE", s, tiny[s], val=0.9, **{"encoder.name": "tiny"})
        # EPO = CE + 5 points on every seed (minilm: p≈0), and exactly CE on tiny (p=1)
        settings_run(sweep, f"epo_minilm_s{s}", "CE+EPO", s, minilm[s] + 0.05 + s / 1000)
        settings_run(sweep, f"epo_tiny_s{s}", "CE+EPO", s, tiny[s], **{"encoder.name": "tiny"})
    settings_run(sweep, "epo_roberta_s0", "CE+EPO", 0, 0.9, **{"encoder.name": "roberta"})
    _report(sweep, out)
    table = (out / "table.md").read_text()
    assert _md_rows(table) == [
        "| loss | N | encoder.name | sst2 |",
        "| CE | 20 | minilm | 60.0 ± 2.0 (n=3) |",
        "| CE | 20 | tiny | 75.0 ± 5.0 (n=3) |",
        "| CE+EPO | 20 | minilm | 65.1 ± 2.0 (n=3, p<0.001, q<0.001) |",
        # against CE tiny, not minilm
        "| CE+EPO | 20 | tiny | 75.0 ± 5.0 (n=3, p=1.000, q=1.000) |",
    ]
    assert "CE+EPO τ=0.3 λ=0.3 r1=0.1 encoder.name=roberta: seeds [0] of [0, 1, 2]" in table
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert [(r["loss"], r["encoder.name"]) for r in rows] == [
        ("CE", "minilm"),
        ("CE", "tiny"),
        ("CE+EPO", "minilm"),
        ("CE+EPO", "tiny"),
    ]
    assert list(rows[0])[:4] == ["task", "N", "loss", "encoder.name"]
    runs = list(csv.DictReader(open(out / "runs.csv")))
    assert {r["dir"]: r["encoder.name"] for r in runs}["epo_tiny_s2"] == "tiny"
    # the encoder is a column, not a constant; everything the same in every run is, once
    (constants,) = [line for line in table.splitlines() if line.startswith("All rows: ")]
    assert constants == (
        "All rows: preference=[0.1, 0.9], optimizer._target_=AdamW, lr=1e-05, max_steps=150, "
        "val_check_interval=25, scheduler._target_=LinearWarmupDecay, warmup=0.1, "
        "path=/data/sst2, encoder._target_=Backbone, dropout=0.1."  # the module's encoder first
    )
    assert table.count("lr=1e-05") == 1 and "seed=" not in table and "_partial_" not in table
    # settings of one loss only are no column (the loss tells those rows apart): stated once
    assert "Per loss: eps=0.0001 (CE+EPO); lam=0.3 (CE+EPO); temperature=0.3 (CE+EPO)." in table


def test_rows_that_differ_in_lr_get_it_as_a_column_even_when_it_follows_the_loss(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    for s in range(2):
        settings_run(sweep, f"ce_s{s}", "CE", s, 0.6 + s / 100)
        settings_run(sweep, f"epo_lr2_s{s}", "CE+EPO", s, 0.7, **{"optimizer.lr": 2e-5})
        settings_run(sweep, f"epo_lr3_s{s}", "CE+EPO", s, 0.8, val=0.1, **{"optimizer.lr": 3e-5})
    _report(sweep, out)
    table = (out / "table.md").read_text()
    # not the best-by-validation lr alone: each lr its own row; CE (lr 1e-05) has none to pair
    assert _md_rows(table) == [
        "| loss | N | lr | sst2 |",
        "| CE | 20 | 1e-05 | 60.5 ± 0.7 (n=2) |",
        "| CE+EPO | 20 | 2e-05 | 70.0 ± 0.0 (n=2, no CE to compare) |",
        "| CE+EPO | 20 | 3e-05 | 80.0 ± 0.0 (n=2, no CE to compare) |",
    ]
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert [float(r["optimizer.lr"]) for r in rows] == [1e-5, 2e-5, 3e-5]
    assert "All rows: " in table and "lr=" not in table.split("All rows: ")[1]


def test_the_p_values_compare_with_the_baseline_asked_for(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    for s in range(3):
        settings_run(sweep, f"ce_s{s}", "CE", s, 0.6 + s / 100)
        settings_run(sweep, f"epo_s{s}", "CE+EPO", s, 0.7 + s / 50)
    _report(sweep, out, "--baseline", "CE+EPO")  # combiners compare with LS this way
    table = (out / "table.md").read_text()
    rows = _md_rows(table)
    # CE first (Table 1's reference), then the baseline (without a p of its own), then the rest
    assert rows[1].startswith("| CE | 20 | 61.0") and ", p=" in rows[1]
    assert rows[2].startswith("| CE+EPO | 20 | 72.0") and rows[2].endswith("(n=3) |")
    assert "p: two-sided paired t-test against CE+EPO" in table
    assert "p_vs_ce_epo_paired_t" in (out / "table.csv").read_text().splitlines()[0]
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    settings_run(sweep, "ce_s3", "CE", 3, 0.65)  # the sweep grew since: runs.csv would differ
    proc = subprocess.run(
        [sys.executable, "sweep/report.py", str(sweep), "--out", str(out),
         "--baseline", "CE+LS"],  # fmt: skip
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--baseline CE+LS: no run of that loss here; the losses are CE, CE+EPO" in proc.stderr
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before  # the report stays whole


def test_settings_set_per_task_are_stated_once_and_not_columns(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    for s in range(2):
        for task in ("sst2", "qnli"):
            where = {"task_name": task, "data.task": task, "data.path": f"/data/{task}"}
            settings_run(sweep, f"{task}_ce_s{s}", "CE", s, 0.6 + s / 100, **where)
    _report(sweep, out)
    table = (out / "table.md").read_text()
    assert _md_rows(table) == [
        "| loss | N | sst2 | qnli |",
        "| CE | 20 | 60.5 ± 0.7 (n=2) | 60.5 ± 0.7 (n=2) |",
    ]
    assert "Per task: path: /data/qnli (qnli), /data/sst2 (sst2)." in table
    assert "task_name" not in table and "path=" not in table


def test_a_combiner_setting_varied_within_one_loss_is_a_column_and_ce_still_pairs(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    for s in range(2):
        settings_run(sweep, f"ce_s{s}", "CE", s, 0.6 + s / 100)
        settings_run(sweep, f"epo_e4_s{s}", "CE+EPO", s, 0.7 + s / 50)
        settings_run(sweep, f"epo_e3_s{s}", "CE+EPO", s, 0.6 + s / 100, **{"combiner.eps": 1e-3})
    _report(sweep, out)
    table = (out / "table.md").read_text()
    # eps is EPO's own (CE has none: —), so CE's row is the baseline of both EPO rows
    assert _md_rows(table) == [
        "| loss | N | eps | sst2 |",
        "| CE | 20 | — | 60.5 ± 0.7 (n=2) |",
        "| CE+EPO | 20 | 0.0001 | 71.0 ± 1.4 (n=2, p=0.030, q=0.061) |",  # BH: 2 × 0.0303
        "| CE+EPO | 20 | 0.001 | 60.5 ± 0.7 (n=2, p=1.000, q=1.000) |",
    ]
    assert "q: p adjusted for the table's 2 comparisons (Benjamini–Hochberg" in table
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert [r["combiner.eps"] for r in rows] == ["", "0.0001", "0.001"]
    assert [r["q_vs_ce_bh"][:5] for r in rows] == ["", "0.060", "1.0"]


def test_a_ddp_run_is_another_setting_not_a_duplicate(tmp_path):
    """Before: a one-process run was dropped as a 'duplicate (same settings and seed)' of a
    2-process run of the same seed, although their results differ (dropout)."""
    sweep = tmp_path / "sweep"
    for seed in range(2):
        fake_run(sweep, f"ce{seed}", "ce", "ls", seed, 0.6, 0.55 + seed / 100)
        fake_run(sweep, f"ce_ddp{seed}", "ce", "ls", seed, 0.61, 0.57 + seed / 100)
        m = json.loads((sweep / f"ce_ddp{seed}" / "metrics.json").read_text())
        m["world_size"] = 2
        (sweep / f"ce_ddp{seed}" / "metrics.json").write_text(json.dumps(m))
    out = tmp_path / "out"
    _report(sweep, out)
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == 4  # none left out as a duplicate
    assert "world_size" in (out / "table.md").read_text()


def test_hand_edited_records_are_left_out_with_the_reason_and_out_is_checked(tmp_path):
    """Probe RN3, RN4, RN12, RN13 (a null seed, no task, a NaN or a text accuracy: a traceback or
    a mean of three counted as n=4) and RN5, RN17 (--out an existing file or a read-only folder:
    a traceback). Now each record is left out naming the field, and --out is one line."""
    import stat

    from tests.helpers import as_unprivileged

    sweep = tmp_path / "sweep"
    for s in range(2):
        fake_run(sweep, f"ce_s{s}", "ce", "ls", s, 0.6, 0.6)
    edits = {"seed_null": ("seed", None), "no_task": ("task", "DROP"),
             "nan_acc": ("test/acc", float("nan")), "text_acc": ("test/acc", "abc")}  # fmt: skip
    for name, (key, value) in edits.items():
        fake_run(sweep, name, "ce", "ls", 5, 0.6, 0.6)
        path = sweep / name / "metrics.json"
        m = json.loads(path.read_text())
        if value == "DROP":
            del m[key]
        else:
            m[key] = value
        path.write_text(json.dumps(m))  # NaN as JSON's non-standard token, as a hand edit may
    out = tmp_path / "out"
    _report(sweep, out)
    table = (out / "table.md").read_text()
    assert "| CE | 20 | 60.0 ± 0.0 (n=2) |" in table
    for reason in ("seed None is not an integer", "no task recorded",
                   "test/acc nan is not a finite number",
                   "test/acc 'abc' is not a finite number"):  # fmt: skip
        assert reason in table, reason

    def report(out, unprivileged=False):
        cmd = [sys.executable, "sweep/report.py", str(sweep), "--out", str(out)]
        return subprocess.run(
            as_unprivileged(cmd) if unprivileged else cmd, cwd=ROOT, capture_output=True, text=True
        )

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    proc = report(a_file)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"error: --out {a_file} is a file; give a folder for the report's files"
    )
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if as_unprivileged(["true"]) is None:
            return  # root without setpriv ignores the folder's mode: nothing to show here
        proc = report(locked / "report", unprivileged=True)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "cannot write there" in proc.stderr
    finally:
        locked.chmod(stat.S_IRWXU)


def table_run(root: Path, task: str, n: int, loss: str, seed: int, test: float) -> None:
    """A run of ``task`` at N = ``n`` (CE, CE+LS or CE+EPO) with its wall time."""
    objective, combiner = {"CE": ("ce", "ls"), "CE+LS": ("moo", "ls"), "CE+EPO": ("moo", "epo")}[
        loss
    ]
    name = f"{task}_{n}_{loss}_{seed}".replace("+", "_")
    fake_run(root, name, objective, combiner, seed, 0.6, test, embeddings=loss == "CE+EPO")
    m = json.loads((root / name / "metrics.json").read_text())
    m.update(task=task, num_train=n, wall_time_s=100.0 + seed, encoder="minilm")
    (root / name / "metrics.json").write_text(json.dumps(m))


REFERENCE = """# a comment line
task,N,loss,mean,std,source
sst2,50,CE,59.72,5.9,"paper, RoBERTa-base"
qnli,100,CE+EPO,74.29,,"paper, RoBERTa-base"
mnli,20,CE,34.07,,"paper, RoBERTa-base"
"""


def test_reference_numbers_sit_beside_each_task_with_the_job_time_and_figures_per_cell(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    for task in ("sst2", "qnli"):
        for n in (50, 100):
            for seed in range(2):
                for k, loss in enumerate(("CE", "CE+LS", "CE+EPO")):
                    table_run(sweep, task, n, loss, seed, 0.5 + 0.01 * (seed + k))
    ref = tmp_path / "paper.csv"
    ref.write_text(REFERENCE)
    out.mkdir()
    (out / "loss_space.png").write_bytes(b"an earlier report's figure")
    _report(sweep, out, "--reference", str(ref))
    table = (out / "table.md").read_text()
    paper = "paper, RoBERTa-base"
    ours = "here, all-MiniLM-L6-v2"  # every run's encoder, by its model's name
    head = f"| loss | N | sst2 ({ours}) | sst2 ({paper}) | qnli ({ours}) | qnli ({paper}) |"
    assert head in table
    assert "| CE | 50 | 50.5 ± 0.7 (n=2) | 59.72 ± 5.9 | 50.5 ± 0.7 (n=2) | — |" in table
    assert (
        "| CE+EPO | 100 | 52.5 ± 0.7 (n=2, p<0.001, q<0.001) | — "
        "| 52.5 ± 0.7 (n=2, p<0.001, q<0.001) | 74.29 |" in table
    )
    assert "Beside each task: paper, RoBERTa-base" in table
    # the paper's row order: CE, then the two-objective losses LS before EPO
    assert table.index("| CE | 50 ") < table.index("| CE+LS | 50 ") < table.index("| CE+EPO | 50 ")
    # 24 runs of 100 or 101 s
    assert "Job time: 2,412 s (0.7 h) over 24 runs (qnli 1,206 s, sst2 1,206 s)." in table
    rows = {(r["task"], r["N"], r["loss"]): r for r in csv.DictReader(open(out / "table.csv"))}
    assert rows[("qnli", "100", "CE+EPO")]["reference_mean"] == "74.29"
    assert rows[("sst2", "50", "CE")]["reference_std"] == "5.9"
    assert rows[("sst2", "100", "CE")]["reference_mean"] == ""
    assert rows[("sst2", "100", "CE")]["reference_source"] == ""  # no reference cell: no source
    # one figure of each kind per (task, N): losses of other sizes are not comparable
    for task in ("sst2", "qnli"):
        for n in (50, 100):
            assert (out / f"loss_space_{task}_N{n}.png").is_file()
            assert (out / f"tsne_{task}_N{n}.png").is_file()
    assert not (out / "loss_space.png").exists() and not (out / "tsne.png").exists()


def test_a_bad_reference_file_stops_in_one_line_naming_its_line(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in range(2):
        table_run(sweep, "sst2", 20, "CE", seed, 0.6)
    cases = {
        "task,N,loss,mean\nsst2,20,CE,60\n": "line 1: columns task,N,loss,mean; expected",
        "task,N,loss,mean,std,source\nsst2,20,CE,61.5,,p\nsst2,twenty,CE,60,,p\n": (
            "line 3: N 'twenty'; expected a whole number"
        ),
        "# c\ntask,N,loss,mean,std,source\nsst2,20,CE,0.6x,,p\n": "line 3: mean '0.6x'",
        "task,N,loss,mean,std,source\nsst2,20,CE,60,,p\nsst2,20,CE,61,,p\n": "a second row",
        "task,N,loss,mean,std,source\nsst2,20,CE,60,,p\nsst2,20,CE+LS,61,,q\n": "several sources",
        "task,N,loss,mean,std,source\nsst2,20,CE,6e1,,p\n": "line 2: mean '6e1'; expected a",
        'task,N,loss,mean,std,source\nsst2,20,CE,60,,"p\nq"\n': "line 3: a quoted field runs",
    }
    report = load_script("sweep/report.py")
    for text, message in cases.items():
        ref = tmp_path / "ref.csv"
        ref.write_text(text)
        argv = [str(sweep), "--out", str(tmp_path / "o"), "--reference", str(ref)]
        with pytest.raises(SystemExit) as stop:
            report.main(argv)
        said = str(stop.value.code)  # what the user reads on stderr
        assert "\n" not in said and message in said and str(ref) in said, said
        assert not (tmp_path / "o").exists()  # stopped before writing anything


def test_the_shipped_reference_names_cells_as_the_report_does():
    ref = load_script("sweep/report.py").read_reference(
        ROOT / "sweep" / "reference" / "moukafih2023_table1.csv"
    )
    assert ref.source == "paper, RoBERTa-base"
    tasks, sizes, losses = zip(*ref.cells)
    assert set(tasks) <= {"sst2", "qnli", "mnli"} and set(sizes) <= {20, 50, 100}
    assert set(losses) <= {"CE", "CE+SCL", "CE+LS", "CE+EPO"}
    assert ref.cells[("qnli", 100, "CE")] == ("72.74", "")


def test_short_labels_keep_the_parent_of_a_numbered_entry():
    labels = load_script("sweep/report.py").short_labels(
        ["budget.20", "budget.100", "optimizer.lr", "encoder.name"]
    )
    assert labels == {
        "budget.20": "budget.20",
        "budget.100": "budget.100",
        "optimizer.lr": "lr",
        "encoder.name": "encoder.name",
    }


def test_a_reference_written_by_a_spreadsheet_reads(tmp_path):
    """A byte-order mark, spaces after the commas, N as 50.0, a quoted source with a comma."""
    ref = tmp_path / "ref.csv"
    ref.write_text('\ufefftask, N, loss, mean, std, source\nsst2, 50.0, CE, 59.72, 5.9, "a, b|c"\n')
    read = load_script("sweep/report.py").read_reference(ref)
    assert read.source == "a, b|c" and read.cells == {("sst2", 50, "CE"): ("59.72", "5.9")}
    assert read.cell("sst2", 50.0, "CE") == ("59.72", "5.9") and read.cell("qnli", 50, "CE") == (
        "",
        "",
    )


def test_runs_on_the_whole_training_set_get_their_own_figures(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    for n in (20, None):
        for seed in range(2):
            for k, loss in enumerate(("CE", "CE+LS")):
                table_run(sweep, "sst2", n, loss, seed, 0.6 + 0.01 * seed * (1 + k))
    _report(sweep, out)
    assert (out / "loss_space_sst2_N20.png").is_file()
    assert (out / "loss_space_sst2_Nall.png").is_file()  # N = None: not dropped
    assert not (out / "loss_space.png").exists()
    table = (out / "table.md").read_text()
    assert "| CE | all | 60.5 ± 0.7 (n=2) |" in table and "| CE | 20 |" in table
    # each size's runs are compared with CE of that size, the whole set's too: two comparisons
    assert "| CE+LS | all | 61.0 ± 1.4 (n=2, p=" in table and "no CE to compare" not in table
    assert "table's 2 comparisons" in table


def test_the_expected_seeds_missing_runs_differences_and_code_versions(tmp_path):
    """--seeds names the seeds every row must have: a seed outside it is left out (never
    sinking the rows that lack it), a seed missing from every loss makes them incomplete; a job
    folder without a record is listed; the paired differences come with their t interval; the
    code versions are stated."""
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    ce, epo = [0.60, 0.62, 0.58], [0.66, 0.65, 0.64]
    for seed in range(3):
        table_run(sweep, "sst2", 50, "CE", seed, ce[seed])
        table_run(sweep, "sst2", 50, "CE+EPO", seed, epo[seed])
    table_run(sweep, "sst2", 50, "CE+EPO", 7, 0.9)  # an extra seed of one loss only
    m = json.loads((sweep / "sst2_50_CE_EPO_0" / "metrics.json").read_text())
    m["code"] = {"version": "0.4.0", "commit": "0123456789abcdef", "dirty": True}
    (sweep / "sst2_50_CE_EPO_0" / "metrics.json").write_text(json.dumps(m))
    (sweep / "running" / ".hydra").mkdir(parents=True)
    (sweep / "running" / ".hydra" / "config.yaml").write_text("seed: 3\n")

    # without --seeds, every seed any run has is expected: the extra one sinks CE
    _report(sweep, out)
    table = (out / "table.md").read_text()
    assert "| CE | 50 |" not in table and "seeds [0, 1, 2] of [0, 1, 2, 7]" in table
    assert "- running: no metrics.json (still running, or stopped before" in table

    _report(sweep, out, "--seeds", "0-2")
    table = (out / "table.md").read_text()
    assert "| CE | 50 | 60.0 ± 2.0 (n=3) |" in table
    assert "| CE+EPO | 50 | 65.0 ± 1.0 (n=3, p=0.038, q=0.038) |" in table
    assert "every row has the seeds 0-2 (--seeds)" in table
    assert "- sst2_50_CE_EPO_7: seed 7 is not one of --seeds 0-2" in table
    assert "Test accuracy (%) of the one setting each row ran (nothing chosen)" in table
    assert "Code: 0123456789 +changes (1 run), not recorded (5 runs)." in table
    # the differences: 6, 3 and 6 points; mean 5, sd √3, so the t interval is 5 ± t(0.975, 2)
    half = 4.302653
    assert f"| CE+EPO | 50 | +5.0 [{5 - half:+.1f}, {5 + half:+.1f}] |" in table
    row = next(r for r in csv.DictReader(open(out / "table.csv")) if r["loss"] == "CE+EPO")
    assert row["seeds"] == "0 1 2" and row["n"] == "3"
    assert float(row["diff_vs_ce_ci95_low"]) == pytest.approx(5 - half)
    assert [r["code"] for r in csv.DictReader(open(out / "runs.csv"))][:1] == ["not recorded"]

    _report(sweep, out, "--seeds", "0-3")  # seed 3 is missing everywhere: every row incomplete
    table = (out / "table.md").read_text()
    assert "| CE | 50 |" not in table and "seeds [0, 1, 2] of [0, 1, 2, 3]" in table


@pytest.mark.parametrize("text", ["0-", "3-1", "a", "1,,2"])
def test_a_malformed_seed_list_is_one_line(tmp_path, text):
    sweep = tmp_path / "sweep"
    table_run(sweep, "sst2", 20, "CE", 0, 0.6)
    proc = subprocess.run(
        [sys.executable, "sweep/report.py", str(sweep), "--out", str(tmp_path / "o"),
         "--seeds", text],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "--seeds" in proc.stderr and "0-9" in proc.stderr


def test_one_seed_has_a_baseline_but_no_test(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    table_run(sweep, "sst2", 20, "CE", 0, 0.60)
    table_run(sweep, "sst2", 20, "CE+EPO", 0, 0.65)
    _report(sweep, out)
    table = (out / "table.md").read_text()
    assert "| CE+EPO | 20 | 65.0 (n=1, one seed: no test) |" in table
    assert "no p-values: every row has one seed (a paired test needs two)." in table


def test_a_fixed_data_seed_is_a_setting_even_in_the_run_of_that_seed(tmp_path):
    """data.seed follows the trial by default (data.seed: ${seed}, each seed its own training
    examples); fixing it (data.seed=1: one subset, seeds vary the model only) is another
    protocol: its own rows, complete with seed 1, never a duplicate of the default's seed 1."""
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    for protocol, data_seed in (("follows", "${seed}"), ("fixed", 1)):
        for seed in range(3):
            for k, loss in enumerate(("CE", "CE+LS")):
                test = 0.6 + 0.01 * seed * (1 + k) + (0.1 if protocol == "fixed" else 0.0)
                table_run(sweep / protocol, "sst2", 50, loss, seed, test)
                run = sweep / protocol / f"sst2_50_{loss}_{seed}".replace("+", "_")
                cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
                cfg["data"] = {"seed": data_seed}
                (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
                m = json.loads((run / "metrics.json").read_text())
                resolved = seed if data_seed == "${seed}" else data_seed
                m["settings"] = {**cfg, "data": {"seed": resolved}}
                (run / "metrics.json").write_text(json.dumps(m))
    _report(sweep, out)
    table = (out / "table.md").read_text()
    assert "duplicate" not in table and "incomplete" not in table.lower(), table
    assert "| loss | N | data.seed | sst2 |" in table  # not "seed": that reads as the trial
    assert "| CE | 50 | 1 | 71.0 ± 1.0 (n=3) |" in table, table  # the fixed subset's row
    assert "| CE | 50 | — | 61.0 ± 1.0 (n=3) |" in table, table  # the default: data.seed follows
    # each against its own protocol's CE (seed by seed: +0, +1, +2 points in both)
    assert "| CE+LS | 50 | 1 | 72.0 ± 2.0 (n=3, p=0.225, q=0.225) |" in table, table
    assert "| CE+LS | 50 | — | 62.0 ± 2.0 (n=3, p=0.225, q=0.225) |" in table, table


def test_the_baseline_of_a_row_is_the_ce_group_that_agrees_where_the_ce_groups_differ():
    """Two CE groups (data.seed following the trial, "", and fixed, "7"); EPO rows that also
    have a key only EPO sets (its solver, a row key because it differs): each EPO row is
    compared with the CE group of its own data.seed, the solver key being no help."""
    import pandas as pd

    chosen = pd.DataFrame(
        {
            "task": ["sst2"] * 5,
            "N": [50] * 5,
            "loss": ["CE", "CE", "CE+EPO", "CE+EPO", "CE+EPO"],
            "data.seed": ["", "7", "", "7", ""],
            "combiner.solver": ["", "", "cvxpy", "cvxpy", "qp"],
        },
        index=[10, 11, 12, 13, 14],
    )
    base = load_script("sweep/report.py").baselines(chosen, ["data.seed", "combiner.solver"])
    assert base.loc[12] == 10 and base.loc[13] == 11 and base.loc[14] == 10
    assert pd.isna(base.loc[10]) and pd.isna(base.loc[11])
