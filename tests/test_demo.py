"""``tnkit demo``: options checked before the tour starts, and its entanglement plot."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest

from tnkit import demo


def _run(argv):
    root = argparse.ArgumentParser(prog="tnkit")
    demo.add_parser(root.add_subparsers(dest="command"))
    args = root.parse_args(["demo", *argv])
    return args.func(args)


@pytest.fixture
def no_work(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the demo started before its options were checked")

    monkeypatch.setattr(demo, "run_demo", boom)
    monkeypatch.setattr(demo, "run_tour", boom)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--sections", "engine", "--n-sites", "1"], r"argument --n-sites: must be an integer from 2"),
        (["--steps", "0"], r"argument --steps: must be an integer from 1"),
        (["--max-bond", "0"], r"argument --max-bond: must be an integer from 1"),
        (["--samples", "0"], r"argument --samples: must be an integer from 1"),
        (["--sim-bond", "-3"], r"argument --sim-bond"),
        (["--time", "nan"], r"argument --time: must be a finite number"),
        (["--sections", "engine,nope"], r"argument --sections: must name some of engine,tree"),
        (["--sections", ","], r"argument --sections"),
    ],
)
def test_bad_options_are_usage_errors_before_the_tour(capsys, no_work, argv, message):
    with pytest.raises(SystemExit) as exc:
        _run(argv)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("usage: tnkit demo") and re.search(message, lines[-1]), lines[-1]


def test_out_must_be_a_writable_directory(capsys, tmp_path, no_work):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    with pytest.raises(SystemExit):
        _run(["--out", str(a_file)])
    assert "not a directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs", [dict(n_sites=1), dict(steps=0), dict(max_bond=0), dict(samples=0), dict(t=float("inf"))]
)
def test_run_demo_checks_its_arguments(kwargs):
    with pytest.raises((ValueError, TypeError)):
        demo.run_demo(**kwargs)


def test_smallest_chain_runs(capsys, tmp_path):
    assert (
        _run(
            [
                "--sections",
                "engine",
                "--n-sites",
                "2",
                "--steps",
                "1",
                "--samples",
                "3",
                "--max-bond",
                "1",
                "--out",
                str(tmp_path / "new"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "nan" not in out and "100.0%" in out
    assert (tmp_path / "new" / "xxz_entropy.png").exists()


def test_entropy_plot_has_integer_bond_ticks():
    import matplotlib.pyplot as plt

    for n_bonds in (3, 5, 9, 19):
        fig = demo._entropy_figure(np.linspace(0.1, 1.0, n_bonds))
        try:
            fig.canvas.draw()
            ticks = fig.axes[0].get_xticks()
            visible = ticks[(ticks >= -0.5) & (ticks <= n_bonds - 0.5)]
            assert len(visible) >= 2 and np.all(visible == np.round(visible)), ticks
        finally:
            plt.close(fig)
