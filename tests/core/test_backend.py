"""The array-library dispatch: numpy by default, torch and cupy when their arrays are given."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tnkit.core import backend


def test_numpy_is_the_default_namespace():
    a = np.ones((2, 3))
    assert backend.library_of(a) == "numpy" and backend.namespace(a) is np
    assert backend.library_of(3.0) == "numpy"
    assert backend.device_of(a) == "cpu" and not backend.is_meta(a)
    assert backend.to_numpy(a) is a
    assert backend.norm2(np.array([3.0, 4.0])) == 25.0
    assert backend.eye(2, like=a).dtype == np.float64
    assert backend.ones((2,), like=a.astype(np.complex64)).dtype == np.complex64
    assert backend.as_host_scalar(np.array([[2.5]])) == 2.5
    assert backend.as_host_scalar(np.array(1 + 2j)) == 1 + 2j


def test_dtype_spellings():
    assert backend.numpy_dtype("float32") == np.float32
    assert backend.numpy_dtype(np.complex128) == np.complex128
    assert backend.is_complex(np.dtype(np.complex64)) and not backend.is_complex(np.zeros(1))
    assert backend.eps(np.float32) == float(np.finfo(np.float32).eps)
    with pytest.raises(TypeError):
        backend.numpy_dtype("not-a-dtype")


def test_unknown_library_is_refused():
    with pytest.raises(ValueError, match="`library` must be one of"):
        backend.import_library("jax")


def test_core_runs_without_torch_and_names_the_extra():
    """With torch unimportable, the engine works and .to("torch") fails with one line naming the extra."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import tnkit\n"
        "psi = tnkit.MPS.random(6, 4, seed=0)\n"
        "psi.compress(max_bond=2); psi.sample(5, seed=1)\n"
        "try:\n"
        "    psi.to('torch')\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = _run(code)
    message = out.stdout.strip()
    assert "\n" not in message and "torch" in message and "tnkit[llm]" in message


def test_engine_import_does_not_import_torch():
    code = (
        "import sys, tnkit\n"
        "psi = tnkit.MPS.random(6, 4, seed=0); psi.compress(max_bond=2); psi.sample(5, seed=1)\n"
        "print('torch' in sys.modules)\n"
    )
    assert _run(code).stdout.strip() == "False"


def _run(code: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def test_torch_helpers():
    torch = pytest.importorskip("torch")
    t = torch.ones((2, 3), dtype=torch.complex64)
    assert backend.library_of(t) == "torch" and backend.namespace(t) is torch
    assert backend.numpy_dtype(t.dtype) == np.complex64
    assert backend.dtype_of("torch", "float32") is torch.float32
    assert backend.result_type(t, torch.ones(2, dtype=torch.float64)) == torch.complex128
    assert backend.like(np.arange(3.0), t).dtype == torch.float64  # data keeps its dtype
    assert backend.zeros((2, 2), like=t).dtype == torch.complex64
    assert backend.permute(torch.zeros(2, 3, 4), (2, 0, 1)).shape == (4, 2, 3)
    assert backend.flip(torch.arange(3)).tolist() == [2, 1, 0]
    assert backend.norm2(t) == pytest.approx(6.0)
    meta = torch.empty((4, 4), device="meta")
    assert backend.is_meta(meta) and backend.all_finite(meta) and backend.norm2(meta) == 1.0
    frozen = np.arange(4.0)
    frozen.flags.writeable = False
    moved = backend.convert(frozen, "torch", dtype="complex128")
    assert moved.dtype == torch.complex128 and backend.to_numpy(moved).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="device"):
        backend.convert(moved, "numpy", device="cuda")


def test_contract_promotes_and_moves_numpy_operands():
    torch = pytest.importorskip("torch")
    from tnkit import contract

    a = torch.ones((2, 3), dtype=torch.float32)
    g = np.full((3, 2), 1j)  # a numpy complex128 operator
    out = contract("ab,bc->ac", a, g)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.complex128
    np.testing.assert_allclose(backend.to_numpy(out), np.ones((2, 3)) @ g)


def test_torch_thread_pool_follows_the_blas_rule():
    torch = pytest.importorskip("torch")
    from tnkit.core.threads import blas_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with blas_threads(8):  # a small bond: one thread, torch's pool included
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
