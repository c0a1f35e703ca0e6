"""Pattern plots keep a frame around every pattern (an all-white one stays visible)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from tnkit.ml.plots import draw_pattern, plot_patterns  # noqa: E402


def test_white_patterns_keep_their_frame(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    draw_pattern(ax, np.zeros((3, 3)))
    assert ax.axison and all(spine.get_visible() for spine in ax.spines.values())
    assert ax.get_xticks().size == 0 and ax.get_yticks().size == 0
    plt.close(fig)
    path = plot_patterns([("white", [np.zeros((3, 3))]), ("bars", [np.eye(3), np.ones((3, 3))])], tmp_path / "p.png")
    assert path.exists() and path.stat().st_size > 0
