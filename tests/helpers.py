"""What the tests share: paths, small GLUE folders, random and degenerate Gram matrices, and every
combiner of moo_lightning/conf/combiner/ built from its YAML (the only registry) with the
promises it declares."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "moo_lightning" / "conf")

# --- combiners, from their configs ------------------------------------------------------------

# settings of a combiner worth checking on their own (besides each YAML's defaults)
VARIANTS = {"epo": [("solver=exact",)], "png": [("e=0",)]}


def combiner_names() -> list[str]:
    return sorted(p.stem for p in (ROOT / "moo_lightning" / "conf" / "combiner").glob("*.yaml"))


def combiner_cases() -> list[str]:
    """Every combiner of moo_lightning/conf/combiner/, and its VARIANTS, as ids: 'epo',
    'epo[solver=exact]'."""
    cases = []
    for name in combiner_names():
        cases.append(name)
        cases += [f"{name}[{','.join(v)}]" for v in VARIANTS.get(name, [])]
    return cases


@functools.cache
def _combiner_config(case: str):
    from hydra import compose, initialize_config_dir

    name, _, rest = case.partition("[")
    overrides = [f"combiner.{o}" for o in rest.rstrip("]").split(",") if o]
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("train", overrides=[f"combiner={name}", *overrides])
    return cfg.combiner


def build_combiner(case: str):
    """A fresh combiner for a case id of combiner_cases()."""
    from hydra.utils import instantiate

    return instantiate(_combiner_config(case))


# --- Gram matrices: the package's own (moo_lightning.testing), for the tests' short imports ----

from moo_lightning.testing import degenerate_grams, random_gram, random_problem  # noqa: E402, F401

# --- a small GLUE-schema folder -----------------------------------------------------------------

WORDS = "good great fine bad poor dull film plot actor scene story the a was is very not".split()


def write_glue(folder: Path, task: str, n_train: int = 60, n_val: int = 40) -> Path:
    import random

    rnd = random.Random(0)
    fields = {
        "sst2": ["sentence"],
        "qnli": ["question", "sentence"],
        "mnli": ["premise", "hypothesis"],
    }[task]
    classes = 3 if task == "mnli" else 2
    val_name = "validation_matched" if task == "mnli" else "validation"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), (val_name, n_val)):
        with open(folder / f"{split}.jsonl", "w") as f:
            for i in range(n):
                row = {k: " ".join(rnd.choices(WORDS, k=6)) for k in fields}
                f.write(json.dumps(row | {"label": i % classes, "idx": i}) + "\n")
    return folder


def write_digits(folder: Path, n: int = 600) -> Path:
    """``n`` random 28×28 'digits' with labels 0..9 as MNIST t10k IDX files."""
    from moo_lightning.mnist import write_idx

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ink = rng.random((n, 28, 28)) < 0.2
    write_idx(
        folder / "t10k-images-idx3-ubyte", (rng.random((n, 28, 28)) * 255 * ink).astype(np.uint8)
    )
    write_idx(folder / "t10k-labels-idx1-ubyte", rng.integers(0, 10, n).astype(np.uint8))
    return folder


def random_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 28×28 uint8 images and the labels 0..9 in turn."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def write_mnist_split(folder: Path, split: str = "t10k", n: int = 120, gz: bool = False, seed=0):
    """A split of :func:`random_digits` as MNIST IDX files (``.gz`` when ``gz``): the images and
    labels written."""
    from moo_lightning.mnist import write_idx

    images, labels = random_digits(n, seed)
    ext = ".gz" if gz else ""
    write_idx(folder / f"{split}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", labels)
    return images, labels


def wandb_records(path):
    """Records of an offline .wandb file (a LevelDB-style log of protobuf records after a 7-byte
    ':W&B' header; this wandb keeps no Python reader for it)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full record, or the last piece of one
            rec = pb.Record()
            rec.ParseFromString(pending + chunk)
            pending = b""
            yield rec
        elif kind in (2, 3):
            pending += chunk


