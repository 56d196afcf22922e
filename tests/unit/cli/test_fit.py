"""What the run record says about the CSV logs of a resumed run."""

from pathlib import Path

from moo_lightning.cli.fit import log_order


def test_resumed_logs_are_listed_in_the_order_they_were_written():
    run = Path("/runs/a")
    names = ["csv/resume10/metrics.csv", "csv/resume2/metrics.csv", "csv/metrics.csv",
             "csv/resume1/metrics.csv"]  # fmt: skip
    ordered = sorted((run / n for n in names), key=log_order)
    assert [str(p.relative_to(run)) for p in ordered] == [
        "csv/metrics.csv",
        "csv/resume1/metrics.csv",
        "csv/resume2/metrics.csv",
        "csv/resume10/metrics.csv",  # by name it came before resume2
    ]
