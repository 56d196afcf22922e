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


# --- Gram matrices ------------------------------------------------------------------------------


def random_gram(rng: np.random.Generator, m: int, rank: int | None = None) -> np.ndarray:
    A = rng.standard_normal((m, rank or m + 2))
    return A @ A.T


def random_problem(rng: np.random.Generator, m: int):
    """Positive losses, a positive preference and a PSD Gram matrix of random rank."""
    losses = rng.uniform(0.05, 2.0, m)
    pref = rng.uniform(0.05, 1.0, m)
    K = random_gram(rng, m, rank=int(rng.integers(1, m + 3)))
    return losses, pref / pref.sum(), K


def degenerate_grams(m: int) -> dict[str, np.ndarray]:
    g = np.arange(1.0, 4.0)
    one = np.outer(np.ones(m), np.ones(m)) * (g @ g)  # identical objectives
    rank1 = np.outer(np.linspace(1, -1, m), np.linspace(1, -1, m))  # (anti)parallel grads
    return {
        "zero": np.zeros((m, m)),
        "identical": one,
        "rank1": rank1,
        "huge": 1e12 * (np.eye(m) + 0.5),
        "tiny": 1e-12 * (np.eye(m) + 0.5),
    }


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