def __getattr__(name):
    """``tests.helpers.OwnObjective``: a user's own objective class (the ``--trust`` test of
    moo-evaluate), built on first use so that importing the helpers stays light."""
    if name != "OwnObjective":
        raise AttributeError(name)
    from moo_lightning.tasks.glue.objectives import MOOContrastive

    own = type("OwnObjective", (MOOContrastive,), {"__module__": __name__})
    globals()[name] = own
    return own


def write_pacs(
    folder: Path,
    per_class: int = 3,
    size: int = 12,
    domains=("art_painting", "cartoon", "photo", "sketch"),
    classes=("dog", "elephant", "giraffe", "guitar", "horse", "house", "person"),
    split_lists: bool = False,
) -> Path:
    """A tiny folder in the PACS layout (domain/class/image.png, random RGB pictures), with the
    official ``<domain>_train_kfold.txt`` / ``_crossval_kfold.txt`` lists when asked (the last
    image of each class to crossval)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for domain in domains:
        train, val = [], []
        for c, name in enumerate(classes):
            (folder / domain / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                rel = f"{domain}/{name}/pic_{i:03d}.png"
                pixels = (rng.random((size, size, 3)) * 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / rel)
                (val if i == per_class - 1 else train).append(f"{rel} {c + 1}")
        if split_lists:
            (folder / f"{domain}_train_kfold.txt").write_text("\n".join(train) + "\n")
            (folder / f"{domain}_crossval_kfold.txt").write_text("\n".join(val) + "\n")
    return folder


def as_unprivileged(cmd: list[str]) -> list[str] | None:
    """``cmd`` run so that a folder's permissions apply to it: as root, through setpriv without
    the capabilities that override them (None when that is not possible: skip the check)."""
    import os
    import shutil

    if os.geteuid() != 0:
        return cmd
    if not shutil.which("setpriv"):
        return None
    drop = "--bounding-set=-dac_override,-dac_read_search,-fowner"
    return ["setpriv", drop, "--inh-caps=-all", *cmd]


def lock_folder_at_fit_end(folder: str):
    """A Lightning callback (``+callbacks.lock._target_=tests.helpers.lock_folder_at_fit_end``)
    that makes ``folder`` read-only when fit ends: a run folder that stops being writable
    during a run, as a full quota or another user's chmod would leave it."""
    import lightning as L

    class Lock(L.Callback):
        def on_fit_end(self, trainer, pl_module):
            Path(folder).chmod(0o555)

    return Lock()


# --- train.py as a user runs it (the integration tests) ---------------------------------------

# a two-step SST-2 job on the offline tiny encoder (the caller adds data.path)
TINY = ("task=sst2", "encoder=tiny", "logger=none", "trainer.max_steps=2")


def tiny_sst2(data) -> list[str]:
    """Overrides of a four-step SST-2 job on the tiny encoder, validated every two steps."""
    return [
        "task=sst2",
        "encoder=tiny",
        f"data.path={data}",
        "logger=none",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "trainer.enable_progress_bar=false",
    ]


def sst2_cmd(data, run_dir, *extra) -> list[str]:
    """``python train.py`` with :func:`tiny_sst2` in the run folder ``run_dir``."""
    import sys

    return [sys.executable, "train.py", *tiny_sst2(data), f"hydra.run.dir={run_dir}", *extra]


def sst2_steps(data, *extra) -> tuple[str, ...]:
    """Overrides of an SST-2 job of two batches per epoch (20 examples, batch 16) that learns fast
    (lr 3e-3): the step-budget checks."""
    return (
        "task=sst2",
        "encoder=tiny",
        f"data.path={data}",
        "logger=none",
        "data.num_train=20",  # batch 16: two batches per epoch
        "optimizer.lr=3e-3",
        "trainer.enable_progress_bar=false",
        *extra,
    )


def quick_sweep(data, sweep_dir, *extra: str) -> list[str]:
    """Arguments of a two-seed sweep of one-batch jobs on the tiny model."""
    return [
        "-m",
        *extra,
        "task=sst2",
        "encoder=tiny",
        f"data.path={data}",
        "++trainer.fast_dev_run=true",
        "logger=none",
        "seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
    ]


