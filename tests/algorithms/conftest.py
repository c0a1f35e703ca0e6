"""Small Hamiltonians with dense references for the algorithm tests."""

from __future__ import annotations

import pytest

from tnkit.mps.builders import spin_operators


def _chiral_terms(n_sites: int, dm: float = 0.7, field: float = 0.3) -> list:
    s = spin_operators(0.5)
    terms = []
    for i in range(n_sites - 1):
        terms += [(1.0, {i: s[a], i + 1: s[a]}) for a in ("Sx", "Sy", "Sz")]
        terms += [(dm, {i: s["Sx"], i + 1: s["Sy"]}), (-dm, {i: s["Sy"], i + 1: s["Sx"]})]
    terms += [(field * (1 + (i % 3)), {i: s["Sz"]}) for i in range(n_sites)]
    return terms


@pytest.fixture
def chiral_terms():
    """``terms(n)``: Heisenberg chain plus a Dzyaloshinskii-Moriya term ``dm (Sx Sy - Sy Sx)``
    and a staggered field -- a complex Hamiltonian without symmetries that fix its phases."""
    return _chiral_terms
