"""How this process was started: DDP ranks from Lightning, SLURM or submitit's local executor."""

from __future__ import annotations

import os
import zlib


def is_leader() -> bool:
    """Rank 0 of a DDP run started by Lightning, SLURM or submitit (or a single process)."""
    keys = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
    return all(os.environ.get(k, "0") == "0" for k in keys)


def join_submitit_tasks() -> None:
    """A sweep job launched by submitit with several tasks (hydra/launcher=slurm_ddp or
    local_ddp) is one DDP run: each task is a rank. On SLURM Lightning reads the rank layout
    itself; submitit's local executor sets no such variables, so they are derived here from
    submitit's job environment (Lightning then uses the processes it finds instead of starting
    its own)."""
    if "SUBMITIT_LOCAL_JOB_ID" not in os.environ:  # SLURM, or no submitit at all
        return
    import submitit

    env = submitit.JobEnvironment()
    if env.num_tasks < 2:
        return
    # every task derives the same port from the job id, below Linux's ephemeral range
    # (32768-60999), where outgoing connections could already hold it
    os.environ.update(
        MASTER_ADDR=env.hostnames[0] if env.hostnames else "127.0.0.1",
        # never an inherited MASTER_PORT: jobs of one sweep run side by side, and a port set in
        # the launching process (an earlier DDP run in it, say) would join them into one group
        MASTER_PORT=str(10000 + zlib.crc32(str(env.job_id).encode()) % 20000),
        NODE_RANK=str(env.node),
        LOCAL_RANK=str(env.local_rank),
        WORLD_SIZE=str(env.num_tasks),
    )
