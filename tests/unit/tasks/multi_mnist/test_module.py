"""The Multi-MNIST set's settings, checked when it is built."""

import pytest

from moo_lightning.combiners import MGDA
from moo_lightning.tasks.multi_mnist.module import MultiMNISTSet


def test_the_ls_warm_up_needs_a_preference_that_fits_even_when_the_combiner_ignores_it():
    """MGDA alone takes any preference (it reads none); with an LS warm-up on the members'
    shared preference (module.preferences=null) the preference is used, so it is checked."""
    wrong = [0.2, 0.3, 0.5]
    assert MultiMNISTSet(MGDA(), wrong, members=2, preferences=None).recorded_preference is None
    MultiMNISTSet(MGDA(), wrong, members=2, preferences="spread", ls_warmup=0.5)
    with pytest.raises(ValueError, match=r"one entry per objective \(2\). Found 3"):
        MultiMNISTSet(MGDA(), wrong, members=2, preferences=None, ls_warmup=0.5)
