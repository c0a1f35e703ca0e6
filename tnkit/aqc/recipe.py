"""The ``tnkit aqc`` recipe as a library call: target, ansatz, compile, verify, write.

:func:`run_aqc` takes one frozen :class:`AQCSettings` and

1. checks everything that can be checked before any work (every option's type and
   range, the output paths: writable, distinct, not the input; the basis gates, by
   transpiling a small circuit; the coupling map against the qubits);
2. builds the target with a builder of :data:`TARGET_BUILDERS`: a
   :class:`~tnkit.aqc.targets.SpinChain` (a model of :data:`MODELS`) evolved by
   Trotter steps or by two-site TDVP, or its DMRG ground state; or loads a saved MPS;
3. builds the ansatz with a builder of :data:`ANSATZ_BUILDERS` (or grows it, see
   :func:`~tnkit.aqc.growth.compile_growing`) and compiles it;
4. re-simulates the emitted (and possibly transpiled) circuit independently;
5. writes the OpenQASM file and the JSON report, each atomically.

It returns an :class:`AQCRun` holding the :class:`~tnkit.aqc.compiler.AQCResult`,
the circuit and the report. A missed ``target_fidelity`` gives a
:class:`~tnkit.errors.ConvergenceWarning` and ``run.target_reached == False``; the
files are written either way.

Examples
--------
>>> import tempfile, os
>>> from tnkit.aqc.recipe import AQCSettings, run_aqc
>>> folder = tempfile.mkdtemp()
>>> settings = AQCSettings(out=os.path.join(folder, "xxz.qasm"), n_sites=6, time=0.5, depth=2,
...                        target_fidelity=0.99, progress=False)
>>> run = run_aqc(settings)
>>> run.target_reached, run.report["depth"], sorted(os.listdir(folder))
(True, 2, ['xxz.json', 'xxz.qasm'])
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.validate import check_option
from .ansatz import Ansatz, brickwall_ansatz, staircase_ansatz
from .compiler import AQCResult, initial_angles, optimise_angles, warn_if_missed
from .growth import GROWTH_KINDS
from .targets import MAX_TROTTER_STEPS, SpinChain, initial_bits

__all__ = [
    "AQCSettings",
    "AQCRun",
    "run_aqc",
    "check_settings",
    "check_given_options",
    "ground_state_defaults",
    "MODEL_OPTIONS",
    "resolve_coupling_map",
    "COUPLING_MAPS",
    "MODELS",
    "ANSATZ_BUILDERS",
    "TARGET_BUILDERS",
    "EVOLVE_METHODS",
    "GROW_CHOICES",
    "MAX_DEPTH",
    "MAX_SITES",
    "MAX_BLOCKS",
]

#: Largest ``depth`` (Trotter steps or layers) and ``max_layers`` accepted: a
#: 20-qubit ansatz of 1000 layers already has about 10,000 blocks.
MAX_DEPTH = 1000
#: Largest number of qubits of a model chain.
MAX_SITES = 1000
#: Largest number of two-qubit blocks a run may build (about 90,000 angles): far past
#: what an L-BFGS-B iteration does in minutes (a 100-qubit, 340-block ansatz takes
#: about 2 s of CPU per iteration at ``max_bond=32``).
MAX_BLOCKS = 10_000
#: Largest bond cap of the objective.
MAX_BOND = 4096
#: Largest iteration budget.
MAX_ITER = 1_000_000


def _xxz(s: AQCSettings) -> SpinChain:
    return SpinChain.xxz(s.n_sites, delta=s.delta, j=s.j, h=s.h)


def _heisenberg(s: AQCSettings) -> SpinChain:
    return SpinChain.heisenberg(s.n_sites, j=s.j, h=s.h)


def _tfim(s: AQCSettings) -> SpinChain:
    return SpinChain.tfim(s.n_sites, j=s.j, h=s.h)


#: Spin chains by name: ``settings -> SpinChain``.
MODELS: dict[str, Callable[[AQCSettings], SpinChain]] = {
    "xxz": _xxz,
    "heisenberg": _heisenberg,
    "tfim": _tfim,
}

#: ``grow`` values: no growth, or a kind of :func:`~tnkit.aqc.growth.compile_growing`.
GROW_CHOICES = ("none", *GROWTH_KINDS)

#: Ansätze whose blocks sit on the line ``(q, q + 1)``: a coupling map must hold the line.
_LINE_ANSATZE = ("trotter", "staircase", "ran", "hva")


@dataclass(frozen=True)
class AQCSettings:
    """Every option of :func:`run_aqc` (and of ``tnkit aqc``), checked on construction.

    Parameters
    ----------
    out : str or Path
        OpenQASM file to write; its directory must exist and be writable.
    report : str or Path, optional
        JSON report to write (default: ``out`` with the suffix ``.json``); must differ
        from ``out`` and from ``mps``.
    mps : str or Path, optional
        A saved MPS (``MPS.save``) to compile instead of a model's time evolution.
    model : {"xxz", "heisenberg", "tfim"}
        Spin chain evolved from ``initial`` for ``time``, or whose ground state is the
        target (see :data:`MODELS`).
    ground_state : bool
        Target the model's ground state found by :func:`tnkit.dmrg` (bond cap
        ``target_bond``) instead of its time evolution; not with ``mps``, and the
        ``trotter`` ansatz does not apply.
    evolve : {"trotter", "tdvp"}
        How the time-evolved target is simulated (see :data:`EVOLVE_METHODS`):
        ``target_steps`` second-order Trotter steps, or two-site :func:`tnkit.tdvp`
        under the model's MPO in steps of ``dt`` with bond cap ``target_bond``.
    dt : float
        Largest TDVP time step, > 0: ``ceil(|time| / dt)`` equal steps cover ``time``.
    target_bond : int
        Bond cap of the DMRG ground state or of the TDVP evolution.
    n_sites : int
        Qubits of the chain, 2 to :data:`MAX_SITES`.
    delta, j, h : float
        XXZ anisotropy (``xxz`` only), coupling, field (Z for xxz/heisenberg, X for tfim).
    time : float
        Evolution time.
    initial : str
        ``"neel"``, ``"zeros"`` or a bit string of ``n_sites`` bits (qubit ``q`` is bit ``q``).
    target_steps : int
        Second-order Trotter steps of the target's simulation (1 to ``MAX_TROTTER_STEPS``).
    ansatz : str
        A name of :data:`ANSATZ_BUILDERS`: ``"trotter"`` (needs a model), ``"brickwall"``,
        ``"staircase"``, ``"ran"``, ``"hva"``.
    depth : int
        Trotter steps (``trotter``), odd/even layer pairs (``hva``) or layers (the
        others), 0 to :data:`MAX_DEPTH`;
        0 only with ``grow`` (start from no circuit).
    max_bond : int
        Bond cap of the simulations in the objective.
    max_iter : int
        L-BFGS-B iterations (per growth stage).
    target_fidelity : float
        In ``(0, 1]``; the compilation stops there, and missing it is reported.
    method : {"lbfgs", "sweep", "sweep+lbfgs"}
    cnot_budget : int, optional
        Most CNOTs (``trotter`` ansatz: filled with central blocks; with ``grow``:
        the growth stops there).
    grow : str
        One of :data:`GROW_CHOICES`.
    max_layers : int
        Most layers added with ``grow``.
    basis : sequence of str, optional
        Gates to transpile the circuit to (Qiskit names, e.g. ``("ecr", "rz", "sx", "x")``).
    coupling_map : str or sequence of (int, int), optional
        ``"linear"``, ``"ring"`` or undirected qubit pairs; the brickwall ansatz is
        built on it and the circuit transpiled to it (qubit ``q`` on physical ``q``).
    qasm_version : {2, 3}
    seed : int
        Randomness of the small random start of zero-angle ansätze.
    progress : bool
        Show progress bars.
    """

    out: str | Path
    report: str | Path | None = None
    mps: str | Path | None = None
    model: str = "xxz"
    n_sites: int = 10
    delta: float = 0.5
    j: float = 1.0
    h: float = 0.0
    time: float = 1.0
    initial: str = "neel"
    target_steps: int = 40
    ground_state: bool = False
    evolve: str = "trotter"
    dt: float = 0.025
    target_bond: int = 64
    ansatz: str = "trotter"
    depth: int = 3
    max_bond: int = 64
    max_iter: int = 200
    target_fidelity: float = 0.999
    method: str = "lbfgs"
    cnot_budget: int | None = None
    grow: str = "none"
    max_layers: int = 8
    basis: tuple[str, ...] | None = None
    coupling_map: str | tuple[tuple[int, int], ...] | None = None
    qasm_version: int = 2
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        _check_types_and_ranges(self)

    @property
    def target_kind(self) -> str:
        """The key of :data:`TARGET_BUILDERS` of a model target: ``"ground-state"`` or ``evolve``."""
        return "ground-state" if self.ground_state else self.evolve

    @property
    def report_path(self) -> Path:
        """Where the JSON report goes."""
        return Path(self.report) if self.report is not None else Path(self.out).with_suffix(".json")

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        d = dataclasses.asdict(self)
        for key in ("out", "report", "mps"):
            d[key] = None if d[key] is None else str(d[key])
        for key in ("basis", "coupling_map"):
            if isinstance(d[key], tuple):
                d[key] = [list(x) if isinstance(x, tuple) else x for x in d[key]]
        return d


def _int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer, got {value!r} of type {type(value).__name__}.")
    if not lo <= int(value) <= hi:
        raise ValueError(f"`{name}` must be an integer from {lo} to {hi}, got {value}.")
    return int(value)


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a real number, got {value!r} of type {type(value).__name__}.")
    if not math.isfinite(float(value)):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
    return float(value)


def _check_types_and_ranges(s: AQCSettings) -> None:
    """Checks that need no file system, no Qiskit and no target: types, ranges, combinations."""
    check_option("model", s.model, MODELS)
    check_option("ansatz", s.ansatz, ANSATZ_BUILDERS)
    check_option("method", s.method, ("lbfgs", "sweep", "sweep+lbfgs"))
    check_option("evolve", s.evolve, EVOLVE_METHODS)
    if not isinstance(s.ground_state, bool):
        raise TypeError(f"`ground_state` must be a bool, got {s.ground_state!r}.")
    _int("target_bond", s.target_bond, 1, MAX_BOND)
    dt = _real("dt", s.dt)
    if dt <= 0:
        raise ValueError(f"`dt` must be a positive time step, got {dt!r}.")
    if s.mps is not None and (s.ground_state or s.evolve != "trotter"):
        what = "`ground_state`" if s.ground_state else f"`evolve` {s.evolve!r}"
        raise ValueError(f"{what} builds a model's target; it does not apply to `mps`.")
    if s.ground_state and s.evolve != "trotter":
        raise ValueError(
            f"`ground_state` is found by DMRG, not evolved; `evolve` {s.evolve!r} does not apply to it."
        )
    if s.ground_state and s.ansatz == "trotter" and not (s.grow != "none" and s.depth == 0):
        raise ValueError(
            "`ansatz` 'trotter' is the circuit of a time evolution; a `ground_state` needs "
            "'hva', 'brickwall', 'staircase' or 'ran'."
        )
    check_option("grow", s.grow, GROW_CHOICES)
    check_option("qasm_version", s.qasm_version, (2, 3))
    _int("n_sites", s.n_sites, 2, MAX_SITES)
    _int("target_steps", s.target_steps, 1, MAX_TROTTER_STEPS)
    _int("depth", s.depth, 0, MAX_DEPTH)
    _int("max_bond", s.max_bond, 1, MAX_BOND)
    _int("max_iter", s.max_iter, 0, MAX_ITER)
    _int("max_layers", s.max_layers, 0, MAX_DEPTH)
    _int("seed", s.seed, 0, 2**63 - 1)
    if s.cnot_budget is not None:
        _int("cnot_budget", s.cnot_budget, 0, 10**9)
    for name in ("delta", "j", "h", "time"):
        _real(name, getattr(s, name))
    f = _real("target_fidelity", s.target_fidelity)
    if not 0.0 < f <= 1.0:
        raise ValueError(f"`target_fidelity` must lie in (0, 1], got {f!r}.")
    initial_bits(s.n_sites, s.initial)
    if s.depth == 0 and s.grow == "none":
        raise ValueError(
            "`depth` 0 (no seed circuit) needs `grow`; give a depth of at least 1 or a growth kind."
        )
    if s.mps is not None and s.ansatz == "trotter" and not (s.grow != "none" and s.depth == 0):
        raise ValueError(
            "`ansatz` 'trotter' needs a spin-chain model, not `mps`; use 'brickwall', 'staircase' or 'ran'."
        )
    if s.cnot_budget is not None and s.ansatz != "trotter" and s.grow == "none":
        raise ValueError(
            "`cnot_budget` applies to the 'trotter' ansatz or to `grow`; it would be ignored here."
        )
    if s.basis is not None:
        if isinstance(s.basis, str) or not all(isinstance(g, str) and g for g in s.basis) or not s.basis:
            raise TypeError(f"`basis` must be a non-empty sequence of gate names, got {s.basis!r}.")
    if isinstance(s.coupling_map, str):
        _coupling_name(s.coupling_map)
    elif s.coupling_map is not None:
        _pairs(s.coupling_map)  # shape and type only; the qubits are checked against the target
    if not isinstance(s.progress, bool):
        raise TypeError(f"`progress` must be a bool, got {s.progress!r}.")


#: Options of a spin-chain model: none applies to a saved MPS (``mps``).
MODEL_OPTIONS = ("n_sites", "delta", "j", "h", "time", "initial", "target_steps")
#: Options that build a model's target: none applies to a saved MPS.
_TARGET_OPTIONS = ("ground_state", "evolve", "dt", "target_bond")
#: Options of a time evolution: none applies to a ground state.
_EVOLUTION_OPTIONS = ("time", "initial", "target_steps", "evolve", "dt")


def check_given_options(options: Mapping[str, Any], given: Collection[str]) -> None:
    """``ValueError`` for an option set on purpose that the chosen target would ignore.

    For front ends that know which options their user set (``tnkit aqc`` and its
    flags); :class:`AQCSettings` itself checks values only, so a default it cannot
    tell from a choice is never refused there.

    Parameters
    ----------
    options : mapping
        The :class:`AQCSettings` fields about to be used (unset ones at their defaults).
    given : collection of str
        The names of the fields the user set.

    Raises
    ------
    ValueError
        With a saved ``mps``, for model options (:data:`MODEL_OPTIONS`) and options
        that build a model's target; ``delta`` for a model other than ``xxz``;
        with ``ground_state``, for time-evolution options; ``dt`` or ``target_bond``
        with ``evolve`` ``"trotter"``; ``target_steps`` with ``evolve`` ``"tdvp"``.
    """

    def names(keys: Sequence[str]) -> str:
        return ", ".join(f"`{k}`" for k in keys)

    model = [k for k in MODEL_OPTIONS if k in given]
    if options["mps"] is not None and model:
        raise ValueError(f"{names(model)}: model options, which do not apply to `mps`")
    if "delta" in given and options["model"] != "xxz":
        raise ValueError(f"`delta` applies to `model` xxz only, not {options['model']}")
    target = [k for k in _TARGET_OPTIONS if k in given]
    if options["mps"] is not None and target:
        raise ValueError(f"{names(target)}: options that build a model's target, which do not apply to `mps`")
    if options["ground_state"]:
        clash = [k for k in _EVOLUTION_OPTIONS if k in given]
        if clash:
            raise ValueError(f"{names(clash)}: time-evolution options, which do not apply to `ground_state`")
    elif options["evolve"] == "trotter":
        unused = [k for k in ("dt", "target_bond") if k in given]
        if unused:
            raise ValueError(
                f"{names(unused)}: apply to `evolve` tdvp (or `target_bond` to `ground_state`), "
                "not to trotter"
            )
    elif "target_steps" in given:
        raise ValueError("`target_steps`: Trotter steps, which do not apply to `evolve` tdvp (use `dt`)")


#: What a ground state (``ground_state``) takes, unless set: the objective's bond cap
#: (a third of the cost of 64 per evaluation at 50 qubits; there the bond-32 fidelity
#: lies within 0.001 below the emitted circuit's) and the target fidelity (the 0.99 of
#: a compiled ground state with a margin for that truncation). ``depth`` of the ``hva``
#: ansatz: :func:`~tnkit.aqc.initial.hva_default_layers`.
GROUND_STATE_DEFAULTS: dict[str, Any] = {"max_bond": 32, "target_fidelity": 0.995}


#: What a saved ``mps`` compiled with the ``ran`` ansatz takes when neither ``depth`` nor
#: ``grow`` is set: Ran layers grown from no circuit until ``target_fidelity``
#: (:func:`~tnkit.aqc.growth.compile_growing`). A fixed depth is too long for simple
#: states and too short for entangled ones: of seven 8-12 qubit states (GHZ, W, random
#: bond 2 and 4, time-evolved), three fixed Ran layers reached fidelity 0.999 on four with
#: 61-79 CNOTs, where growth needs 19-25, and missed it on three (0.64, 0.995, 0.85),
#: where growth reached 0.996, 0.999 and 0.996 (``docs/aqc.md``).
MPS_DEFAULTS: dict[str, Any] = {"grow": "ran", "depth": 0}


def mps_defaults(ansatz: str, given: Collection[str]) -> dict[str, Any]:
    """The settings a saved ``mps`` takes when they are not given (see :data:`MPS_DEFAULTS`).

    Parameters
    ----------
    ansatz : str
        The ansatz's name; only ``"ran"`` grows by default.
    given : collection of str
        The names of the fields the user set; a ``depth`` or ``grow`` among them
        keeps the fixed-depth default.

    Returns
    -------
    dict
        Field names of :class:`AQCSettings` and their values (empty when nothing changes).

    Examples
    --------
    >>> from tnkit.aqc.recipe import mps_defaults
    >>> mps_defaults("ran", given={"mps"})
    {'grow': 'ran', 'depth': 0}
    >>> mps_defaults("ran", given={"mps", "depth"})
    {}
    """
    if ansatz != "ran" or {"depth", "grow"} & set(given):
        return {}
    return dict(MPS_DEFAULTS)


def ground_state_defaults(n_sites: int, ansatz: str) -> dict[str, Any]:
    """The settings a ground state takes when they are not given (see :data:`GROUND_STATE_DEFAULTS`).

    Parameters
    ----------
    n_sites : int
        Qubits of the chain.
    ansatz : str
        The ansatz's name; ``"hva"`` also gets its ``depth``, ``n_sites // 3`` layer pairs.

    Returns
    -------
    dict
        Field names of :class:`AQCSettings` and their values.

    Examples
    --------
    >>> from tnkit.aqc.recipe import ground_state_defaults
    >>> ground_state_defaults(50, "hva")
    {'max_bond': 32, 'target_fidelity': 0.995, 'depth': 16}
    """
    from .initial import hva_default_layers

    out = dict(GROUND_STATE_DEFAULTS)
    if ansatz == "hva":
        out["depth"] = hva_default_layers(n_sites)
    return out


def _pairs(pairs: object) -> list[tuple[int, int]]:
    """``pairs`` as a list of ``(a, b)`` with distinct non-negative integers."""
    try:
        out = [tuple(p) for p in pairs]  # type: ignore[union-attr]
    except TypeError:
        raise TypeError(f"`coupling_map` must be a sequence of qubit pairs, got {pairs!r}.") from None
    if not out:
        raise ValueError("`coupling_map` must hold at least one qubit pair, got none.")
    for k, p in enumerate(out):
        ok = len(p) == 2 and all(isinstance(q, (int, np.integer)) and not isinstance(q, bool) for q in p)
        if not ok:
            raise TypeError(f"`coupling_map[{k}]` must be a pair of qubit indices, got {p!r}.")
        if p[0] < 0 or p[1] < 0 or p[0] == p[1]:
            raise ValueError(f"`coupling_map[{k}]` must be two different non-negative qubits, got {p!r}.")
    return [(int(a), int(b)) for a, b in out]


def _line(n_qubits: int) -> list[tuple[int, int]]:
    return [(q, q + 1) for q in range(n_qubits - 1)]


def _ring(n_qubits: int) -> list[tuple[int, int]]:
    return _line(n_qubits) + ([(0, n_qubits - 1)] if n_qubits > 2 else [])


#: Named device connectivities: ``n_qubits -> qubit pairs``.
COUPLING_MAPS: dict[str, Callable[[int], list[tuple[int, int]]]] = {
    "linear": _line,
    "ring": _ring,
}


def _coupling_name(spec: str) -> str:
    """``spec`` if it names a :data:`COUPLING_MAPS` entry, else ``ValueError`` listing them."""
    if spec not in COUPLING_MAPS:
        names = ", ".join(repr(name) for name in COUPLING_MAPS)
        raise ValueError(f"`coupling_map` must be {names} or a sequence of qubit pairs, got {spec!r}.")
    return spec


def resolve_coupling_map(
    spec: str | Sequence[Sequence[int]] | None, n_qubits: int
) -> list[tuple[int, int]] | None:
    """Undirected qubit pairs of ``spec`` for ``n_qubits`` qubits.

    Parameters
    ----------
    spec : {"linear", "ring"} or sequence of (int, int) or None
        ``"linear"``: ``0 - 1 - ... - (n-1)``; ``"ring"``: the line closed by
        ``(n-1, 0)``; pairs may name qubits beyond ``n_qubits`` (a larger device).
    n_qubits : int

    Returns
    -------
    list of (int, int) or None
        Sorted pairs ``(a, b)`` with ``a < b``.

    Raises
    ------
    ValueError
        If the pairs among qubits ``0 .. n_qubits - 1`` do not connect them.
    """
    if spec is None:
        return None
    pairs = COUPLING_MAPS[_coupling_name(spec)](n_qubits) if isinstance(spec, str) else _pairs(spec)
    unique = sorted({(min(a, b), max(a, b)) for a, b in pairs})
    from .ansatz import check_connected

    check_connected([p for p in unique if p[1] < n_qubits], n_qubits)
    return unique


@dataclass(frozen=True)
class _AnsatzRequest:
    """What an ansatz builder may use."""

    settings: AQCSettings
    target: Any
    chain: SpinChain | None
    coupling_map: list[tuple[int, int]] | None


def _trotter(r: _AnsatzRequest) -> tuple[Ansatz, np.ndarray]:
    from .initial import fill_cnot_budget, trotter_initialization

    s = r.settings
    ansatz, params = trotter_initialization(r.chain, s.time, s.depth, initial=s.initial)
    if s.cnot_budget is not None and s.grow == "none":
        ansatz, params = fill_cnot_budget(ansatz, params, s.cnot_budget)
    return ansatz, params


def _brickwall(r: _AnsatzRequest) -> tuple[Ansatz, np.ndarray]:
    ansatz = brickwall_ansatz(r.target.n_sites, r.settings.depth, coupling_map=r.coupling_map)
    return ansatz, initial_angles(ansatz, r.settings.seed)


def _staircase(r: _AnsatzRequest) -> tuple[Ansatz, np.ndarray]:
    ansatz = staircase_ansatz(r.target.n_sites, r.settings.depth)
    return ansatz, initial_angles(ansatz, r.settings.seed)


def _ran(r: _AnsatzRequest) -> tuple[Ansatz, np.ndarray]:
    from .initial import ran_initialization

    return ran_initialization(r.target, r.settings.depth)


def _hva(r: _AnsatzRequest) -> tuple[Ansatz, np.ndarray]:
    from .initial import hva_initialization

    s = r.settings
    return hva_initialization(
        r.target, s.depth, max_bond=s.max_bond, max_iter=s.max_iter, target_fidelity=s.target_fidelity
    )


#: Ansatz builders by name: ``request -> (ansatz, starting angles)``. ``trotter``: the
#: Trotter circuit's structure with its exact angles; ``brickwall`` and ``staircase``:
#: small random angles (:func:`~tnkit.aqc.compiler.initial_angles`); ``ran``: Ran's
#: analytic layers (:func:`~tnkit.aqc.initial.ran_initialization`); ``hva``: the
#: Hamiltonian variational ansatz of a Heisenberg/XXZ ground state, singlets then
#: ``depth`` odd/even layers with angles tied per half-layer and optimised
#: (:func:`~tnkit.aqc.initial.hva_initialization`).
ANSATZ_BUILDERS: dict[str, Callable[[_AnsatzRequest], tuple[Ansatz, np.ndarray]]] = {
    "trotter": _trotter,
    "brickwall": _brickwall,
    "staircase": _staircase,
    "ran": _ran,
    "hva": _hva,
}


def _trotter_structure(s: AQCSettings, n: int, coupling: list[tuple[int, int]] | None) -> Ansatz:
    from .initial import trotter_initialization

    return trotter_initialization(MODELS[s.model](s), s.time, s.depth, initial=s.initial)[0]


def _brickwall_structure(s: AQCSettings, n: int, coupling: list[tuple[int, int]] | None) -> Ansatz:
    return brickwall_ansatz(n, s.depth, coupling_map=coupling)


def _staircase_structure(s: AQCSettings, n: int, coupling: list[tuple[int, int]] | None) -> Ansatz:
    return staircase_ansatz(n, s.depth)


def _hva_structure(s: AQCSettings, n: int, coupling: list[tuple[int, int]] | None) -> Ansatz:
    return brickwall_ansatz(n, 2 * s.depth + 1)  # the structure of hva_ansatz(n, depth)


#: The seed ansatz of each builder of :data:`ANSATZ_BUILDERS` without its angles, for
#: checking a CNOT budget before the target is built: ``(settings, n_qubits,
#: coupling) -> Ansatz``. A builder missing here is checked once built.
_SEED_STRUCTURES: dict[str, Callable[[AQCSettings, int, Any], Ansatz]] = {
    "trotter": _trotter_structure,
    "brickwall": _brickwall_structure,
    "staircase": _staircase_structure,
    "ran": _staircase_structure,
    "hva": _hva_structure,
}


@dataclass(frozen=True)
class AQCRun:
    """What :func:`run_aqc` did.

    Attributes
    ----------
    result : AQCResult
        The compilation (the last stage when growing).
    circuit : qiskit.QuantumCircuit
        The circuit written (transpiled when a basis or coupling map was given).
    report : dict
        The JSON report, as written.
    qasm_path, report_path : Path
    stages : tuple of AQCResult
        Every growth stage (just ``result`` without growth).
    """

    result: AQCResult
    circuit: Any = field(repr=False)
    report: dict[str, Any] = field(repr=False)
    qasm_path: Path
    report_path: Path
    stages: tuple[AQCResult, ...] = field(default=(), repr=False)

    @property
    def target_reached(self) -> bool:
        """Whether the compilation reached the settings' ``target_fidelity``."""
        return self.result.target_reached


