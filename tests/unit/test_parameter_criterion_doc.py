"""docs/parameter_criterion.md: its example runs as written, trains both tasks and lowers F."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_runs_and_does_what_the_page_says():
    text = (ROOT / "docs" / "parameter_criterion.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    scope: dict = {}
    exec(compile(code, "parameter_criterion.md", "exec"), scope)
    start = ((scope["y"] - scope["y"].mean(0)) ** 2).mean(0)  # a constant predictor's losses
    assert (scope["losses"] < 0.5 * start).all()  # both tasks learned (task 1 trades for F)
    assert scope["after"] < 0.5 * scope["before"]  # and the gap went down
