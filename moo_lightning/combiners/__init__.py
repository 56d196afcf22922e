"""Gradient combiners: (losses, Gram, preference) -> weights of the update direction d = Gᵀw."""

from moo_lightning.combiners.base import Combined, Combiner, SolverError, as_preference
from moo_lightning.combiners.criteria import (
    ComplexCosine,
    NonUniformity,
    WeightedDistance,
    energy_distance,
    negative_hypervolume,
)
from moo_lightning.combiners.dwa import DynamicWeightAverage
from moo_lightning.combiners.epo import EPO
from moo_lightning.combiners.famo import FAMO
from moo_lightning.combiners.gls import GeometricLoss
from moo_lightning.combiners.ls import LinearScalarization
from moo_lightning.combiners.mgda import MGDA, min_norm_weights
from moo_lightning.combiners.png import PNG
from moo_lightning.combiners.rlw import RandomLossWeighting
from moo_lightning.combiners.si_ls import ScaleInvariantLS
from moo_lightning.combiners.stch import SmoothTchebycheff
from moo_lightning.combiners.torchjd import TorchJD
from moo_lightning.combiners.uw import UncertaintyWeighting

__all__ = [
    "EPO",
    "FAMO",
    "MGDA",
    "PNG",
    "Combined",
    "Combiner",
    "ComplexCosine",
    "DynamicWeightAverage",
    "GeometricLoss",
    "LinearScalarization",
    "NonUniformity",
    "RandomLossWeighting",
    "ScaleInvariantLS",
    "SmoothTchebycheff",
    "SolverError",
    "TorchJD",
    "UncertaintyWeighting",
    "WeightedDistance",
    "as_preference",
    "energy_distance",
    "negative_hypervolume",
    "min_norm_weights",
]
