"""sweep/report.py on a synthetic sweep: selection by validation, incomplete groups, paired test."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]


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


def _report(sweep: Path, out: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "sweep/report.py", str(sweep), "--out", str(out)],
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
    assert "| CE+EPO | 20 | 65.0 ± 2.0 (n=3, p=0.000) |" in table  # τ=0.3 chosen, not 0.99 test
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


def _with_settings(root: Path, name: str, settings: dict, **run) -> None:
    fake_run(root, name, **run)
    m = json.loads((root / name / "metrics.json").read_text())
    (root / name / "metrics.json").write_text(json.dumps(m | {"settings": settings}))


def test_rows_are_told_apart_by_the_settings_that_differ(tmp_path):
    """Runs of one loss that differ in the encoder are separate rows with an encoder column
    (never averaged together, never chosen between by validation); what every run shares is
    said once under the table."""
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    for s in range(2):
        for encoder, acc in (("minilm", 0.6), ("roberta-base", 0.8)):
            settings = {
                "encoder": {"name": encoder, "pooling": "cls"},
                "optimizer": {"lr": 1e-05},
                "data": {"batch_size": 16, "seed": s},
                "seed": s,
            }
            for objective, combiner in (("ce", "ls"), ("moo", "epo")):
                _with_settings(
                    sweep, f"{objective}_{encoder}_s{s}", settings, objective=objective,
                    combiner=combiner, seed=s, val=acc, test=acc + s / 100,
                )  # fmt: skip
    _report(sweep, out)
    table = (out / "table.md").read_text()
    assert "| loss | N | encoder.name | sst2 |" in table
    assert "| CE | 20 | minilm | 60.5 ± 0.7 (n=2) |" in table
    assert "| CE | 20 | roberta-base | 80.5 ± 0.7 (n=2) |" in table
    assert "| CE+EPO | 20 | roberta-base | 80.5 ± 0.7 (n=2, p=1.000) |" in table  # its own CE
    assert "All rows: optimizer.lr=1e-05, data.batch_size=16." in table
    assert "encoder.pooling" not in table  # shared, and not one of the settings named
    chosen = list(csv.DictReader(open(out / "table.csv")))
    assert sorted((r["loss"], r["encoder.name"]) for r in chosen) == [
        ("CE", "minilm"), ("CE", "roberta-base"), ("CE+EPO", "minilm"), ("CE+EPO", "roberta-base")
    ]  # fmt: skip
    runs = list(csv.DictReader(open(out / "runs.csv")))
    assert len(runs) == 8 and {r["encoder.name"] for r in runs} == {"minilm", "roberta-base"}


def test_a_sweep_without_differing_settings_has_no_extra_columns(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    for s in range(2):
        settings = {"encoder": {"name": "minilm"}, "optimizer": {"lr": 2e-05}, "seed": s}
        _with_settings(sweep, f"ce_s{s}", settings, objective="ce", combiner="ls", seed=s,
                       val=0.6, test=0.6)  # fmt: skip
    _report(sweep, out)
    table = (out / "table.md").read_text()
    assert (
        "| loss | N | sst2 |" in table
        and "All rows: encoder.name=minilm, optimizer.lr=2e-05." in table
    )
