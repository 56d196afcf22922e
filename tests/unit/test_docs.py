"""Every combiner config has a documentation page with the standard sections and a usage line;
docs/parameter_criterion.md's example runs as written, trains both tasks and lowers F."""

import re

import pytest

from tests.helpers import ROOT, combiner_names

DOCS = ROOT / "docs" / "combiners"
SECTIONS = (
    "The update",
    "What it promises, and what not",
    "Settings",
    "Preference and state",
    "Cross-check",
    "Usage",
)


def test_every_page_belongs_to_a_combiner_config():
    assert {p.stem for p in DOCS.glob("*.md")} == set(combiner_names())


@pytest.mark.parametrize("name", combiner_names())
def test_page_has_the_standard_sections_and_a_usage_line(name):
    page = DOCS / f"{name}.md"
    assert page.exists(), f"docs/combiners/{name}.md is missing"
    text = page.read_text()
    title = text.splitlines()[0]
    assert title.startswith("# ") and f"(`combiner={name}`)" in title, title
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    missing = [s for s in SECTIONS if s not in headings]
    assert not missing, f"{name}.md lacks {missing}"
    assert headings[-1] == "Usage", f"{name}.md: Usage must come last"
    usage = text.split("\n## Usage\n", 1)[1]
    commands = [line.strip() for line in usage.splitlines() if line.startswith("    python ")]
    assert commands and all(f"combiner={name}" in c.split() for c in commands), commands


@pytest.mark.parametrize("name", combiner_names())
def test_usage_lines_compose(name, monkeypatch):
    """The usage commands are valid Hydra overrides of train.yaml (composed, not run), pass the
    command line's checks, and name the data folder of a task that needs one (no MNIST_DIR)."""
    import shlex

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from moo_lightning.cli.argv import expand_short_form, refuse_ignored_preference
    from tests.helpers import CONF

    for key in ("MNIST_DIR", "PACS_DIR"):
        monkeypatch.delenv(key, raising=False)
    usage = (DOCS / f"{name}.md").read_text().split("\n## Usage\n", 1)[1]
    for line in usage.splitlines():
        if line.startswith("    python train.py "):
            overrides = [expand_short_form(o) for o in shlex.split(line.strip())[2:]]
            with initialize_config_dir(CONF, version_base="1.3"):
                cfg = compose("train", overrides=overrides)
            assert cfg.combiner._target_.startswith("moo_lightning.combiners.")
            path = OmegaConf.to_container(cfg.data, resolve=False).get("path")
            if isinstance(path, str) and "${oc.env:" in path:  # a folder or its variable
                assert cfg.data.path is not None, f"{name}.md: {line.strip()} needs data.path"
            refuse_ignored_preference(["train.py", *overrides])


# --- docs/parameter_criterion.md ------------------------------------------------------------------


def test_the_example_runs_and_does_what_the_page_says():
    text = (ROOT / "docs" / "parameter_criterion.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    scope: dict = {}
    exec(compile(code, "parameter_criterion.md", "exec"), scope)
    start = ((scope["y"] - scope["y"].mean(0)) ** 2).mean(0)  # a constant predictor's losses
    assert (scope["losses"] < 0.5 * start).all()  # both tasks learned (task 1 trades for F)
    assert scope["after"] < 0.5 * scope["before"]  # and the gap went down
