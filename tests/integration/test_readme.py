"""The README's "Use the pieces in your own code" snippets run as written."""

import re

import torch

from tests.helpers import ROOT


def _snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use the pieces in your own code", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_the_plain_pytorch_and_the_lightning_snippet():
    plain, lightning = _snippets()
    assert "pos_neg_losses" in plain and "write_direction" in plain
    assert "MultiObjectiveModule" in lightning and "trainer.fit" in lightning


def test_plain_pytorch_snippet_takes_one_epo_step():
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(_snippets()[0], "README snippet 1", "exec"), scope)
    w = scope["result"].weights
    assert w.shape == (2,) and torch.all(w >= 0) and torch.isclose(w.sum(), torch.tensor(1.0))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in scope["params"])
    assert scope["opt"].state  # AdamW stepped with the written gradient


def test_lightning_snippet_trains_both_objectives_down():
    torch.manual_seed(0)
    scope: dict = {"__name__": "readme_snippet"}
    exec(compile(_snippets()[1], "README snippet 2", "exec"), scope)
    assert scope["trainer"].global_step == 3 * 8  # 256 examples / 32, three epochs
    x, y = scope["x"], scope["y"]
    untrained = scope["TwoTargets"](scope["MGDA"](), [0.5, 0.5])
    with torch.no_grad():
        before = untrained.objectives((x, y))
        after = scope["model"].objectives((x, y))
    assert torch.all(after < 0.5 * before), (before, after)
