"""The AQC driver: maximise the fidelity of an ansatz with a target by L-BFGS-B.

:func:`compile_state` optimises the parameters of an :class:`~tnkit.aqc.ansatz.Ansatz`
with :func:`scipy.optimize.minimize` (``method="L-BFGS-B"``, loss ``1 - F`` and the
exact gradient of :class:`~tnkit.aqc.objective.Objective`), stops at ``max_iter``
iterations or as soon as the fidelity reaches ``target_fidelity``, and shows a tqdm
progress bar with the fidelity. :func:`compile_sequence` compiles a sequence of
targets (e.g. times ``t_1 < t_2 < ...``), each warm-started from the previous
solution, which avoids the vanishing overlaps of many-qubit states far apart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.validate import check_int, check_option
from .ansatz import Ansatz
from .objective import DEFAULT_OBJECTIVE_CUTOFF, Objective

__all__ = ["AQCResult", "compile_state", "compile_sequence"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AQCResult:
    """The outcome of a compilation.

    Attributes
    ----------
    ansatz : Ansatz
    params : numpy.ndarray
        Optimised angles (layout in :mod:`tnkit.aqc.ansatz`).
    fidelity : float
        ``|<target|C(params)|0>|^2`` from the MPS objective.
    initial_fidelity : float
    n_iterations, n_evaluations : int
        L-BFGS-B iterations and loss-and-gradient evaluations.
    seconds : float
        Wall time of the optimisation.
    history : tuple of float
        Fidelity after each iteration.
    message : str
        Why the optimiser stopped.
    truncation : float
        Discarded weight in the last evaluation's simulations (0 when exact).
    """

    ansatz: Ansatz
    params: np.ndarray
    fidelity: float
    initial_fidelity: float
    n_iterations: int
    n_evaluations: int
    seconds: float
    history: tuple[float, ...] = field(repr=False)
    message: str = ""
    truncation: float = 0.0

    @property
    def cnot_count(self) -> int:
        """CNOTs of the emitted circuit."""
        return self.ansatz.cnot_count

    @property
    def cnot_depth(self) -> int:
        """CNOT depth of the emitted circuit."""
        return self.ansatz.cnot_depth

    def circuit(self, **kwargs: Any) -> Any:
        """The compiled circuit; keyword arguments go to :func:`tnkit.aqc.circuits.to_qiskit`."""
        from .circuits import to_qiskit

        return to_qiskit(self.ansatz, self.params, **kwargs)

    def __repr__(self) -> str:
        return (
            f"AQCResult(fidelity={self.fidelity:.6f} (from {self.initial_fidelity:.6f}), "
            f"cnots={self.cnot_count}, cnot_depth={self.cnot_depth}, iterations={self.n_iterations}, "
            f"evaluations={self.n_evaluations}, seconds={self.seconds:.2f}, message={self.message!r})"
        )


class _Stop(Exception):
    pass


def compile_state(
    target: Any,
    ansatz: Ansatz,
    initial_params: Any = None,
    *,
    max_bond: int | None = 64,
    cutoff: float = DEFAULT_OBJECTIVE_CUTOFF,
    max_iter: int = 200,
    target_fidelity: float = 1.0,
    max_corrections: int = 20,
    method: str = "lbfgs",
    max_sweeps: int = 50,
    progress: bool = True,
) -> AQCResult:
    """Optimise ``ansatz`` so that ``C(theta)|0...0>`` approaches ``target``.

    Parameters
    ----------
    target : MatrixProductState or anything :func:`~tnkit.aqc.targets.as_target` accepts
    ansatz : Ansatz
    initial_params : array_like, optional
        Starting angles (default all zero). See :mod:`tnkit.aqc.init` for Trotter,
        Ran-style and warm starts.
    max_bond : int, optional
        Bond cap of the simulations in the objective (``None``: exact).
    cutoff : float
        Relative discarded weight allowed per gate in the simulations.
    max_iter : int
        Largest number of L-BFGS-B iterations.
    target_fidelity : float
        Stop as soon as the fidelity reaches this value.
    max_corrections : int
        L-BFGS memory (``maxcor``).
    method : {"lbfgs", "sweep", "sweep+lbfgs"}
        ``"lbfgs"``: scipy L-BFGS-B on the angles with the exact gradient.
        ``"sweep"``: gate-by-gate polar-decomposition sweeps
        (:mod:`tnkit.aqc.sweeps`), monotone in the exact mode. ``"sweep+lbfgs"``:
        sweeps first, then L-BFGS-B from their result.
    max_sweeps : int
        Largest number of sweeps (methods with ``"sweep"``).
    progress : bool
        Show a tqdm progress bar with the fidelity.

    Returns
    -------
    AQCResult

    Examples
    --------
    >>> from tnkit import MPS
    >>> from tnkit.aqc import brickwall_ansatz, compile_state
    >>> target = MPS.random(6, max_bond=2, seed=0, dtype=complex)
    >>> result = compile_state(target, brickwall_ansatz(6, 4), progress=False)
    >>> result.fidelity > 0.99
    True
    """
    from scipy.optimize import minimize

    if not isinstance(ansatz, Ansatz):
        raise TypeError(f"`ansatz` must be an Ansatz, got {type(ansatz).__name__}.")
    check_option("method", method, _METHODS)
    objective = Objective(ansatz, target, max_bond=max_bond, cutoff=cutoff)
    x0 = ansatz.zero_params() if initial_params is None else ansatz.check_params(initial_params)
    max_iter = check_int("max_iter", max_iter, minimum=0)
    if not 0.0 <= float(target_fidelity) <= 1.0:
        raise ValueError(f"`target_fidelity` must lie in [0, 1], got {target_fidelity!r}.")
    start = time.perf_counter()
    f0 = objective.fidelity(x0)
    state = {"best_x": x0.copy(), "best_f": f0, "last_f": f0}
    history: list[float] = []
    if "sweep" in method:
        max_iter = max_iter if method == "sweep+lbfgs" else 0
        x0, f_sweep, sweep_history = _sweeps(objective, x0, max_sweeps, target_fidelity, progress)
        history += sweep_history
        if f_sweep > state["best_f"]:
            state.update(best_x=x0.copy(), best_f=f_sweep, last_f=f_sweep)
    bar = _progress_bar(max_iter, progress)

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = objective.fidelity_and_gradient(x)
        state["last_f"] = f
        if f > state["best_f"]:
            state["best_x"], state["best_f"] = x.copy(), f
        return 1.0 - f, -g

    def callback(intermediate_result: Any) -> None:
        f = 1.0 - float(intermediate_result.fun)
        history.append(f)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(fidelity=f"{f:.6f}")
        if f >= target_fidelity:
            raise StopIteration

    message = "max_iter is 0" if "sweep" not in method else "sweeps converged"
    n_iter = 0
    if state["best_f"] < target_fidelity and max_iter > 0:
        res = minimize(
            fun,
            x0,
            jac=True,
            method="L-BFGS-B",
            callback=callback,
            options={"maxiter": max_iter, "maxcor": max_corrections, "ftol": 1e-15, "gtol": 1e-10},
        )
        message = "target fidelity reached" if state["best_f"] >= target_fidelity else str(res.message)
        n_iter = int(res.nit)
    elif state["best_f"] >= target_fidelity:
        message = "target fidelity reached"
    if bar is not None:
        bar.close()
    result = AQCResult(
        ansatz=ansatz,
        params=state["best_x"],
        fidelity=float(state["best_f"]),
        initial_fidelity=float(f0),
        n_iterations=n_iter,
        n_evaluations=objective.n_evaluations,
        seconds=time.perf_counter() - start,
        history=tuple(history),
        message=message,
        truncation=objective.last_truncation,
    )
    logger.info("%r", result)
    return result


_METHODS = ("lbfgs", "sweep", "sweep+lbfgs")


def _sweeps(
    objective: Objective, x0: np.ndarray, max_sweeps: int, target_fidelity: float, progress: bool
) -> tuple[np.ndarray, float, list[float]]:
    """Polar sweeps from ``x0``: ``(angles, their fidelity, fidelity per sweep)``."""
    from .sweeps import sweep_compile

    bar = _progress_bar(max_sweeps, progress, desc="AQC sweeps")
    try:
        params, history = sweep_compile(objective, x0, max_sweeps=max_sweeps, target_fidelity=target_fidelity,
                                        progress=bar)
    finally:
        if bar is not None:
            bar.close()
    return params, objective.fidelity(params), history


def _progress_bar(total: int, enabled: bool, desc: str = "AQC") -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=False)


def compile_sequence(
    targets: Sequence[Any],
    ansatz: Ansatz,
    initial_params: Any = None,
    **kwargs: Any,
) -> list[AQCResult]:
    """Compile each target in turn, warm-starting from the previous solution.

    Parameters
    ----------
    targets : sequence
        Targets in schedule order (e.g. increasing time ``t``).
    ansatz : Ansatz
        One ansatz for all targets.
    initial_params : array_like, optional
        Start of the first compilation.
    **kwargs
        Passed to :func:`compile_state`.

    Returns
    -------
    list of AQCResult
    """
    results: list[AQCResult] = []
    params = initial_params
    for target in targets:
        result = compile_state(target, ansatz, params, **kwargs)
        results.append(result)
        params = result.params
    return results
