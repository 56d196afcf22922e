"""The package's errors, in one hierarchy.

``MooError`` is the root. Its two branches say how a failure is reported:

- ``UserError``: a setting, file, folder or network condition the user can change. The command
  line reports it as one line naming the key, value or file (no traceback), whenever it is raised
  (while a job is built, or once training is set up).
- ``NumericalError``: the numerics failed (a solver without an optimal solution, too many
  non-finite steps). Counted and recorded in the run's status, never silent.

Each concrete error keeps the builtin base its callers already catch (``ValueError`` for bad
values, ``RuntimeError`` for conditions), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class MooError(Exception):
    """Root of moo-lightning's own errors."""


class UserError(MooError):
    """Something the user gave or controls: reported by the command line in one line."""


class NumericalError(MooError):
    """A numerical failure: counted, logged and recorded in the run's status."""


class ConfigError(UserError, ValueError):
    """A wrong setting that can only be detected once training has been set up (the module's
    parameters or features are needed): reported by train.py as one line, like the bad input
    caught before training, while other errors raised during training keep their traceback."""


class BadSetting(UserError, ValueError):
    """A setting, file or data problem found while building a job: reported in one line."""


class EvaluationError(UserError, ValueError):
    """A run folder, checkpoint or setting that cannot be evaluated: reported in one line."""


class FolderBusyError(UserError, RuntimeError):
    """Another process holds the run folder's lock."""


class RunFolderUnwritable(UserError, OSError):
    """The run folder could not be written at the end of a run (made read-only, a full disk):
    reported in one line, with the record kept elsewhere."""


class HubUnreachableError(UserError, RuntimeError):
    """The Hugging Face hub cannot be reached and the files are not cached."""


class SolverError(NumericalError, RuntimeError):
    """A numeric solve that did not return an optimal solution (``combiner.on_failure``)."""


class NonFiniteError(NumericalError, RuntimeError):
    """Too many consecutive steps with a NaN/inf loss or gradient (``module.max_bad_steps``)."""
