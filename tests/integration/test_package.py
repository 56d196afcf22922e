"""What is shipped: an installed copy runs (the wheel carries the Hydra configs, and its entry
point trains from a folder that has no checkout in it), and the README's "Use the pieces in your
own code" snippets run as written."""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from tests.helpers import ROOT, train_in


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


# --- the README's snippets ------------------------------------------------------------------------


def _snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use the pieces in your own code", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_the_plain_pytorch_and_the_lightning_snippet():
    plain, lightning = _snippets()
    assert "pos_neg_losses" in plain and "write_direction" in plain
    assert "MultiObjectiveModule" in lightning and "trainer.fit" in lightning


def test_plain_pytorch_snippet_takes_one_epo_step():
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(_snippets()[0], "README snippet 1", "exec"), scope)
    w = scope["result"].weights
    assert w.shape == (2,) and torch.all(w >= 0) and torch.isclose(w.sum(), torch.tensor(1.0))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in scope["params"])
    assert scope["opt"].state  # AdamW stepped with the written gradient


def test_lightning_snippet_trains_both_objectives_down():
    torch.manual_seed(0)
    scope: dict = {"__name__": "readme_snippet"}
    exec(compile(_snippets()[1], "README snippet 2", "exec"), scope)
    assert scope["trainer"].global_step == 3 * 8  # 256 examples / 32, three epochs
    x, y = scope["x"], scope["y"]
    untrained = scope["TwoTargets"](scope["MGDA"](), [0.5, 0.5])
    with torch.no_grad():
        before = untrained.objectives((x, y))
        after = scope["model"].objectives((x, y))
    assert torch.all(after < 0.5 * before), (before, after)


# --- docs/extending: a combiner, model and data of one's own, run by train.py ------------------

EXTENDING = ROOT / "docs" / "extending"


