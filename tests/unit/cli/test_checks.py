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
