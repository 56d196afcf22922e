"""Experiment loggers built from the logger presets (moo_lightning/conf/logger/*.yaml).

``wandb_logger`` names, groups and tags a W&B run from a mapping of labels (task, N, objective,
combiner, preference, τ, λ, lr, seed, ...) and refuses, in one line and before training, an
online run that has no API key. ``finish`` puts a run's record into a logger's summary (W&B:
texts, lists and tables, and the run's figures) and closes it when the run ends.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger

from moo_lightning.hub import HubUnreachableError
from moo_lightning.record import RunRecord

# W&B modes in which nothing is sent, so no API key is needed
_LOCAL_MODES = ("offline", "dryrun", "disabled")
# W&B refuses longer tags
_TAG_LIMIT = 64


def wandb_mode(offline: bool = False, mode: str | None = None) -> str:
    """The mode a W&B run would start in: the logger's own argument, else WANDB_MODE, else
    W&B's settings (which include `wandb offline` / `wandb disabled`)."""
    if offline:
        return "offline"
    if mode:
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    try:
        from wandb.sdk import wandb_setup

        return str(wandb_setup.singleton().settings.mode)
    except (ImportError, AttributeError):  # another wandb layout: assume the default
        return "online"


def require_wandb_credentials(offline: bool = False, mode: str | None = None) -> None:
    """Raise ValueError (one line) when a W&B run would go online without an API key; W&B
    itself would otherwise stop the run with a long traceback, or wait for a prompt."""
    if wandb_mode(offline, mode) in _LOCAL_MODES:
        return
    import wandb

    hint = (
        "run `wandb login` (or set WANDB_API_KEY), or set WANDB_MODE=offline to log locally "
        "and `wandb sync` later"
    )
    try:
        # W&B's own lookup (WANDB_API_KEY, settings files, .netrc); never prompts, not verified
        found = wandb.login(prompt=False, verify=False)
    except wandb.errors.AuthenticationError as err:
        raise ValueError(f"W&B credentials: {err}; {hint}") from None
    if not found:
        raise ValueError(f"W&B is online but no API key was found: {hint}")


class WandbUnreachableError(HubUnreachableError):
    """The W&B server did not answer when the run started (no network, a proxy, a wrong
    WANDB_BASE_URL): reported in one line, like an unreachable Hugging Face hub."""


class OneLineWandbLogger(WandbLogger):
    """Lightning's WandbLogger whose run, started on first use, turns W&B's communication error
    (after its init timeout, ~90 s) into one line that says what to do, not a traceback."""

    @property
    def experiment(self):
        try:
            return WandbLogger.experiment.fget(self)
        except Exception as err:
            import wandb

            if not isinstance(err, wandb.errors.CommError):
                raise
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise WandbUnreachableError(
                f"logger=wandb: the W&B server could not be reached ({first[:160]}); check the "
                "network (or WANDB_BASE_URL), or set WANDB_MODE=offline to log locally and "
                "`wandb sync` later"
            ) from None


def _text(value) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ",".join(_text(v) for v in value)
    return str(value)


def run_labels(
    labels: Mapping, requires: Mapping | None = None, unless: Mapping | None = None
) -> dict:
    """The labels that apply to this run: a label whose value is null, whose entry in
    ``requires`` is null (a config group the task does not use), or whose entry in ``unless``
    is not null (the one preference r of an ensemble whose members have their own), is left
    out."""
    requires, unless = requires or {}, unless or {}
    return {
        k: v
        for k, v in labels.items()
        if v is not None
        and (k not in requires or requires[k] is not None)
        and unless.get(k) is None
    }


def describe(labels: Mapping) -> str:
    """A readable run name: text values as they are, numbers and lists after their key
    ("N20", "r0.1,0.9"). No "=": wandb-workspaces rewrites "=" to "==" in the filter values of a
    saved view, so a group named with one could not be selected by name (sweep/dashboard.py)."""
    return " ".join(v if isinstance(v, str) else f"{k}{_text(v)}" for k, v in labels.items())


def tags(labels: Mapping) -> list[str]:
    return [f"{k}={_text(v)}"[:_TAG_LIMIT] for k, v in labels.items()]