def _extending(*args):
    env = {**os.environ, "PYTHONPATH": str(EXTENDING), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args, "task=two_targets",
         f"hydra.searchpath=[file://{EXTENDING / 'conf'}]", "logger=none"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _train_extending(run_dir, *overrides):
    proc = _extending(f"hydra.run.dir={run_dir}", *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text()), proc.stderr


def test_a_preference_sweep_over_the_examples_preference_free_combiner_is_refused(tmp_path):
    proc = _extending(
        "-m", "combiner=loss_prop", "preference=0.2,0.5", f"hydra.sweep.dir={tmp_path}"
    )
    assert proc.returncode != 0
    assert "combiner loss_prop ignores the preference" in proc.stderr
    assert not list(tmp_path.glob("*/metrics.json"))  # refused before any job ran


def test_the_extending_example_trains_with_its_own_and_a_built_in_combiner(tmp_path):
    m, _ = _train_extending(tmp_path / "own", "combiner=loss_prop")
    assert m["status"] == "ok" and m["combiner"] == "loss_prop" and m["preference"] is None
    assert m["test/mse_0"] < 0.5 and m["test/mse_1"] < 0.5  # y has unit-scale targets
    m, log = _train_extending(tmp_path / "shared", "combiner=mgda", "module.gradient_scope=shared")
    assert m["status"] == "ok" and m["combiner"] == "mgda"
    assert "2 parameter tensors are shared" in log and "4 belong to the tasks' heads" in log


def test_the_extending_examples_sweep_becomes_a_table_with_compare(tmp_path):
    """The guide's sweep, its user's own combiner beside built-in ones, through
    sweep/compare.py: the directions come from the user's module (MSEs: smaller is better)."""
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    proc = _extending(
        "-m", "combiner=ls,loss_prop", "seed=0,1", f"hydra.sweep.dir={sweep}",
        "trainer.max_epochs=3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(EXTENDING)}
    proc = subprocess.run(
        [sys.executable, "sweep/compare.py", str(sweep), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (out / "table.md").read_text()
    assert table.startswith("| method | test/mse_0 ↓ | test/mse_1 ↓ | Δm% vs ls |")
    assert "| ls | " in table and "| loss_prop | " in table and "Runs left out" not in table


def test_the_extending_example_resumed_after_an_interruption_ends_as_the_uninterrupted_run(
    tmp_path, monkeypatch, caplog
):
    """The guide's task, cut back to what a kill after its epoch-2 checkpoint leaves and resumed
    with ckpt_path=last, ends with the uninterrupted run's weights and test metrics, bit for
    bit. Before: its data module shuffled with DataLoader(shuffle=True), and the resumed run drew
    other batches from its first step (here test/mse_0 0.0453, uninterrupted 0.0498)."""
    monkeypatch.syspath_prepend(str(EXTENDING))
    run, ckpts = tmp_path / "run", tmp_path / "run" / "checkpoints"
    args = (
        f"hydra.searchpath=[file://{EXTENDING / 'conf'}]", "task=two_targets",
        "combiner=nash_mtl", "logger=none", "trainer.enable_progress_bar=false",
        "callbacks=resume", "callbacks.last.save_top_k=-1", "trainer.max_epochs=6",
    )  # fmt: skip
    train_in(run, *args)
    whole = json.loads((run / "metrics.json").read_text())
    (final,) = ckpts.glob("epoch=5-*.ckpt")
    weights = torch.load(final, weights_only=False)["state_dict"]
    # what a SIGKILL during epoch 3 leaves: no record, no model, epochs 0-2 saved
    for path in [run / "metrics.json", *run.glob("model.ckpt*"), *ckpts.glob("epoch=[345]-*")]:
        path.unlink()
    (ckpts / "last.ckpt").unlink()
    (ckpts / "last.ckpt").symlink_to(next(ckpts.glob("epoch=2-*.ckpt")).name)
    train_in(run, *args, "ckpt_path=last")
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["steps"] == whole["steps"] == 6 * 14
    for key in ("test/mse_0", "test/mse_1", "val/loss_0", "val/loss_1", "combiner_fallbacks"):
        assert resumed[key] == whole[key], key
    again = torch.load(final, weights_only=False)["state_dict"]
    assert weights.keys() == again.keys()
    for k in weights:
        assert torch.equal(weights[k], again[k]), k
    assert "cannot restore its place" not in caplog.text  # the resume warning is not for it


@pytest.mark.slow  # make test-slow: two CPU (gloo) processes
def test_the_extending_example_with_two_ddp_ranks_takes_one_processs_steps(tmp_path):
    """Each rank trains on its half of the same global batches as one process (448 training
    rows, batches of 32: even shares). Before: every rank iterated the whole shuffled set, and
    the final weights were 0.18 away from one process's."""
    common = ("combiner=mgda", "trainer.max_epochs=3", "save_model=true")
    ddp, _ = _train_extending(
        tmp_path / "ddp", *common, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"
    )
    one, _ = _train_extending(tmp_path / "one", *common, "trainer=cpu")
    assert ddp["world_size"] == 2 and ddp["steps"] == one["steps"] == 3 * 14
    a, b = (torch.load(tmp_path / d / "model.ckpt")["state_dict"] for d in ("ddp", "one"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def test_the_extending_examples_combiner_keeps_its_promises():
    sys.path.insert(0, str(EXTENDING))
    try:
        from my_moo import LossProportional
    finally:
        sys.path.remove(str(EXTENDING))
    from moo_lightning.testing import check_combiner

    report = check_combiner(LossProportional())
    assert report.pop("losses not read") == "loss_prop reads the losses"  # as it declares
    assert set(report.values()) == {"ok"}


def test_the_extending_readme_names_the_files_that_are_there():
    text = (EXTENDING / "README.md").read_text()
    for name in re.findall(r"conf/\w+/\w+\.yaml", text):
        assert (EXTENDING / name).is_file(), name
    assert "my_moo.py" in text and (EXTENDING / "my_moo.py").is_file()
