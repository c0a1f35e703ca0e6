"""``tnkit aqc``: compile a time-evolved spin chain or a saved MPS into a QASM circuit.

Examples::

    tnkit aqc --model xxz --n-sites 20 --delta 0.5 --time 1 --ansatz trotter --depth 3 \\
        --out xxz.qasm --report xxz.json
    tnkit aqc --mps state.npz --ansatz ran --depth 4 --out state.qasm --coupling-map linear
    tnkit aqc --ground-state --model heisenberg --n-sites 20 --target-bond 32 --out gs.qasm
    tnkit aqc --model xxz --n-sites 20 --time 1 --evolve tdvp --dt 0.05 --out xxz.qasm

The command is a thin layer over :func:`tnkit.aqc.recipe.run_aqc`: it turns the
options into :class:`~tnkit.aqc.recipe.AQCSettings`, refuses bad options before any
work (usage and one line, exit status 2), runs the recipe and prints one line.
Exit status 3 means the files were written but the circuit misses
``--target-fidelity`` (``--allow-miss`` makes that 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import Any

from .._argtypes import finite_float, int_in, positive_float

__all__ = ["add_parser", "settings_from_args", "EXIT_TARGET_MISSED"]

#: Exit status when the circuit was written but misses ``--target-fidelity``.
EXIT_TARGET_MISSED = 3

def _fidelity(text: str) -> float:
    value = finite_float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text!r}")
    return value


def _basis(text: str) -> tuple[str, ...]:
    names = tuple(g.strip() for g in text.split(","))
    if not names or any(not g or not g.replace("_", "").isalnum() for g in names):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated gate names such as ecr,rz,sx,x, got {text!r}"
        )
    return names


def _coupling_map(text: str) -> str | tuple[tuple[int, int], ...]:
    """A name of :data:`~tnkit.aqc.recipe.COUPLING_MAPS`, a JSON file or list of pairs, or ``0-1,1-2,...``."""
    from .recipe import COUPLING_MAPS

    if text in COUPLING_MAPS:
        return text
    source = text
    if Path(text).is_file():
        try:
            source = Path(text).read_text()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text!r}: {exc.strerror}") from None
    elif not text.lstrip().startswith("["):
        try:
            return tuple(tuple(int(q) for q in pair.replace(":", "-").split("-")) for pair in text.split(","))  # type: ignore[misc]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be linear, ring, a JSON file of qubit pairs or pairs like 0-1,1-2,2-3, got {text!r}"
            ) from None
    try:
        pairs = json.loads(source)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON list of qubit pairs ({exc.msg})") from None
    if not isinstance(pairs, list) or not all(isinstance(p, list) for p in pairs):
        raise argparse.ArgumentTypeError(
            f"{text!r} must hold a JSON list of qubit pairs such as [[0, 1], [1, 2]]"
        )
    return tuple(tuple(p) for p in pairs)  # type: ignore[misc]


def add_parser(sub: Any) -> None:
    """Register the ``aqc`` subcommand."""
    p = sub.add_parser(
        "aqc",
        help="compile a target state into a short circuit (QASM + JSON report)",
        description="Approximate quantum compiling: optimise a parametrised circuit to prepare a target "
        "MPS (a time-evolved spin chain or a saved MPS) and write it as OpenQASM with a JSON report. "
        "Every option is checked before any work starts.",
        epilog=f"Exit status: 0 when the circuit reaches --target-fidelity, {EXIT_TARGET_MISSED} when it is "
        "written but misses it (0 with --allow-miss), 2 for a bad option, 1 for other errors. "
        "The report holds the settings, the fidelity from the objective and from an independent simulation "
        "of the written circuit, the requested depth and the circuit's depth, CNOT count and depth, "
        "gate counts, iterations and times.",
    )
    _add_target_options(p)
    _add_compile_options(p.add_argument_group("compilation"))
    _add_output_options(p.add_argument_group("output"))
    p.set_defaults(func=partial(_run, parser=p))


def _add_target_options(p: argparse.ArgumentParser) -> None:
    from .recipe import EVOLVE_METHODS, MAX_BOND, MAX_SITES, MODELS
    from .targets import MAX_TROTTER_STEPS

    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--model",
        choices=tuple(MODELS),
        default="xxz",
        help="spin chain to evolve from --initial for --time: xxz (XX + YY + delta ZZ), heisenberg "
        "(XX + YY + ZZ) or tfim (-j ZZ - h X) (default: xxz)",
    )
    src.add_argument(
        "--mps",
        default=None,
        metavar="FILE",
        help="a saved MPS (.npz from MPS.save) to compile instead of a model's evolution",
    )
    p.add_argument(
        "--ground-state",
        action="store_true",
        help="target the --model chain's ground state, found by DMRG (tnkit.dmrg) with bond cap "
        "--target-bond, instead of its time evolution; not with --mps, --time, --initial, "
        "--target-steps, --evolve or --dt; the ansatz defaults to hva (ran for tfim; trotter does "
        "not apply); the report holds the DMRG energy, variance and truncation error",
    )
    model = p.add_argument_group("model options (not with --mps)")
    model.add_argument(
        "--n-sites",
        type=int_in(2, MAX_SITES),
        default=None,
        metavar="N",
        help=f"number of spins, 2 to {MAX_SITES} (default: 10)",
    )
    model.add_argument(
        "--delta", type=finite_float, default=None, help="XXZ anisotropy, --model xxz only (default: 0.5)"
    )
    model.add_argument("--j", type=finite_float, default=None, help="coupling J (default: 1)")
    model.add_argument(
        "--h",
        type=finite_float,
        default=None,
        help="uniform field h: Z for xxz/heisenberg, X for tfim (default: 0)",
    )
    model.add_argument("--time", type=finite_float, default=None, help="evolution time t (default: 1)")
    model.add_argument(
        "--initial",
        default=None,
        help="initial state: neel (|0101...>), zeros or a bit string of N bits (default: neel)",
    )
    model.add_argument(
        "--target-steps",
        type=int_in(1, MAX_TROTTER_STEPS),
        default=None,
        metavar="STEPS",
        help=f"second-order Trotter steps simulating the target, 1 to {MAX_TROTTER_STEPS}, --evolve trotter "
        "only (default: 40)",
    )
    model.add_argument(
        "--evolve",
        choices=EVOLVE_METHODS,
        default=None,
        help="how the time-evolved target is simulated: trotter (--target-steps second-order Trotter "
        "steps of the circuit) or tdvp (two-site TDVP under the model's MPO from --initial, steps of at "
        "most --dt, bond cap --target-bond) (default: trotter)",
    )
    model.add_argument(
        "--dt",
        type=positive_float,
        default=None,
        help="largest TDVP time step, > 0, --evolve tdvp only (default: 0.025)",
    )
    model.add_argument(
        "--target-bond",
        type=int_in(1, MAX_BOND),
        default=None,
        metavar="BOND",
        help="bond cap of the DMRG ground state (--ground-state) or of the TDVP evolution "
        f"(--evolve tdvp), 1 to {MAX_BOND} (default: 64)",
    )


def _add_compile_options(comp: Any) -> None:
    from .recipe import ANSATZ_BUILDERS, GROW_CHOICES, MAX_BOND, MAX_DEPTH, MAX_ITER

    comp.add_argument(
        "--ansatz",
        choices=tuple(ANSATZ_BUILDERS),
        default=None,
        help="trotter: the Trotter circuit's structure with its angles (needs --model); brickwall / "
        "staircase: brick or staircase layers of general two-qubit blocks from small random angles; "
        "ran: staircase layers from Ran's analytic decomposition of the target; hva: singlets on "
        "the even bonds, then --depth odd/even layers of XX+YY+ZZ rotations with angles tied per "
        "layer and optimised, a Heisenberg/XXZ ground state's start (default: trotter with --model, "
        "hva with --ground-state of xxz or heisenberg, ran otherwise)",
    )
    comp.add_argument(
        "--depth",
        type=int_in(0, MAX_DEPTH),
        default=None,
        help=f"Trotter steps (trotter), odd/even layer pairs (hva) or layers (the other ansätze), 0 to "
        f"{MAX_DEPTH}; 0 only with "
        "--grow, which then starts from no circuit (default: 3; hva of a --ground-state: N // 3; "
        "0 with --mps and the ran ansatz, grown by --grow ran)",
    )
    comp.add_argument(
        "--max-bond",
        type=int_in(1, MAX_BOND),
        default=None,
        help="bond cap of the MPS simulations in the objective (default: 64; 32 with --ground-state)",
    )
    comp.add_argument(
        "--max-iter",
        type=int_in(0, MAX_ITER),
        default=200,
        help="L-BFGS-B iterations, per stage with --grow (default: 200)",
    )
    comp.add_argument(
        "--target-fidelity",
        type=_fidelity,
        default=None,
        help="stop at this fidelity, in (0, 1]; missing it is a warning and exit status "
        f"{EXIT_TARGET_MISSED} (default: 0.999; 0.995 with --ground-state)",
    )
    comp.add_argument(
        "--allow-miss",
        action="store_true",
        help="exit 0 even when --target-fidelity is missed (the warning is still printed)",
    )
    comp.add_argument(
        "--method",
        choices=("lbfgs", "sweep", "sweep+lbfgs"),
        default="lbfgs",
        help="optimiser: L-BFGS-B on the angles, polar-decomposition sweeps, or sweeps then "
        "L-BFGS-B (default: lbfgs)",
    )
    comp.add_argument(
        "--cnot-budget",
        type=int_in(0, 10**9),
        default=None,
        metavar="CNOTS",
        help="most CNOTs: the trotter ansatz adds central blocks up to it (its one-CNOT "
        "state-preparation blocks leave room); with --grow, growth stops there (default: none)",
    )
    comp.add_argument(
        "--grow",
        choices=GROW_CHOICES,
        default=None,
        help="grow the ansatz layer by layer until --target-fidelity or --cnot-budget: brickwall "
        "(identity brick layers), ran (Ran's analytic staircase layers, first in time) or "
        "ran-brickwall (one centred Ran layer, then brick layers); with --depth 0 start from no "
        "circuit (default: ran from no circuit for --mps with the ran ansatz when --depth is not "
        "given, none otherwise)",
    )
    comp.add_argument(
        "--max-layers",
        type=int_in(0, MAX_DEPTH),
        default=8,
        help="with --grow: most layers added (default: 8)",
    )
    comp.add_argument(
        "--seed",
        type=int_in(0, 2**63 - 1),
        default=0,
        help="seed of the small random start of the brickwall and staircase ansätze (default: 0)",
    )


def _add_output_options(out: Any) -> None:
    out.add_argument(
        "--basis",
        type=_basis,
        default=None,
        help="comma-separated Qiskit gate names to transpile the circuit to, e.g. ecr,rz,sx,x "
        "(default: cx, rz, rx, ry as compiled)",
    )
    out.add_argument(
        "--coupling-map",
        type=_coupling_map,
        default=None,
        metavar="MAP",
        help="device connectivity: linear, ring, undirected pairs like 0-1,1-2,2-3 or a JSON "
        "list/file of pairs; the brickwall ansatz is built on it, the other ansätze need the line "
        "0-1-...-(N-1) in it, and the circuit is transpiled to it with qubit q on physical qubit q "
        "(default: none)",
    )
    out.add_argument(
        "--qasm-version", type=int, choices=(2, 3), default=2, help="OpenQASM version (default: 2)"
    )
    out.add_argument(
        "--out",
        required=True,
        metavar="FILE.qasm",
        help="QASM file to write (its directory must exist and be writable)",
    )
    out.add_argument(
        "--report",
        default=None,
        metavar="FILE.json",
        help="JSON report to write; must differ from --out (default: OUT with .json)",
    )
    out.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def settings_from_args(args: argparse.Namespace) -> Any:
    """:class:`~tnkit.aqc.recipe.AQCSettings` from parsed options (``ValueError`` for a bad combination).

    Each flag sets the field of its name; a flag left unset (``None``) takes the
    field's default (for ``--ground-state``, :func:`~tnkit.aqc.recipe.ground_state_defaults`
    first; for ``--mps``, :func:`~tnkit.aqc.recipe.mps_defaults`), and
    :func:`~tnkit.aqc.recipe.check_given_options` refuses a flag that the chosen target
    would ignore.
    """
    from .recipe import AQCSettings, check_given_options, ground_state_defaults, mps_defaults

    defaults = {f.name: f.default for f in dataclasses.fields(AQCSettings)}
    options = {name: getattr(args, name) for name in defaults if hasattr(args, name)}  # flag = field
    options["progress"] = not args.no_progress
    given = {k for k, v in options.items() if v is not None and v is not False}
    if options["ansatz"] is None:
        options["ansatz"] = _default_ansatz(args)
    if args.ground_state:
        n_sites = defaults["n_sites"] if args.n_sites is None else args.n_sites
        defaults.update(ground_state_defaults(n_sites, options["ansatz"]))
    elif args.mps is not None:
        defaults.update(mps_defaults(options["ansatz"], given))
    options.update({k: defaults[k] for k, v in options.items() if v is None})
    check_given_options(options, given)
    return AQCSettings(**options)


def _default_ansatz(args: Any) -> str:
    """trotter for a time evolution, hva for a Heisenberg/XXZ ground state, ran otherwise."""
    if args.ground_state:
        return "ran" if args.model == "tfim" else "hva"
    return "ran" if args.mps is not None else "trotter"


def _option_error(parser: argparse.ArgumentParser, exc: Exception) -> None:
    """``parser.error`` with the message of ``exc``, options named as on the command line."""
    import re

    message = re.sub(r"`([a-z_]+)`", lambda m: "--" + m.group(1).replace("_", "-"), str(exc))
    parser.error(" ".join(message.split()))


def _run(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    from ..errors import ConvergenceWarning
    from .recipe import check_settings, run_aqc

    try:
        settings = settings_from_args(args)
        check_settings(settings)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        _option_error(parser, exc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported below, in one line
        run = run_aqc(settings)
    report = run.report
    fidelity, check = report["fidelity"], report["circuit_fidelity"]
    print(
        f"tnkit aqc: fidelity {fidelity:.6f} (circuit re-simulated: {check:.6f}), "
        f"{report['cnots']} CNOTs, CNOT depth {report['cnot_depth']}, {report['total_seconds']:.1f} s "
        f"-> {run.qasm_path}, {run.report_path}"
    )
    if run.target_reached:
        return 0
    status = "" if args.allow_miss else f" (exit status {EXIT_TARGET_MISSED}; --allow-miss exits 0)"
    print(
        f"tnkit aqc: warning: fidelity {fidelity:.6f} misses --target-fidelity {settings.target_fidelity:g} "
        f"({report['message']}); try a larger --depth, --grow brickwall, more --max-iter or --method "
        f"sweep+lbfgs{status}",
        file=sys.stderr,
    )
    return 0 if args.allow_miss else EXIT_TARGET_MISSED
