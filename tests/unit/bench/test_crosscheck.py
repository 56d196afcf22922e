"""bench/crosscheck.py: our combiners against TorchJD on random problems of five kinds (random,
rank-deficient, near-parallel, opposite, badly scaled; m = 2..6), within the tolerance each
unit test documents, outside the kinds where a method differs by design (crosscheck.EXEMPT)."""

import pytest

from tests.helpers import load_script


def _crosscheck():
    return load_script("bench/crosscheck.py")


# the quick methods (closed forms, exact QPs, scalarizers); the cvxpy-based ones (cagrad,
# nash_mtl) run in the slow test
FAST = ["upgrad", "dualproj", "pcgrad", "imtl_g", "aligned_mtl", "fairgrad", "fairgrad=nash"]
FAST += ["config", "gradvac", "cr_mogm", "gls", "dwa", "uw", "famo"]


@pytest.mark.parametrize("method", FAST)
def test_against_torchjd_on_50_problems(method):
    row = _crosscheck().run(method, 50)
    assert row["within_tolerance"], row


def test_fairgrad_solves_wherever_torchjd_does():
    # before: 'did not converge in max_iter=100' on 96 of 200 near-opposite problems (residual
    # 2e-10..6e-9); a round-off residual at max_iter is now an answer
    row = _crosscheck().run("fairgrad", 50)
    assert not any(reason.startswith("OURS") for reason in row["skipped"]), row["skipped"]


@pytest.mark.slow
def test_against_torchjd_on_300_problems_every_method(tmp_path):
    """Every method at 300 problems (the README table uses 1000). Known departures that are
    reported, not asserted here: ours raising where the reference solves (fairgrad, nash_mtl on
    near-opposite gradients) and MGDA's tolerance relative to max diag K (see the report)."""
    cc = _crosscheck()
    rows = cc.main(["--problems", "300", "--out", str(tmp_path / "cc.json")])
    for r in rows:
        assert r["within_tolerance"], r