def _check_paths(s: AQCSettings) -> None:
    out, report = Path(s.out), s.report_path
    if out.suffix.lower() == ".json" and s.report is None:
        raise ValueError(
            f"`out` {str(out)!r} ends in .json, the default name of the report (OUT with .json): the report "
            "would overwrite the circuit; name the circuit .qasm or give the report another path."
        )
    resolved = {"out": out.resolve(), "report": report.resolve()}
    if resolved["out"] == resolved["report"]:
        raise ValueError(f"`out` and `report` are the same file ({str(out)!r}); give them different paths.")
    if s.mps is not None:
        source = Path(s.mps).resolve()
        for name, path in resolved.items():
            if path == source:
                raise ValueError(
                    f"`{name}` is the input MPS file {str(s.mps)!r}; writing it would destroy the input."
                )
    for name, path in (("out", out), ("report", report)):
        if path.is_dir():
            raise ValueError(f"`{name}` {str(path)!r} is a directory; give a file path.")
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise ValueError(f"`{name}`: the directory {str(folder)!r} does not exist.")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(f"`{name}`: the directory {str(folder)!r} is not writable.")
        if path.exists() and not os.access(path, os.W_OK):
            raise ValueError(f"`{name}` {str(path)!r} exists and is not writable.")


def _check_basis(basis: Sequence[str] | None) -> None:
    """Transpile a circuit of the gates tnkit emits to ``basis``: unknown or insufficient gates fail here."""
    if basis is None:
        return
    from ._qiskit import import_qiskit

    qiskit = import_qiskit()
    names = import_qiskit("qiskit.circuit.library").get_standard_gate_name_mapping()
    unknown = [g for g in basis if g not in names]
    if unknown:
        raise ValueError(
            f"`basis` names unknown gates {unknown}; use Qiskit's standard gate names such as "
            "cx, ecr, cz, rz, sx, x, u (e.g. ecr,rz,sx,x)."
        )
    probe = qiskit.QuantumCircuit(2)
    probe.rz(0.3, 0)
    probe.rx(0.4, 1)
    probe.ry(0.5, 0)
    probe.cx(0, 1)
    probe.cx(1, 0)
    try:
        qiskit.transpile(probe, basis_gates=list(basis), optimization_level=0)
    except Exception as exc:  # qiskit's TranspilerError and friends: the basis cannot express the circuit
        raise ValueError(
            f"`basis` {','.join(basis)} cannot express the circuit's rz/rx/ry/cx gates "
            f"({type(exc).__name__}); include a two-qubit gate and enough one-qubit gates, e.g. ecr,rz,sx,x."
        ) from None


