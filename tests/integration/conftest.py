import json

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from tests.helpers import CONF


@pytest.fixture
def run_train(tmp_path):
    """Compose the real config with overrides, run train.run, return metrics.json."""
    from moo_lightning.cli import train

    def _run(*overrides: str) -> dict:
        from moo_lightning.cli.argv import expand_short_form

        typed = [expand_short_form(o) for o in overrides]  # encoder=tiny as train.py reads it
        with initialize_config_dir(CONF, version_base="1.3"):
            cfg = compose("train", overrides=typed, return_hydra_config=True)
        import hashlib

        name = "_".join(o.replace("/", "-") for o in overrides)
        # a long list of overrides is cut, and told apart from another by its hash
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        run_dir = tmp_path / (name if len(name) <= 120 else f"{name[:110]}~{digest}")
        with open_dict(cfg):
            cfg.paths.run_dir = str(run_dir)
        HydraConfig.instance().set_config(cfg)
        train.run(cfg)
        return json.loads((run_dir / "metrics.json").read_text()) | {"run_dir": str(run_dir)}

    return _run