def run_cmd(cmd: list[str]):
    """A command run in the checkout, its output captured as text."""
    import subprocess

    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def train_py(args: list[str], env=None, timeout=900):
    """``python train.py *args`` run in the checkout, its output captured as text."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def train_in(run_dir, *overrides):
    """train.run in-process in a given run folder (the run_train fixture names its own)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from moo_lightning.cli import train
    from moo_lightning.cli.argv import expand_short_form

    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose(
            "train", overrides=[*map(expand_short_form, overrides)], return_hydra_config=True
        )
    with open_dict(cfg):
        cfg.paths.run_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    return train.run(cfg)


def last_line(proc) -> str:
    return proc.stderr.strip().splitlines()[-1]


def one_line_error(proc) -> str:
    """The one error line of a command that failed without a traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def strict_json(path):
    """A JSON file read with NaN and Infinity refused."""

    def refuse(token):
        raise ValueError(f"non-strict JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def readme_energy_rows() -> dict[str, tuple[float, float, float, float]]:
    """The README's toy-ensemble table: start -> (hv mean, hv std, igd+ mean, igd+ std) of the
    energy rows."""
    import re

    text = (ROOT / "README.md").read_text()
    row = re.compile(
        r"^\| energy \| (\w+) \| (\d+) \| ([\d.]+) ± ([\d.]+) \([\d.–]+\) "
        r"\| ([\d.]+) ± ([\d.]+) \|$",
        re.M,
    )
    rows = {m[1]: tuple(float(m[k]) for k in (3, 4, 5, 6)) for m in row.finditer(text)}
    assert sorted(rows) == ["clustered", "extremes"], rows
    return rows


def _complete_records(log, timeout=30.0):
    """The records of an offline run file once it holds the run's exit record: wandb's service
    may still be writing it when finish() returns (seen on the first run after a teardown)."""
    import time

    from google.protobuf.message import DecodeError

    deadline = time.monotonic() + timeout
    while True:
        try:
            records = list(wandb_records(log))
        except (DecodeError, AssertionError):  # a partly written file
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{log} has no exit record after {timeout} s")
        time.sleep(0.1)


def read_wandb_run(folder):
    """(run record, summary, config keys of wandb.init, files dir) of the offline W&B run in
    folder."""
    (log,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    summary, run = {}, None
    for rec in _complete_records(log):
        kind = rec.WhichOneof("record_type")
        if kind == "summary":
            for u in rec.summary.update:
                summary[u.key or "/".join(u.nested_key)] = json.loads(u.value_json)
        elif kind == "run":
            run = rec.run
    init_config = {u.key: json.loads(u.value_json) for u in run.config.update}
    return run, summary, init_config, log.parent / "files"


def quiet_trainer(**settings):
    """A CPU Lightning Trainer that logs, checkpoints and prints nothing; ``settings`` are the
    Trainer's own (``max_steps=4``; ``max_epochs`` is 1 unless given)."""
    import lightning as L

    if "max_steps" not in settings:
        settings.setdefault("max_epochs", 1)
    return L.Trainer(
        logger=False,
        enable_checkpointing=settings.pop("enable_checkpointing", False),
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **settings,
    )


def mm_small(num_train: int) -> tuple[str, ...]:
    """Command-line settings of a one-epoch Multi-MNIST run on ``num_train`` training images
    (64 validation, 128 test, batches of 64, no logger)."""
    return (
        f"data.num_train={num_train}",
        "data.val_size=64",
        "data.num_test=128",
        "data.batch_size=64",
        "data.eval_batch_size=64",
        "trainer.max_epochs=1",
        "logger=none",
    )


@functools.cache
def load_script(path: str):
    """A script of the checkout that is not part of the package (``"sweep/report.py"``,
    ``"bench/crosscheck.py"``) as a module, loaded once per test process."""
    import importlib.util
    import sys

    name = "script_" + path.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up by name
    spec.loader.exec_module(module)
    return module