def _check_coupling(s: AQCSettings, n: int) -> list[tuple[int, int]] | None:
    pairs = resolve_coupling_map(s.coupling_map, n)
    if pairs is None:
        return None
    on_line = s.ansatz in _LINE_ANSATZE or s.grow != "none"
    if on_line:
        missing = sorted({(q, q + 1) for q in range(n - 1)} - set(pairs))
        if missing:
            why = f"`grow` {s.grow!r}" if s.grow != "none" else f"the {s.ansatz!r} ansatz"
            raise ValueError(
                f"`coupling_map` lacks the pairs {missing[:6]} of the line 0-1-...-{n - 1}, on which {why} "
                "places its blocks; use --ansatz brickwall without --grow for other connectivities."
            )
    return pairs


def check_settings(settings: AQCSettings) -> tuple[Any, dict[str, Any] | None]:
    """Every check of :func:`run_aqc` that comes before the work.

    Checks the output paths, the basis gates and, after reading the target's size
    (a saved MPS is loaded; a model needs no work), the coupling map.

    Returns
    -------
    saved : MatrixProductState or None
        The loaded ``settings.mps``, if any (so it is read once).
    coupling : list of (int, int) or None
        The resolved coupling map.

    Raises
    ------
    ValueError, TypeError, FileNotFoundError, ImportError
        The first problem found, naming the option.
    """
    if not isinstance(settings, AQCSettings):
        raise TypeError(f"`settings` must be AQCSettings, got {type(settings).__name__}.")
    from ._qiskit import import_qiskit

    import_qiskit()  # needed for every circuit: fail here, in one line, when it is missing
    _check_paths(settings)
    _check_basis(settings.basis)
    saved = None
    n = settings.n_sites
    if settings.mps is not None:
        from ..mps.mps import MatrixProductState
        from .targets import as_target

        path = Path(settings.mps)
        if not path.is_file():
            raise FileNotFoundError(f"`mps`: no such file {str(path)!r}.")
        try:
            saved = as_target(MatrixProductState.load(path))
        except ValueError as exc:
            raise ValueError(f"`mps` {str(path)!r}: {exc}".replace("`target`", "the state")) from None
        n = saved.n_sites
        if n < 2 or set(saved.phys_dims) != {2}:
            raise ValueError(
                f"`mps` must be a state of at least 2 qubits (physical dimension 2), got {n} sites "
                f"of dimensions {sorted(set(saved.phys_dims))}."
            )
    coupling = _check_coupling(settings, n)
    _check_size(settings, n)
    _check_budget(settings, n, coupling)
    return saved, coupling


