"""TwoHeads (ddp_helpers.py) with any combiner composed from its YAML plus Hydra overrides (config
groups included), saving the combiner's state and learnable weights at the end of training.
Module level so that ddp_spawn can pickle it."""

import functools
from pathlib import Path

import torch

from moo_lightning.module import MultiObjectiveModule
from tests.helpers import CONF
from tests.integration.ddp_helpers import TwoHeads, fit_on_ranks


def compose_combiner(name: str, overrides: tuple[str, ...] = ()):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("train", overrides=[f"combiner={name}", *overrides])
    return instantiate(cfg.combiner)


class StatefulHeads(TwoHeads):
    def __init__(self, name: str, overrides: tuple[str, ...], out_dir: str):
        MultiObjectiveModule.__init__(
            self,
            compose_combiner(name, overrides),
            [0.3, 0.7],
            optimizer=functools.partial(torch.optim.SGD, lr=0.05),
        )
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh())
        self.heads = torch.nn.Linear(16, 2)
        self.out_dir = out_dir
        self.weight_history = []
        self.contrastive = None
        self.criterion = False

    def on_train_end(self):
        super().on_train_end()
        path = Path(self.out_dir) / f"combiner{self.global_rank}_of{self.trainer.world_size}.pt"
        torch.save(
            {
                "state": self.combiner.state_dict(),
                "params": [p.detach().clone() for p in self.combiner.parameters()],
            },
            path,
        )


def train(name: str, overrides: tuple[str, ...], devices: int, out_dir: str):
    """Same global batches either way: 16 per step (1 process × 16, or 2 processes × 8)."""
    fit_on_ranks(StatefulHeads(name, overrides, out_dir), devices)
