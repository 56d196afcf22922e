"""The config groups build objects (data, module, with the text module's encoder and objective
inside it), and the layout before (encoder and objective at the top) still reads: its settings,
saved configs and sweep folders mean what they meant."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from moo_lightning.cli.argv import expand_short_form, normalise_argv
from moo_lightning.cli.naming import job_folder, settings
from moo_lightning.record import short_name, upgrade_settings
from moo_lightning.records import settings_differences
from tests.helpers import CONF

# settings(cfg) of these commands, composed by the 0.2 layout (the commit before the groups
# moved), with MNIST_DIR and PACS_DIR unset
OLD = json.loads((Path(__file__).parents[1] / "fixtures" / "settings_0.2.json").read_text())


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