def _check_size(s: AQCSettings, n: int) -> None:
    """Refuse an ansatz (seed plus growth) of more than :data:`MAX_BLOCKS` blocks, estimated on the line."""
    per_layer = {"trotter": (n - 1) / 2, "brickwall": (n - 1) / 2, "staircase": n - 1, "ran": n - 1}
    layers = (
        0 if s.grow != "none" and s.depth == 0 else (2 * s.depth + 1 if s.ansatz == "trotter" else s.depth)
    )
    blocks = layers * per_layer.get(s.ansatz, n - 1)
    if s.grow != "none":
        blocks += s.max_layers * ((n - 1) / 2 if s.grow == "brickwall" else n - 1)
    if blocks > MAX_BLOCKS:
        growth = f" and `max_layers` {s.max_layers}" if s.grow != "none" else ""
        raise ValueError(
            f"`depth` {s.depth}{growth} on {n} qubits give about {int(blocks)} two-qubit blocks, "
            f"more than {MAX_BLOCKS} (MAX_BLOCKS); lower them."
        )


def _check_budget(s: AQCSettings, n: int, coupling: list[tuple[int, int]] | None) -> None:
    """A CNOT budget below the seed ansatz's CNOT count fails here, not after the target is built."""
    if s.cnot_budget is None or (s.grow != "none" and s.depth == 0):
        return
    structure = _SEED_STRUCTURES.get(s.ansatz)
    if structure is None:  # a builder registered by the user: its size is known only once built
        return
    seed = structure(s, n, coupling)
    if seed.cnot_count > s.cnot_budget:
        raise ValueError(
            f"`cnot_budget` {s.cnot_budget} is below the {seed.cnot_count} CNOTs of the {s.ansatz!r} ansatz "
            f"of depth {s.depth} on {n} qubits; raise it or lower `depth`."
        )


