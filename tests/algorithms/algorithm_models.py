"""Small Hamiltonians for the algorithm tests (a plain module: a ``conftest.py`` here would shadow
the root one that other test directories import by name)."""

from __future__ import annotations

from tnkit.mps.builders import spin_operators


def chiral_terms(n_sites: int, dm: float = 0.7, field: float = 0.3) -> list:
    """Heisenberg chain plus a Dzyaloshinskii-Moriya term ``dm (Sx Sy - Sy Sx)`` and a staggered
    field: a complex Hamiltonian without symmetries that fix its phases."""
    s = spin_operators(0.5)
    terms = []
    for i in range(n_sites - 1):
        terms += [(1.0, {i: s[a], i + 1: s[a]}) for a in ("Sx", "Sy", "Sz")]
        terms += [(dm, {i: s["Sx"], i + 1: s["Sy"]}), (-dm, {i: s["Sy"], i + 1: s["Sx"]})]
    terms += [(field * (1 + (i % 3)), {i: s["Sz"]}) for i in range(n_sites)]
    return terms
