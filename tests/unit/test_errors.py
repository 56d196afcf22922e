"""One error hierarchy: user errors (one line) and numerical errors (counted), each keeping the
builtin base its callers catch."""

import pytest

from moo_lightning import errors
from moo_lightning.cli.errors import user_error
from moo_lightning.cli.evaluate import EvaluationError
from moo_lightning.cli.trust import UntrustedConfig
from moo_lightning.combiners import SolverError
from moo_lightning.hub import HubUnreachableError
from moo_lightning.module import NonFiniteError
from moo_lightning.records import FolderBusyError

USER = [errors.ConfigError, errors.BadSetting, EvaluationError, FolderBusyError,
        HubUnreachableError, UntrustedConfig]  # fmt: skip
NUMERICAL = [SolverError, NonFiniteError]


@pytest.mark.parametrize("cls", USER)
def test_user_errors_are_one_line_wherever_they_are_raised(cls):
    assert issubclass(cls, errors.UserError) and issubclass(cls, errors.MooError)
    err = cls("data.path 'x' is not a folder")
    assert user_error(err) is err  # during training too, not only while building
    wrapped = RuntimeError("Error instantiating 'x'")
    wrapped.__cause__ = err  # as Hydra wraps an error raised while instantiating
    assert user_error(wrapped) is err


@pytest.mark.parametrize("cls", NUMERICAL)
def test_numerical_errors_are_not_user_errors(cls):
    assert issubclass(cls, errors.NumericalError) and issubclass(cls, RuntimeError)
    assert user_error(cls("status 'infeasible'")) is None


def test_builtin_bases_are_kept_for_callers_that_catch_them():
    for cls in (errors.ConfigError, errors.BadSetting, EvaluationError, UntrustedConfig):
        assert issubclass(cls, ValueError)
    for cls in (FolderBusyError, HubUnreachableError):
        assert issubclass(cls, RuntimeError)
    # a plain ValueError is a user's only while a job is built; during training it is a bug
    assert user_error(ValueError("bug")) is None
    assert user_error(ValueError("bad value"), building=True) is not None