#: The coupling parameters each model reads (the report lists only these).
MODEL_PARAMETERS = {"xxz": ("delta", "j", "h"), "heisenberg": ("j", "h"), "tfim": ("j", "h")}


def _model_info(s: AQCSettings, kind: str) -> dict[str, Any]:
    params = {name: getattr(s, name) for name in MODEL_PARAMETERS.get(s.model, ("delta", "j", "h"))}
    return {"kind": kind, "model": s.model, "n_sites": s.n_sites, **params}


def _trotter_target(s: AQCSettings, chain: SpinChain) -> tuple[Any, dict[str, Any]]:
    from .targets import time_evolved_state

    target, evo = time_evolved_state(chain, s.time, steps=s.target_steps, initial=s.initial)
    info = {
        "time": s.time,
        "initial": s.initial,
        "method": "trotter",
        "steps": evo.steps,
        "max_bond": evo.max_bond,
        "estimated_error": evo.error,
    }
    return target, info


def _tdvp_target(s: AQCSettings, chain: SpinChain) -> tuple[Any, dict[str, Any]]:
    from ..algorithms import tdvp
    from ..mps.mps import MatrixProductState
    from .targets import initial_bits

    n_steps = max(1, math.ceil(abs(s.time) / s.dt))
    dt = s.time / n_steps
    psi0 = MatrixProductState.product_state(initial_bits(s.n_sites, s.initial))
    if dt < 0:  # backwards in time: exp(+i |t| H) = exp(-i |t| (-H))
        res = tdvp(
            psi0, -1.0 * chain.mpo(), dt=-dt, n_steps=n_steps, max_bond=s.target_bond, progress=s.progress
        )
    else:
        res = tdvp(psi0, chain.mpo(), dt=dt, n_steps=n_steps, max_bond=s.target_bond, progress=s.progress)
    target = res.state.normalized()
    info = {
        "time": s.time,
        "initial": s.initial,
        "method": "tdvp",
        "steps": n_steps,
        "dt": abs(dt),
        "target_bond": s.target_bond,
        "max_bond": target.max_bond_dim,
        "truncation_error": res.total_truncation_error,
    }
    return target, info


