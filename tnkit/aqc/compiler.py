"""The AQC driver: maximise the fidelity of an ansatz with a target by L-BFGS-B.

:func:`compile_state` optimises the parameters of an :class:`~tnkit.aqc.ansatz.Ansatz`
with :func:`scipy.optimize.minimize` (``method="L-BFGS-B"``, loss ``1 - F`` and the
exact gradient of :class:`~tnkit.aqc.objective.Objective`), stops at ``max_iter``
iterations or as soon as the fidelity reaches ``target_fidelity``, and shows a tqdm
progress bar with the fidelity. It never starts at a stationary point: without
``initial_params`` the angles start small and random (all-zero angles prepare
``|0...0>``, where the gradient of many targets vanishes: L-BFGS-B would stop at
once), and a given start with a vanishing gradient is nudged the same way. A
``target_fidelity`` that is not reached gives a
:class:`~tnkit.errors.ConvergenceWarning` and ``result.target_reached == False``. :func:`compile_sequence` compiles a sequence of
targets (e.g. times ``t_1 < t_2 < ...``), each warm-started from the previous
solution, which avoids the vanishing overlaps of many-qubit states far apart.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.rng import as_generator
from ..core.validate import check_int, check_option
from ..errors import ConvergenceWarning
from .ansatz import Ansatz
from .objective import DEFAULT_OBJECTIVE_CUTOFF, Objective

__all__ = [
    "AQCResult",
    "compile_state",
    "compile_sequence",
    "initial_angles",
    "optimise_angles",
    "warn_if_missed",
    "INITIAL_ANGLE_SCALE",
]

logger = logging.getLogger(__name__)

#: Half-width (radians) of the uniform random start of :func:`initial_angles`. Angles
#: of 0.01 leave a Néel-quench target's fidelity at 0 (the start stays in the wrong
#: magnetisation sector); 0.1 to pi all reach the same optimum on a 10-qubit brickwall.
INITIAL_ANGLE_SCALE = 0.3

#: A gradient whose largest entry is below this marks a stationary start.
_STATIONARY_GTOL = 1e-10


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
    target_fidelity : float or None
        The fidelity asked for (``None``: none; the optimiser ran to convergence).
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
    target_fidelity: float | None = None

    @property
    def target_reached(self) -> bool:
        """Whether ``fidelity >= target_fidelity`` (``True`` when no target was asked for)."""
        return self.target_fidelity is None or self.fidelity >= self.target_fidelity

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

    def ansatz_circuit(self) -> tuple[Any, np.ndarray]:
        """The compiled circuit with free parameters, and the optimised values.

        Returns ``(circuit, values)``: a ``qiskit.QuantumCircuit`` whose rotation
        angles are the elements of one ``ParameterVector`` named ``"theta"``, and
        the angles with which ``circuit.assign_parameters(values)`` is the compiled
        circuit (see :func:`tnkit.aqc.circuits.ansatz_circuit`). Use them to
        re-optimise on hardware, as an ansatz with its starting point.
        """
        from .circuits import ansatz_circuit

        return ansatz_circuit(self.ansatz, self.params)

    def __repr__(self) -> str:
        return (
            f"AQCResult(fidelity={self.fidelity:.6f} (from {self.initial_fidelity:.6f}), "
            f"cnots={self.cnot_count}, cnot_depth={self.cnot_depth}, iterations={self.n_iterations}, "
            f"evaluations={self.n_evaluations}, seconds={self.seconds:.2f}, message={self.message!r})"
        )


def initial_angles(ansatz: Ansatz, seed: Any = None, *, scale: float = INITIAL_ANGLE_SCALE) -> np.ndarray:
    """The default start: every angle uniform in ``[-scale, scale]``.

    All-zero angles prepare ``|0...0>`` (each core is then a SWAP), a stationary
    point of the fidelity for real targets and for targets without overlap with
    ``|0...0>`` (a Néel quench conserves the magnetisation): L-BFGS-B would stop
    there with zero iterations. Small random angles break that symmetry while
    staying close to the simple circuit.

    Parameters
    ----------
    ansatz : Ansatz
    seed : None, int or numpy Generator
        Randomness of the start (``None``: fresh entropy).
    scale : float
        Half-width of the uniform distribution, in radians.

    Returns
    -------
    numpy.ndarray
        Shape ``(ansatz.n_params,)``.
    """
    if not isinstance(ansatz, Ansatz):
        raise TypeError(f"`ansatz` must be an Ansatz, got {type(ansatz).__name__}.")
    return ansatz.random_params(seed, scale=float(scale))


def compile_state(
    target: Any,
    ansatz: Ansatz,
    initial_params: Any = None,
    *,
    max_bond: int | None = 64,
    cutoff: float = DEFAULT_OBJECTIVE_CUTOFF,
    max_iter: int = 200,
    target_fidelity: float | None = None,
    max_corrections: int = 20,
    method: str = "lbfgs",
    max_sweeps: int = 50,
    seed: Any = None,
    progress: bool = True,
    warn: bool = True,
) -> AQCResult:
    """Optimise ``ansatz`` so that ``C(theta)|0...0>`` approaches ``target``.

    Parameters
    ----------
    target : MatrixProductState or anything :func:`~tnkit.aqc.targets.as_target` accepts
    ansatz : Ansatz
    initial_params : array_like, optional
        Starting angles (default: :func:`initial_angles`, small random angles). See
        :mod:`tnkit.aqc.initial` for Trotter, Ran-style and warm starts. A start where
        the gradient vanishes (below 1e-10) and the fidelity is short of the target
        is nudged by random angles of the same size (``seed``), noted in
        ``result.message``.
    max_bond : int, optional
        Bond cap of the simulations in the objective (``None``: exact).
    cutoff : float
        Relative discarded weight allowed per gate in the simulations.
    max_iter : int
        Largest number of L-BFGS-B iterations.
    target_fidelity : float, optional
        Stop as soon as the fidelity reaches this value; if it is not reached, a
        :class:`~tnkit.errors.ConvergenceWarning` (and ``result.target_reached`` is
        ``False``). ``None``: run until the optimiser converges or ``max_iter``.
    max_corrections : int
        L-BFGS memory (``maxcor``).
    method : {"lbfgs", "sweep", "sweep+lbfgs"}
        ``"lbfgs"``: scipy L-BFGS-B on the angles with the exact gradient.
        ``"sweep"``: gate-by-gate polar-decomposition sweeps
        (:mod:`tnkit.aqc.sweeps`), monotone in the exact mode. ``"sweep+lbfgs"``:
        sweeps first, then L-BFGS-B from their result.
    max_sweeps : int
        Largest number of sweeps (methods with ``"sweep"``).
    seed : None, int or numpy Generator
        Randomness of the default start and of the nudge off a stationary start.
    progress : bool
        Show a tqdm progress bar with the fidelity.
    warn : bool
        Issue the :class:`~tnkit.errors.ConvergenceWarning` of a missed
        ``target_fidelity`` (``False`` for drivers that report it once, see
        :func:`optimise_angles`).

    Returns
    -------
    AQCResult

    Warns
    -----
    ConvergenceWarning
        When ``target_fidelity`` is given and not reached (and ``warn``).

    Examples
    --------
    >>> from tnkit import MPS
    >>> from tnkit.aqc import brickwall_ansatz, compile_state
    >>> target = MPS.random(6, max_bond=2, seed=0, dtype=complex)
    >>> result = compile_state(target, brickwall_ansatz(6, 4), seed=0, progress=False)
    >>> result.fidelity > 0.99
    True
    """
    from scipy.optimize import minimize

    if not isinstance(ansatz, Ansatz):
        raise TypeError(f"`ansatz` must be an Ansatz, got {type(ansatz).__name__}.")
    check_option("method", method, _METHODS)
    max_iter = check_int("max_iter", max_iter, minimum=0)
    if target_fidelity is not None and not 0.0 <= float(target_fidelity) <= 1.0:
        raise ValueError(f"`target_fidelity` must lie in [0, 1] or be None, got {target_fidelity!r}.")
    goal = 1.0 if target_fidelity is None else float(target_fidelity)
    rng = as_generator(seed)
    objective = Objective(ansatz, target, max_bond=max_bond, cutoff=cutoff)
    x0 = initial_angles(ansatz, rng) if initial_params is None else ansatz.check_params(initial_params)
    start = time.perf_counter()
    history: list[float] = []
    cache: dict[str, Any] = {}
    notes: list[str] = []
    plan = _METHODS[method]
    if plan.sweeps:
        f0 = objective.fidelity(x0)
    else:  # a gradient start: nudged off a stationary point
        x0, f0 = _off_stationary(objective, x0, goal, rng, cache, notes)
    state = {"best_x": x0.copy(), "best_f": f0}
    if plan.sweeps:
        max_iter = max_iter if plan.lbfgs else 0
        x0, f_sweep, sweep_history = _sweeps(objective, x0, max_sweeps, goal, progress)
        history += sweep_history
        if f_sweep > state["best_f"]:
            state.update(best_x=x0.copy(), best_f=f_sweep)
    message = "sweeps converged" if plan.sweeps else "max_iter is 0"
    n_iter = 0
    if state["best_f"] < goal and max_iter > 0:
        n_iter, message = _lbfgs(minimize, objective, x0, state, history, cache, goal=goal, max_iter=max_iter,
                                 max_corrections=max_corrections, progress=progress)
    elif state["best_f"] >= goal:
        message = "target fidelity reached"
    result = AQCResult(
        ansatz=ansatz,
        params=state["best_x"],
        fidelity=float(state["best_f"]),
        initial_fidelity=float(f0),
        n_iterations=n_iter,
        n_evaluations=objective.n_evaluations,
        seconds=time.perf_counter() - start,
        history=tuple(history),
        message="; ".join(notes + [message]),
        truncation=objective.last_truncation,
        target_fidelity=None if target_fidelity is None else float(target_fidelity),
    )
    logger.info("%r", result)
    if warn:
        warn_if_missed(result, stacklevel=2)
    return result


def warn_if_missed(result: AQCResult, *, stacklevel: int = 2) -> None:
    """Issue a :class:`~tnkit.errors.ConvergenceWarning` when ``result`` misses its target fidelity."""
    if not result.target_reached:
        warnings.warn(
            f"AQC reached fidelity {result.fidelity:.6f}, below the target {result.target_fidelity:g} "
            f"({result.n_iterations} iterations, {result.cnot_count} CNOTs; optimiser: {result.message}). "
            "Try a deeper ansatz, compile_growing, more iterations or method='sweep+lbfgs'.",
            ConvergenceWarning,
            stacklevel=stacklevel + 1,
        )


def optimise_angles(target: Any, ansatz: Ansatz, initial_params: Any = None, **options: Any) -> AQCResult:
    """:func:`compile_state` without the warning on a missed target (for drivers that report it once).

    ``options`` are those of :func:`compile_state` (``warn`` excepted).
    """
    return compile_state(target, ansatz, initial_params, warn=False, **options)


def _off_stationary(
    objective: Objective, x0: np.ndarray, goal: float, rng: np.random.Generator, cache: dict, notes: list[str]
) -> tuple[np.ndarray, float]:
    """``(start, its fidelity)``: ``x0``, or ``x0`` nudged when its gradient vanishes short of ``goal``.

    The fidelity and gradient of the start are kept in ``cache`` for the optimiser's first call.
    """
    f0, g0 = objective.fidelity_and_gradient(x0)
    if f0 < goal and float(np.max(np.abs(g0), initial=0.0)) < _STATIONARY_GTOL:
        logger.info("start at a stationary point (fidelity %.3g): nudging the angles", f0)
        notes.append(f"started off a stationary point (fidelity {f0:.3g}, zero gradient) by random angles")
        x0 = x0 + rng.uniform(-INITIAL_ANGLE_SCALE, INITIAL_ANGLE_SCALE, x0.shape)
        f0, g0 = objective.fidelity_and_gradient(x0)
    cache.update(x=x0.copy(), f=f0, g=g0)
    return x0, f0


def _lbfgs(
    minimize: Any,
    objective: Objective,
    x0: np.ndarray,
    state: dict,
    history: list[float],
    cache: dict,
    *,
    goal: float,
    max_iter: int,
    max_corrections: int,
    progress: bool,
) -> tuple[int, str]:
    """Run scipy's L-BFGS-B from ``x0``, keeping the best angles in ``state``; ``(iterations, message)``."""

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        if "x" in cache and np.array_equal(x, cache["x"]):  # the start, evaluated already
            f, g = cache.pop("f"), cache.pop("g")
            cache.pop("x")
        else:
            f, g = objective.fidelity_and_gradient(x)
        if f > state["best_f"]:
            state["best_x"], state["best_f"] = x.copy(), f
        return 1.0 - f, -g

    bar = _progress_bar(max_iter, progress)

    def callback(intermediate_result: Any) -> None:
        f = 1.0 - float(intermediate_result.fun)
        history.append(f)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(fidelity=f"{f:.6f}")
        if f >= goal:
            raise StopIteration

    try:
        res = minimize(
            fun,
            x0,
            jac=True,
            method="L-BFGS-B",
            callback=callback,
            options={"maxiter": max_iter, "maxcor": max_corrections, "ftol": 1e-15, "gtol": 1e-10},
        )
    finally:
        _close(bar)
    message = "target fidelity reached" if state["best_f"] >= goal else str(res.message)
    return int(res.nit), message


@dataclass(frozen=True)
class _Method:
    """The stages of one optimisation method of :func:`compile_state`, in this order."""

    sweeps: bool  # polar sweeps (sweep_compile) from the start
    lbfgs: bool  # then L-BFGS-B while below the target (from a nudged start when it runs alone)


#: The optimisation methods of :func:`compile_state` by name; adding one is one entry.
_METHODS: dict[str, _Method] = {
    "lbfgs": _Method(sweeps=False, lbfgs=True),
    "sweep": _Method(sweeps=True, lbfgs=False),
    "sweep+lbfgs": _Method(sweeps=True, lbfgs=True),
}


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
        _close(bar)
    return params, objective.fidelity(params), history


def _progress_bar(total: int, enabled: bool, desc: str = "AQC") -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=False)


def _close(bar: Any) -> None:
    """Close a progress bar, completing it first when the optimiser stopped early (converged)."""
    if bar is None:
        return
    if bar.total is not None and bar.n < bar.total:
        bar.total = bar.n  # stopped early: show the bar as finished rather than frozen part-way
        bar.refresh()
    bar.close()


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
        Passed to :func:`compile_state` (each target that misses ``target_fidelity``
        gives its own :class:`~tnkit.errors.ConvergenceWarning`).

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
