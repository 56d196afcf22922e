"""Gradient combiners: (losses, Gram, preference) -> weights of the update direction d = Gᵀw."""

from moo_lightning.combiners.aligned_mtl import AlignedMTL
from moo_lightning.combiners.base import Combined, Combiner, SolverError, as_preference
from moo_lightning.combiners.cagrad import CAGrad
from moo_lightning.combiners.config import ConFIG
from moo_lightning.combiners.criteria import (
    ComplexCosine,
    NonUniformity,
    WeightedDistance,
    energy_distance,
    negative_hypervolume,
)
from moo_lightning.combiners.dualproj import DualProj
from moo_lightning.combiners.dwa import DynamicWeightAverage
from moo_lightning.combiners.epo import EPO
from moo_lightning.combiners.fairgrad import FairGrad
from moo_lightning.combiners.famo import FAMO
from moo_lightning.combiners.gls import GeometricLoss
from moo_lightning.combiners.gradvac import GradVac
from moo_lightning.combiners.imtl_g import IMTLG
from moo_lightning.combiners.ls import LinearScalarization
from moo_lightning.combiners.mgda import MGDA, min_norm_weights
from moo_lightning.combiners.nash_mtl import NashMTL
from moo_lightning.combiners.pcgrad import PCGrad
from moo_lightning.combiners.png import PNG
from moo_lightning.combiners.rlw import RandomLossWeighting
from moo_lightning.combiners.si_ls import ScaleInvariantLS
from moo_lightning.combiners.stch import SmoothTchebycheff
from moo_lightning.combiners.torchjd import TorchJD
from moo_lightning.combiners.upgrad import UPGrad
from moo_lightning.combiners.uw import UncertaintyWeighting
from moo_lightning.combiners.wrappers import CRMOGM, LogGram

__all__ = [
    "AlignedMTL",
    "CAGrad",
    "CRMOGM",
    "EPO",
    "FairGrad",
    "GradVac",
    "IMTLG",
    "FAMO",
    "MGDA",
    "NashMTL",
    "PCGrad",
    "PNG",
    "Combined",
    "DualProj",
    "Combiner",
    "ComplexCosine",
    "ConFIG",
    "DynamicWeightAverage",
    "GeometricLoss",
    "LinearScalarization",
    "LogGram",
    "NonUniformity",
    "RandomLossWeighting",
    "ScaleInvariantLS",
    "SmoothTchebycheff",
    "SolverError",
    "UPGrad",
    "TorchJD",
    "UncertaintyWeighting",
    "WeightedDistance",
    "as_preference",
    "energy_distance",
    "negative_hypervolume",
    "min_norm_weights",
]