def _ground_state_target(s: AQCSettings, chain: SpinChain) -> tuple[Any, dict[str, Any]]:
    from ..algorithms import dmrg

    res = dmrg(chain.mpo(), max_bond=s.target_bond, seed=s.seed, progress=s.progress)
    info = {
        "target_bond": s.target_bond,
        "max_bond": res.state.max_bond_dim,
        "energy": res.energy,
        "variance": res.variance,
        "truncation_error": res.max_truncation_error,
        "sweeps": res.n_sweeps,
        "converged": res.converged,
    }
    return res.state.normalized(), info


#: Model targets by kind (:attr:`AQCSettings.target_kind`): ``(settings, chain) ->
#: (target MPS, the report's entries)``. ``trotter``: fine second-order Trotter steps
#: (:func:`~tnkit.aqc.targets.time_evolved_state`); ``tdvp``: two-site
#: :func:`tnkit.tdvp` under the chain's MPO; ``ground-state``: :func:`tnkit.dmrg`.
TARGET_BUILDERS: dict[str, Callable[[AQCSettings, SpinChain], tuple[Any, dict[str, Any]]]] = {
    "trotter": _trotter_target,
    "tdvp": _tdvp_target,
    "ground-state": _ground_state_target,
}

#: ``evolve`` values: the time-evolution builders of :data:`TARGET_BUILDERS`.
EVOLVE_METHODS = ("trotter", "tdvp")


