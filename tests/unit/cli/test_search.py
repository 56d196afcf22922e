"""The Optuna sweeper's "no trial completed" ending, told in one line about the search that ran."""

import pytest
from omegaconf import OmegaConf


def test_a_second_search_in_one_process_is_named_by_its_own_config(monkeypatch):
    _impl = pytest.importorskip("hydra_plugins.hydra_optuna_sweeper._impl")
    from moo_lightning.cli import search

    def no_trial(self, arguments):
        raise ValueError("No trials are completed yet.")

    monkeypatch.setattr(_impl.OptunaSweeperImpl, "sweep", no_trial)
    for metric, folder in (("val/first", "/runs/a"), ("val/second", "/runs/b")):
        cfg = OmegaConf.create({"optimized_metric": metric, "hydra": {"sweep": {"dir": folder}}})
        search._no_completed_trial(cfg)  # patched once, then only told the new search
        with pytest.raises(SystemExit) as info:
            _impl.OptunaSweeperImpl.sweep(None, [])
        message = str(info.value)
        assert f"optimized_metric={metric}" in message and f"under {folder}" in message
