"""The GLUE step budget: validation every K optimizer steps across 2-batch epochs, the best
validation's step recorded, and a resumed run that restores the learning-rate schedule."""

import pytest
import torch

from tests.helpers import write_glue


def _steps(glue, *extra):
    return (
        "task=sst2",
        "encoder=tiny",
        f"data.path={glue}",
        "logger=none",
        "data.num_train=20",  # batch 16: two batches per epoch
        "optimizer.lr=3e-3",
        "trainer.enable_progress_bar=false",
        *extra,
    )


def test_validation_every_k_steps_across_two_batch_epochs(run_train, tmp_path):
    glue = write_glue(tmp_path / "sst2", "sst2")
    m = run_train(*_steps(glue, "trainer.max_steps=9", "trainer.val_check_interval=3"))
    # 9 steps = 4.5 epochs of 2 batches; validation after steps 3, 6 and 9 whatever the epoch
    assert [h[0] for h in m["val_history"]] == [3, 6, 9]
    best = max(h[1] for h in m["val_history"])
    assert m["val/acc_best"] == best
    assert m["best_step"] == next(s for s, a in m["val_history"] if a == best)
    assert m["choices"]["scheduler"] == "linear"


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_resume_restores_the_schedule(run_train, tmp_path):
    """An 8-step run against the same run resumed from its step-4 checkpoint: equal final weights
    (the linear schedule's learning rate at steps 5-8 depends on its restored state)."""
    glue = write_glue(tmp_path / "sst2", "sst2")
    common = _steps(
        glue,
        "trainer.max_steps=8",
        "trainer.val_check_interval=2",
        "callbacks=resume",
        "callbacks.last.save_top_k=-1",  # keep every epoch's checkpoint
        "combiner=epo",
    )
    full = run_train(*common)
    ckpts = sorted((tmp_path / "x").parent.glob("**/checkpoints/epoch=1-step=4.ckpt"))
    assert len(ckpts) == 1, ckpts
    state = torch.load(ckpts[0], weights_only=False, map_location="cpu")
    assert state["lr_schedulers"][0]["last_epoch"] == 4
    resumed = run_train(*common, f"ckpt_path='{ckpts[0]}'", "seed=0")
    a = torch.load(f"{full['run_dir']}/checkpoints/last.ckpt", weights_only=False)
    b = torch.load(f"{resumed['run_dir']}/checkpoints/last.ckpt", weights_only=False)
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 8
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert full["val_history"] == resumed["val_history"]

    # control (the comparison has power): the same checkpoint with its schedule restarted
    state["lr_schedulers"][0]["last_epoch"] = 0
    state["lr_schedulers"][0]["_step_count"] = 1
    reset = tmp_path / "reset.ckpt"
    torch.save(state, reset)
    other = run_train(*common, f"ckpt_path='{reset}'")
    c = torch.load(f"{other['run_dir']}/checkpoints/last.ckpt", weights_only=False)
    assert not all(torch.equal(a["state_dict"][k], c["state_dict"][k]) for k in a["state_dict"])


def test_the_step_budget_follows_the_few_shot_n():
    """task/_glue.yaml's budget table: 150 steps at N = 20 (SST-2 budget study), 200 at N = 50
    and 100 (QNLI N = 100 budget check); an explicit trainer.max_steps wins."""
    from hydra import compose, initialize_config_dir

    from moo_lightning.cli.naming import register_resolvers
    from tests.helpers import CONF

    register_resolvers()

    def steps(*overrides):
        with initialize_config_dir(CONF, version_base="1.3"):
            return compose("train", overrides=["task=qnli", *overrides]).trainer.max_steps

    assert steps() == 150
    assert steps("data.num_train=50") == steps("data.num_train=100") == 200
    assert steps("data.num_train=30") == 200 and steps("data.num_train=1000") == 200
    assert steps("data.num_train=100", "trainer.max_steps=80") == 80
