"""Train one model (or one ensemble) with a gradient combiner; the Hydra entry point.

python train.py task=toy combiner=epo preference=[0.2,0.8]
python train.py task=qnli combiner=epo -m seed=0-9

argv → compose (Hydra) → one ``run`` per job: the run folder (locked; a finished job with the same
settings is skipped) → build → fit and test → the record (metrics.json) → the exit code.
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()  # a process's first job counts its imports in its timing

import logging  # noqa: E402  (after PROCESS_START, to time the imports)
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from moo_lightning.cli.argv import (  # noqa: E402
    normalise_argv,
    refuse_ignored_preference,
    refuse_missing_keys,
    refuse_mode_clash,
    refuse_text_settings_without_text_module,
    refuse_unknown_names,
    rename_composition_seed,
)
from moo_lightning.cli.build import build  # noqa: E402
from moo_lightning.cli.checks import (  # noqa: E402
    check_optimized_metric,
    check_run_settings,
    check_target_settings,
    check_unknown_keys,
)
from moo_lightning.cli.console import summary  # noqa: E402
from moo_lightning.cli.errors import BadSetting, exit_code, to_log_file, user_error  # noqa: E402
from moo_lightning.cli.fit import code_version, finish_record, fit_and_test  # noqa: E402
from moo_lightning.cli.folder import finished_record, folder_lock  # noqa: E402
from moo_lightning.cli.naming import is_multirun, register_resolvers, settings  # noqa: E402
from moo_lightning.launch import join_submitit_tasks  # noqa: E402
from moo_lightning.loggers import finish  # noqa: E402
from moo_lightning.records import FolderBusyError  # noqa: E402

log = logging.getLogger("moo_lightning")


class Jobs:
    """The function Hydra calls once per job, keeping what the exit code needs: the status of
    each job of this process that ended without a result ("busy": another process was writing
    its folder). joblib and submitit workers unpickle it, which registers the resolvers there
    before Hydra names the job's folder."""

    def __init__(self):
        self.outcomes: list[str] = []
        self.recorded = 0  # jobs recorded by this process so far

    def __call__(self, cfg: DictConfig) -> float | None:
        try:
            return run(cfg, self)
        except Exception as err:
            cause = user_error(err)
            if cause is None:
                to_log_file(f"failed:\n{traceback.format_exc()}")  # the console gets it from Hydra
                raise
            # bad input or no network: one line naming the key and what is allowed, no traceback
            line = "error: " + " ".join(str(cause).split())  # one line, whatever the library wrote
            to_log_file(line)
            sys.exit(line)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        register_resolvers()

    def result(self, record, key: str | None) -> float | None:
        """The optimised metric of a job with a result; a job without one is counted."""
        if record.status != "ok":
            self.outcomes.append(record.status)
        return record.metric(key)


def run(cfg: DictConfig, jobs: Jobs | None = None) -> float | None:
    """One job: check the run folder (lock; a finished job with the same settings is skipped),
    build, fit and test, record. Returns the optimised metric for Hydra's sweepers."""
    start = time.perf_counter()
    jobs = Jobs() if jobs is None else jobs
    register_resolvers()
    code_version()  # the code this process runs, read before its first job trains (cached)
    try:
        check_optimized_metric(cfg.get("optimized_metric"))
        check_run_settings(cfg)
        check_unknown_keys(cfg)
        check_target_settings(cfg)
    except ValueError as err:
        raise BadSetting(str(err)) from None
    join_submitit_tasks()
    run_dir, wanted = Path(cfg.paths.run_dir), settings(cfg)
    key = cfg.get("optimized_metric")
    try:
        with folder_lock(run_dir):
            done = finished_record(cfg, run_dir, wanted, is_multirun())
            if done is not None:  # re-running a sweep completes only the jobs without a result
                status = done.status
                log.info("%s already holds this job's result (%s): skipping it", run_dir, status)
                return jobs.result(done, key)
            job = build(cfg, run_dir, wanted, start)
            record = fit_and_test(job)
            if not job.trainer.is_global_zero:
                return None  # DDP: every rank trained and evaluated (synchronised); rank 0 records
            jobs.recorded += 1
            before_run = start - PROCESS_START if jobs.recorded == 1 else 0.0
            finish_record(record, job, start, before_run)
            for logger in job.loggers:
                finish(logger, record)
            record.write(run_dir)  # last and atomically: an interrupted job leaves no record
            log.info(summary(run_dir, record, job.module.headline_metrics))
            return jobs.result(record, key)
    except FolderBusyError as err:
        if not is_multirun():
            raise
        log.warning("skipping this job: %s", err)
        jobs.outcomes.append("busy")
        return None


def cli() -> None:
    """``moo-train`` / ``python train.py``: Hydra's command line plus ``seed=A-B`` and ``-m``
    anywhere; the exit code says whether every job has a result."""
    register_resolvers()
    sys.argv = rename_composition_seed(normalise_argv(sys.argv))
    refuse_mode_clash(sys.argv)
    refuse_unknown_names(sys.argv)
    refuse_ignored_preference(sys.argv)
    refuse_text_settings_without_text_module(sys.argv)
    refuse_missing_keys(sys.argv)
    jobs = Jobs()
    hydra.main(version_base="1.3", config_path="pkg://moo_lightning.conf", config_name="train")(
        jobs
    )()
    sys.exit(exit_code(jobs.outcomes))


if __name__ == "__main__":
    cli()
