"""Fixtures of the ``tnkit aqc`` command-line tests."""

from __future__ import annotations

import pytest

from tnkit import MPS
from tnkit.aqc import recipe


@pytest.fixture(scope="module")
def state_file(tmp_path_factory):
    """A saved real MPS, the kind of file ``--mps`` compiles."""
    path = tmp_path_factory.mktemp("mps") / "state.npz"
    MPS.random(6, 4, seed=3).normalized().save(path)
    return path


@pytest.fixture
def no_work(monkeypatch):
    """Any target simulation or compilation fails the test: errors must come before the work."""

    def boom(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(recipe, "_target", boom)
    monkeypatch.setattr(recipe, "_compile", boom)
