"""Dynamic Weight Average (DWA; Liu, Johns & Davison, CVPR 2019)."""

from __future__ import annotations

import numpy as np

from moo_lightning.combiners.base import Combiner, SolverError, _fmt


class DynamicWeightAverage(Combiner):
    """DWA: w = m·softmax(ρ/T) with the descent rates ρ_i = L_i(t−1)/L_i(t−2), where L(t) is the
    mean loss vector over period t of ``period`` consecutive combines (steps).

    The paper and TorchJD/LibMTL average over epochs (TorchJD's ``DWA.step()`` is called once per
    epoch); this project's runs are budgeted in steps and often last less than a few epochs, so
    the averaging window is a number of steps. With ``period`` = steps per epoch it is the paper's
    rule. Until two periods have been completed the weights are all 1 (Σw = m, as in the paper).
    The current step's losses join the running sum after its weights are computed.

    State (``state_dict``): the running sum and count of the current period and the last two
    period means, as plain floats, restored exactly. It changes only from the all-reduced losses,
    so every DDP rank holds the same state. The losses must keep one sign over time (ρ is a ratio
    of means); a zero mean in the older period makes ρ undefined and the combine fails
    (SolverError). Ignores the preference and the gradients.
    """

    needs_gram = False
    name = "dwa"
    reads_losses = True
    uses_preference = False
    weights_on_simplex = False  # Σw = m

    def __init__(self, temperature: float = 2.0, period: int = 100, on_failure: str = "raise"):
        super().__init__(on_failure)
        self.temperature = self.check_number("temperature", temperature, 0.0, strict=True)
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise ValueError(f"combiner.period must be an integer >= 1 (steps). Found {period!r}")
        self.period = period
        self._sum: np.ndarray | None = None
        self._count = 0
        self._means: list[np.ndarray] = []  # at most the last two period means, oldest first

    def _combine(self, losses, gram, preference):
        m = losses.size
        if self._sum is not None and self._sum.size != m:
            raise ValueError(
                f"dwa was tracking {self._sum.size} objectives and now got {m}: "
                "the number of objectives must not change during a run"
            )
        diag = {}
        if len(self._means) < 2:
            w = np.ones(m)
        else:
            older, newer = self._means
            if np.any(older == 0):
                raise SolverError(f"dwa: a period mean loss is 0: {_fmt(older)}")
            rates = newer / older
            a = rates / self.temperature
            e = np.exp(a - a.max())
            w = m * e / e.sum()
            diag = {"max_rate": float(rates.max()), "min_rate": float(rates.min())}
        self._sum = losses.copy() if self._sum is None else self._sum + losses
        self._count += 1
        if self._count == self.period:
            self._means = [*self._means, self._sum / self._count][-2:]
            self._sum = np.zeros(m)
            self._count = 0
        return w, diag

    def state_dict(self) -> dict:
        return {
            "sum": None if self._sum is None else [float(v) for v in self._sum],
            "count": int(self._count),
            "means": [[float(v) for v in mean] for mean in self._means],
        }

    def load_state_dict(self, state: dict) -> None:
        expected = {"sum", "count", "means"}
        if set(state) != expected:
            raise ValueError(
                f"dwa state must have the keys {sorted(expected)}. Found {sorted(state)}: "
                "the checkpoint was made with another combiner"
            )
        self._sum = None if state["sum"] is None else np.asarray(state["sum"], dtype=np.float64)
        self._count = int(state["count"])
        self._means = [np.asarray(v, dtype=np.float64) for v in state["means"]]
