import json

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from tests.helpers import CONF, write_digits, write_glue


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


# --- data folders, one per test module ---------------------------------------------------------


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
    """A small SST-2 folder in the GLUE schema."""
    return write_glue(tmp_path_factory.mktemp("glue") / "sst2", "sst2")


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    """Small SST-2, QNLI and MNLI folders: task -> folder."""
    root = tmp_path_factory.mktemp("glue")
    return {t: write_glue(root / t, t) for t in ("sst2", "qnli", "mnli")}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """600 random 'digits' as MNIST's t10k IDX files (Multi-MNIST and Rotated MNIST jobs)."""
    return write_digits(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="module")
def probe_folders(tmp_path_factory):
    """The trust cases' data folders: GOOD, and the cases D24, DN3 and C19."""
    root = tmp_path_factory.mktemp("probe")
    good = write_glue(root / "sst2", "sst2")
    both = write_glue(root / "both", "sst2")  # D24: the glue-schema files and the GLUE TSVs
    rows = "".join(f"film {i}\t{1 - i % 2}\n" for i in range(30))
    (both / "train.tsv").write_text("sentence\tlabel\n" + rows)
    (both / "dev.tsv").write_text("sentence\tlabel\n" + rows)
    one_val = write_glue(root / "one_val", "sst2", n_val=1)  # DN3: nothing left to test on
    long = root / "long"  # C19: texts longer than the encoder's positions
    long.mkdir()
    text = " ".join(["a long film review"] * 300)
    for split, n in (("train", 30), ("validation", 10)):
        lines = [f'{{"sentence": "{text} {i}", "label": {i % 2}}}\n' for i in range(n)]
        (long / f"{split}.jsonl").write_text("".join(lines))
    return {"GOOD": good, "BOTH": both, "ONE_VAL": one_val, "LONG": long}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """W&B offline, every W&B folder (runs, staged tables, cache, settings) under tmp_path."""
    for var, sub in (
        ("WANDB_DIR", "wandb_dir"),
        ("WANDB_DATA_DIR", "wandb_data"),
        ("WANDB_CACHE_DIR", "wandb_cache"),
        ("WANDB_CONFIG_DIR", "wandb_config"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
