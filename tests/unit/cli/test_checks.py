"""The run-level checks of the command line, on configs built by hand."""

import pytest
from omegaconf import OmegaConf

from moo_lightning.cli.checks import check_unknown_keys


def test_a_top_level_key_nothing_reads_is_refused_but_an_interpolated_helper_is_not():
    used = OmegaConf.create({"seed": 0, "base_lr": 1e-3, "optimizer": {"lr": "${base_lr}"}})
    check_unknown_keys(used)  # +base_lr=1e-3 optimizer.lr='${base_lr}': read through optimizer.lr
    unused = OmegaConf.create({"seed": 0, "lr": 0.5, "optimizer": {"lr": 1e-5}})
    with pytest.raises(ValueError, match=r"called 'lr'.*Did you mean optimizer\.lr"):
        check_unknown_keys(unused)


def test_a_setting_the_built_object_does_not_take_is_one_line_listing_those_it_takes():
    """+combiner.epss=1 ended in EPO.__init__()'s TypeError; nested objects are named by the key
    the command types (objective.lamm for module.objective.lamm); objects taking **kwargs are
    left alone."""
    from moo_lightning.cli.checks import check_target_settings

    combiner = {"_target_": "moo_lightning.combiners.EPO", "eps": 1e-4}
    check_target_settings(OmegaConf.create({"combiner": combiner}))
    with pytest.raises(ValueError) as info:
        check_target_settings(OmegaConf.create({"combiner": {**combiner, "epss": 1}}))
    assert str(info.value) == (
        "combiner.epss=1: moo_lightning.combiners.EPO (combiner) takes no setting 'epss'. "
        "Did you mean combiner.eps? Its settings: eps, descent, solver, cvxpy_solver, on_failure"
    )
    objective = {"_target_": "moo_lightning.tasks.glue.objectives.MOOContrastive", "lamm": 0.5}
    with pytest.raises(ValueError, match=r"^objective\.lamm=0\.5: .*MOOContrastive \(objective\)"):
        check_target_settings(OmegaConf.create({"module": {"objective": objective}}))
    anything = {"_target_": "tests.unit.cli.test_checks._takes_anything", "whatever": 1}
    check_target_settings(OmegaConf.create({"callbacks": {"mine": anything}, "hydra": combiner}))


def _takes_anything(**kwargs):
    return kwargs