def wandb_logger(
    labels: Mapping,
    requires: Mapping | None = None,
    unless: Mapping | None = None,
    group_without: Sequence[str] = ("combiner", "method", "seed"),
    method_decides: Sequence[str] = ("r", "criterion"),
    name: str | None = None,
    group: str | None = None,
    offline: bool = False,
    **kwargs,
):
    """A Lightning WandbLogger whose run is told apart by ``labels``:

    - name: every label ("sst2 N20 tiny moo epo r0.1,0.9 tau0.3 lam0.3 lr1e-05 seed0");
    - group: every label but those in ``group_without`` (by default the combiner, the method
      label and the seed), so a group holds the runs a dashboard compares: combiners over
      seeds at one setting; a run with a ``method`` label also leaves out the labels its
      method decides (``method_decides``: the preference and the criterion), so the methods
      of one table (deepall, jigen, jigen_adv, jigen_png) share a group per target;
    - tags: every label as key=value;
    - config: the labels under ``labels`` (dashboards group by ``labels.combiner``).

    ``name`` / ``group`` replace the generated ones when given. Other arguments go to
    WandbLogger (and from it to wandb.init). Raises ValueError when the run would be online
    without an API key."""
    require_wandb_credentials(offline, kwargs.get("mode"))
    kept = run_labels(labels, requires, unless)
    left_out = set(group_without) | (set(method_decides) if "method" in kept else set())
    grouped = {k: v for k, v in kept.items() if k not in left_out}
    config = {**(kwargs.pop("config", None) or {}), "labels": kept}
    return OneLineWandbLogger(
        name=name or describe(kept),
        group=group or describe(grouped),
        tags=[*tags(kept), *(kwargs.pop("tags", None) or [])],
        config=config,
        offline=offline,
        **kwargs,
    )


# figures a run may leave in its folder: logged to W&B as images under figures/<stem>
FIGURES = ("trajectory.png", "loss_space.png")


def finish(logger, record: RunRecord) -> None:
    """Put the run's record in the logger's summary (W&B; under the metrics.json keys) and close
    it, so the next job of an in-process sweep starts a run of its own."""
    metrics = record.to_json()
    numeric = {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    experiment = getattr(logger, "experiment", None)
    summary = getattr(experiment, "summary", None)
    if summary is not None:
        summary.update(numeric)
        if _is_wandb(logger):
            _wandb_results(logger, metrics, summary)
    logger.finalize("success")
    if hasattr(experiment, "finish"):
        experiment.finish()


def _is_wandb(logger) -> bool:
    from lightning.pytorch.loggers import WandbLogger

    return isinstance(logger, WandbLogger)


def _numbers(value) -> bool:
    """A non-empty flat list of numbers."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def _wandb_results(logger, metrics: dict, summary) -> None:
    """What metrics.json holds beyond numbers, into the W&B run: texts (status, combiner, ...);
    flat lists of numbers (final losses, preference) as the list and one entry per index
    (``final_train_losses/0``, ``/1``: what a scatter panel plots); lists of rows (per-member
    test losses, preferences, the validation history) as tables ``tables/<key>``; and the
    figures of the run folder (the logger's save_dir) as images ``figures/<name>``."""
    step = metrics.get("steps")
    summary.update({k: v for k, v in metrics.items() if isinstance(v, str)})
    for key, value in metrics.items():
        if _numbers(value):
            summary.update({key: value, **{f"{key}/{i}": v for i, v in enumerate(value)}})
        elif isinstance(value, list) and value and all(_numbers(row) for row in value):
            width = max(len(row) for row in value)
            if key == "val_history" and width == 2:  # (step, value) pairs
                columns, rows = ["step", "value"], value
            else:
                columns = ["row", *(f"{key}/{j}" for j in range(width))]
                rows = [[i, *row, *[None] * (width - len(row))] for i, row in enumerate(value)]
            logger.log_table(key=f"tables/{key}", columns=columns, data=rows, step=step)
    run_dir = Path(logger.save_dir or ".")
    for name in FIGURES:
        if (run_dir / name).is_file():
            logger.log_image(
                key=f"figures/{Path(name).stem}", images=[str(run_dir / name)], step=step
            )