def _target(s: AQCSettings, saved: Any) -> tuple[Any, SpinChain | None, dict[str, Any]]:
    """``(target MPS, chain or None, the report's target entry)``."""
    if saved is not None:
        info = {"kind": "mps", "mps": str(s.mps), "n_sites": saved.n_sites, "max_bond": saved.max_bond_dim}
        return saved, None, info
    chain = MODELS[s.model](s)
    target, extra = TARGET_BUILDERS[s.target_kind](s, chain)
    return target, chain, {**_model_info(s, s.target_kind), **extra}


def _compile(
    s: AQCSettings, target: Any, chain: Any, coupling: Any
) -> tuple[AQCResult, tuple[AQCResult, ...]]:
    options = dict(
        max_bond=s.max_bond,
        max_iter=s.max_iter,
        target_fidelity=s.target_fidelity,
        progress=s.progress,
        method=s.method,
        seed=s.seed,
    )
    growing = s.grow != "none"
    if growing and s.depth == 0:
        ansatz, params = None, None  # no seed circuit: compile_growing starts from nothing
    else:
        ansatz, params = ANSATZ_BUILDERS[s.ansatz](_AnsatzRequest(s, target, chain, coupling))
    if not growing:
        result = optimise_angles(target, ansatz, params, **options)
        return result, (result,)
    from .growth import compile_growing

    options["seed"] = np.random.default_rng(s.seed)
    stages = _quiet(
        compile_growing,
        target,
        ansatz,
        params,
        grow=s.grow,
        cnot_budget=s.cnot_budget,
        max_layers=s.max_layers,
        **options,
    )
    return stages[-1], tuple(stages)


