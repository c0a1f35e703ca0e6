"""Training of MPS Born machines: two-site NLL sweeps and a minibatch gradient trainer.

A Born machine models discrete data ``x = (x_0, ..., x_{N-1})`` with
``p(x) = |psi(x)|**2 / Z``, ``psi(x) = A0[:, x_0, :] @ ... @ A_{N-1}[:, x_{N-1}, :]``
and ``Z = <psi|psi>`` (Han, Wang, Fan, Wang & Zhang, PRX 8, 031012 (2018),
arXiv:1709.01662). Training minimises the negative log-likelihood on a data set ``T``::

    NLL = -1/|T| sum_{x in T} log p(x) = log Z - 1/|T| sum_{x in T} log |psi(x)|**2

Training is split by concern; this module gathers the names:

- :mod:`tnkit.ml.born_sweeps`: two-site and one-site NLL sweeps (:func:`sweep_train`),
  the line-searched centre update :func:`sphere_descent` shared with the tree;
- :mod:`tnkit.ml.born_gradient`: the minibatch Adam trainer (:func:`gradient_train`)
  and the exact NLL gradient of every site (:func:`nll_and_gradient`);
- :mod:`tnkit.ml.environments`: the per-sample environments of integer data
  (:func:`group_rows`, :func:`absorb_left`, :func:`absorb_right`);
- :mod:`tnkit.ml.history`: :class:`TrainingHistory`, :func:`record`,
  :func:`progress_bar` and the stopping rule :func:`converged`.
"""

from __future__ import annotations

from .born_gradient import gradient_train, nll_and_gradient
from .born_sweeps import sphere_descent, sweep_train
from .environments import TINY, absorb_left, absorb_right, group_rows
from .history import TrainingHistory, converged, progress_bar, record

__all__ = [
    "TrainingHistory",
    "sweep_train",
    "gradient_train",
    "nll_and_gradient",
    "group_rows",
    "absorb_left",
    "absorb_right",
    "sphere_descent",
    "record",
    "progress_bar",
    "converged",
    "TINY",
]
