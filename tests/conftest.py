import atexit
import os
import random
import shutil
import tempfile
import warnings

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
if "HF_DATASETS_CACHE" not in os.environ:
    # the test data are new files every run (random rows in temporary folders), each cached by
    # its content: a cache of the run's own (shared by its workers and the train.py processes
    # they start, which inherit the variable), removed when the run ends, so a test run never
    # grows the user's ~/.cache/huggingface
    _datasets_cache = tempfile.mkdtemp(prefix="moo-lightning-tests-datasets-")
    os.environ["HF_DATASETS_CACHE"] = _datasets_cache
    atexit.register(shutil.rmtree, _datasets_cache, ignore_errors=True)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # make test runs one worker per core: each worker (and the train.py processes it starts)
    # computes with one thread, so two workers do not fight over the cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
warnings.filterwarnings("ignore", ".*litlogger.*")


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
