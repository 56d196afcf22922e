"""Which failures are the user's (one line, no traceback) and which are bugs (a traceback), the
job's log file when a job fails, and the process's exit code from the jobs' outcomes."""

from __future__ import annotations

import logging
import sys

from moo_lightning.errors import BadSetting, UserError

log = logging.getLogger("moo_lightning")


def user_error(err: BaseException, building: bool = False) -> BaseException | None:
    """The bad-input or no-network error inside ``err``'s cause chain (Hydra wraps errors raised
    while instantiating), or None for a genuine failure that deserves its traceback. While a
    job is built every ValueError / FileNotFoundError is a setting or a file the user gave;
    once it trains only errors that declare themselves bad settings are."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf.errors import OmegaConfBaseException

    # the package's own user errors, and the libraries' errors about their settings
    user: tuple[type[BaseException], ...] = (
        UserError,
        MisconfigurationException,
        OmegaConfBaseException,
    )
    if building:
        user += (ValueError, FileNotFoundError)
    while err is not None:
        if isinstance(err, BadSetting):  # the build's own error, as the user's input raised it
            return user_error(err.__cause__, building=True) or err
        if isinstance(err, user):
            return err
        err = err.__cause__
    return None


def to_log_file(message: str) -> None:
    """Write ``message`` into the job's log file (train.log) only: the console already shows it,
    as one line or as Hydra's traceback, and a failed job's log must not be empty."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def exit_code(outcomes: list[str]) -> int:
    """0 when every job of this process has a result; otherwise one line and a non-zero code
    (1: a run diverged, trained no step or never validated, recorded in its metrics.json;
    75: jobs skipped because another process was writing their folders, re-run to check).
    ``outcomes``: the status of each job without a result ("busy": its folder was taken)."""
    if not outcomes:
        return 0
    counts = {k: outcomes.count(k) for k in dict.fromkeys(outcomes)}
    print(
        "jobs without a result: " + ", ".join(f"{n} {k}" for k, n in counts.items()),
        file=sys.stderr,
    )
    return 75 if set(counts) == {"busy"} else 1