def _quiet(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with its missed-target warning silenced (:func:`run_aqc` warns once itself)."""
    import warnings

    from ..errors import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


def _written_circuit(s: AQCSettings, result: AQCResult, coupling: list[tuple[int, int]] | None) -> Any:
    """The compiled circuit, transpiled to the basis and the (undirected) coupling map when given."""
    from .circuits import to_qiskit, transpile_circuit

    qc = to_qiskit(result.ansatz, result.params)
    if s.basis is not None or coupling is not None:
        undirected = None if coupling is None else [list(p) for p in coupling] + [[b, a] for a, b in coupling]
        qc = transpile_circuit(
            qc, basis_gates=None if s.basis is None else list(s.basis), coupling_map=undirected
        )
    return qc


def _report(
    s: AQCSettings,
    result: AQCResult,
    stages: tuple[AQCResult, ...],
    qc: Any,
    target: Any,
    target_info: dict[str, Any],
) -> dict[str, Any]:
    """The JSON report of a run (without the paths and the total time)."""
    from .circuits import circuit_fidelity, gate_counts

    counts = gate_counts(qc)
    report: dict[str, Any] = {
        "ansatz": s.ansatz,
        "depth": s.depth,
        "method": s.method,
        "grow": s.grow,
        "target": target_info,
        "target_fidelity": s.target_fidelity,
        "target_reached": result.target_reached,
        "fidelity": result.fidelity,
        "initial_fidelity": result.initial_fidelity,
        "circuit_fidelity": circuit_fidelity(qc, target, max_bond=max(s.max_bond, 128)),
        "cnots": result.cnot_count,
        "cnot_depth": result.cnot_depth,
        "two_qubit_gates": counts["two_qubit"],
        "two_qubit_depth": counts["two_qubit_depth"],
        "circuit_depth": counts["depth"],
        "gate_counts": {
            k: v for k, v in counts.items() if k not in ("two_qubit", "two_qubit_depth", "depth")
        },
        "blocks": result.ansatz.n_blocks,
        "parameters": result.ansatz.n_params,
        "iterations": result.n_iterations,
        "evaluations": result.n_evaluations,
        "compile_seconds": sum(r.seconds for r in stages),
        "message": result.message,
    }
    if len(stages) > 1 or s.grow != "none":
        report["stages"] = [
            {
                "cnots": r.cnot_count,
                "cnot_depth": r.cnot_depth,
                "fidelity": r.fidelity,
                "iterations": r.n_iterations,
            }
            for r in stages
        ]
    return report


def run_aqc(settings: AQCSettings) -> AQCRun:
    """Compile, verify and write: the ``tnkit aqc`` recipe (see the module docstring).

    Parameters
    ----------
    settings : AQCSettings

    Returns
    -------
    AQCRun

    Raises
    ------
    ValueError, TypeError, FileNotFoundError, ImportError
        From :func:`check_settings`, before any work.

    Warns
    -----
    ConvergenceWarning
        When the compilation misses ``settings.target_fidelity`` (the files are
        still written; ``run.target_reached`` is ``False``).
    """
    from ..io import atomic_write
    from .circuits import write_qasm

    saved, coupling = check_settings(settings)
    s = settings
    start = time.perf_counter()
    target, chain, target_info = _target(s, saved)
    target_seconds = time.perf_counter() - start
    result, stages = _compile(s, target, chain, coupling)
    qc = _written_circuit(s, result, coupling)
    report = _report(s, result, stages, qc, target, target_info)
    report["target_seconds"] = target_seconds
    out = write_qasm(qc, s.out, version=s.qasm_version)
    report["qasm"] = str(out)
    report["settings"] = s.as_dict()
    report["total_seconds"] = time.perf_counter() - start
    report_path = s.report_path
    with atomic_write(report_path) as fh:
        fh.write(json.dumps(report, indent=2).encode())
    warn_if_missed(result)
    return AQCRun(
        result=result, circuit=qc, report=report, qasm_path=out, report_path=report_path, stages=stages
    )
