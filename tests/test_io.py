"""Saving and loading MPS/MPO files: round trips, atomic writes, schema errors, no pickle."""

from __future__ import annotations

import gc
import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import DTYPES

from tnkit import MPO, MPS
from tnkit.errors import SchemaError
from tnkit.io import SCHEMA_VERSION, load_arrays, load_mpo, load_mps, save_arrays, save_mpo, save_mps


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2718)


def random_mpo(rng, dims, bond, dtype=np.float64) -> MPO:
    n = len(dims)
    bonds = [1] + [bond] * (n - 1) + [1]
    tensors = []
    for i, d in enumerate(dims):
        t = rng.standard_normal((bonds[i], d, d, bonds[i + 1]))
        if np.dtype(dtype).kind == "c":
            t = t + 1j * rng.standard_normal(t.shape)
        tensors.append(t.astype(dtype))
    return MPO(tensors)


def assert_same_tensors(a, b):
    assert len(a.tensors) == len(b.tensors)
    for x, y in zip(a.tensors, b.tensors, strict=True):
        assert x.dtype == y.dtype
        assert x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def write_npz(path, **arrays):
    """A raw .npz written with numpy (not through tnkit)."""
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def tnkit_header(kind="MatrixProductState", schema=SCHEMA_VERSION, n_sites=1):
    return {
        "__tnkit_kind__": np.array(kind),
        "__tnkit_schema__": np.array(schema),
        "__tnkit_version__": np.array("0.0.0"),
        "n_sites": np.array(n_sites),
    }


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", DTYPES + [np.float32, np.complex64])
@pytest.mark.parametrize("n_sites", [1, 2, 7])
def test_mps_round_trip_exact(tmp_path, rng, dtype, n_sites):
    psi = MPS.random(n_sites, 5, phys_dim=[2, 3, 2, 4, 2, 2, 3][:n_sites], dtype=dtype, seed=rng)
    path = tmp_path / "state.npz"
    psi.save(path)
    back = MPS.load(path)
    assert isinstance(back, MPS)
    assert_same_tensors(back, psi)
    np.testing.assert_array_equal(back.to_dense(), psi.to_dense())
    assert_same_tensors(load_mps(path), psi)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_sites", [1, 4])
def test_mpo_round_trip_exact(tmp_path, rng, dtype, n_sites):
    w = random_mpo(rng, [2, 3, 2, 2][:n_sites], 3, dtype)
    path = tmp_path / "op.npz"
    w.save(path)
    back = MPO.load(path)
    assert isinstance(back, MPO)
    assert_same_tensors(back, w)
    assert_same_tensors(load_mpo(path), w)


def test_rectangular_mpo_round_trip(tmp_path, rng):
    a = rng.standard_normal((12, 8)) + 1j * rng.standard_normal((12, 8))
    w = MPO.from_dense(a, out_dims=(3, 2, 2), in_dims=(2, 2, 2))
    save_mpo(w, tmp_path / "rect")
    back = load_mpo(tmp_path / "rect.npz")
    assert back.out_dims == (3, 2, 2) and back.in_dims == (2, 2, 2)
    assert_same_tensors(back, w)


def test_loaded_arrays_are_read_only_and_state_valid(tmp_path, rng):
    psi = MPS.random(4, 3, seed=rng)
    psi.save(tmp_path / "s.npz")
    back = MPS.load(tmp_path / "s.npz")
    with pytest.raises(ValueError, match="read-only"):
        back.tensors[0][0, 0, 0] = 1.0
    assert back.norm() == pytest.approx(1.0, abs=1e-12)


def test_str_and_pathlike_paths(tmp_path, rng):
    psi = MPS.random(3, 2, seed=rng)
    save_mps(psi, str(tmp_path / "a.npz"))
    assert_same_tensors(load_mps(str(tmp_path / "a.npz")), psi)
    save_mps(psi, tmp_path / "b.npz")
    assert_same_tensors(load_mps(tmp_path / "b.npz"), psi)


def test_suffix_added(tmp_path, rng):
    psi = MPS.random(3, 2, seed=rng)
    written = save_mps(psi, tmp_path / "noext")
    assert written == tmp_path / "noext.npz"
    assert written.exists() and not (tmp_path / "noext").exists()
    psi.save(tmp_path / "other.dat")
    assert (tmp_path / "other.dat.npz").exists()
    assert_same_tensors(MPS.load(tmp_path / "other.dat.npz"), psi)
    assert save_mps(psi, tmp_path / "kept.npz") == tmp_path / "kept.npz"


def test_save_creates_directory(tmp_path, rng):
    psi = MPS.random(3, 2, seed=rng)
    target = tmp_path / "deep" / "er" / "psi.npz"
    psi.save(target)
    assert_same_tensors(MPS.load(target), psi)


def test_overwrite_replaces(tmp_path, rng):
    path = tmp_path / "x.npz"
    a, b = MPS.random(3, 2, seed=rng), MPS.random(5, 3, seed=rng)
    a.save(path)
    b.save(path)
    assert_same_tensors(MPS.load(path), b)
    assert sorted(os.listdir(tmp_path)) == ["x.npz"]


def test_file_layout(tmp_path, rng):
    psi = MPS.random(3, 2, seed=rng)
    psi.save(tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz", allow_pickle=False) as data:
        assert str(data["__tnkit_kind__"]) == "MatrixProductState"
        assert int(data["__tnkit_schema__"]) == SCHEMA_VERSION
        assert int(data["n_sites"]) == 3
        assert {"t0000", "t0001", "t0002"} <= set(data.files)
        for k in data.files:
            assert data[k].dtype != object


def test_meta_round_trip_and_object_meta_rejected(tmp_path, rng):
    tensors = [rng.standard_normal((1, 2, 1))]
    save_arrays(tmp_path / "m", "Thing", tensors, meta={"note": "hello", "values": np.arange(3)})
    loaded, meta = load_arrays(tmp_path / "m.npz", "Thing")
    np.testing.assert_array_equal(loaded[0], tensors[0])
    assert str(meta["note"]) == "hello"
    np.testing.assert_array_equal(meta["values"], np.arange(3))
    with pytest.raises(TypeError, match="object"):
        save_arrays(tmp_path / "bad", "Thing", tensors, meta={"obj": {"a": 1}})
    assert not (tmp_path / "bad.npz").exists()


# ----------------------------------------------------------------------------- atomic write


def test_atomic_write_keeps_old_file_on_failure(tmp_path, rng, monkeypatch):
    path = tmp_path / "psi.npz"
    old = MPS.random(4, 3, seed=rng)
    old.save(path)
    old_bytes = path.read_bytes()

    real_savez = np.savez

    def failing_savez(file, *args, **kwds):
        file.write(b"PK\x03\x04 half a zip file")  # some bytes reach the temporary file
        file.flush()
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        MPS.random(6, 4, seed=rng).save(path)
    monkeypatch.setattr(np, "savez", real_savez)

    assert path.read_bytes() == old_bytes
    assert_same_tensors(MPS.load(path), old)
    assert sorted(os.listdir(tmp_path)) == ["psi.npz"]  # no temporary file left


def test_atomic_write_interrupt_new_target(tmp_path, rng, monkeypatch):
    def interrupted(file, *args, **kwds):
        file.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_mpo(random_mpo(rng, [2, 2], 2), tmp_path / "w.npz")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_file_mode_follows_umask(tmp_path, rng):
    old_umask = os.umask(0o022)
    try:
        MPS.random(3, 2, seed=rng).save(tmp_path / "psi.npz")
        np.save(tmp_path / "ref.npy", np.zeros(2))
    finally:
        os.umask(old_umask)
    mode = stat.S_IMODE(os.stat(tmp_path / "psi.npz").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "ref.npy").st_mode) == 0o644


# ----------------------------------------------------------------------------- schema errors


def test_wrong_kind(tmp_path, rng):
    MPS.random(3, 2, seed=rng).save(tmp_path / "psi.npz")
    random_mpo(rng, [2, 2], 2).save(tmp_path / "w.npz")
    with pytest.raises(SchemaError, match="holds a MatrixProductState, expected a MatrixProductOperator"):
        MPO.load(tmp_path / "psi.npz")
    with pytest.raises(SchemaError, match="holds a MatrixProductOperator, expected a MatrixProductState"):
        MPS.load(tmp_path / "w.npz")


def test_non_tnkit_npz(tmp_path):
    write_npz(tmp_path / "plain.npz", a=np.arange(3), b=np.eye(2))
    with pytest.raises(SchemaError, match="not a tnkit file"):
        MPS.load(tmp_path / "plain.npz")


def load_error(path, *, collect=False):
    """The exception ``MPS.load(path)`` raises, and the ResourceWarnings of handles it leaked.

    The chained tracebacks (which hold np.load's frame, and so any file it left open)
    are dropped so that a leaked handle is finalised inside the recording block;
    ``collect=True`` also runs the garbage collector (slow) to catch handles in cycles.
    """
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            MPS.load(path)
        except Exception as exc:  # noqa: BLE001 - the test inspects the type
            error = exc
            cause = exc
            while cause is not None:
                cause.__traceback__ = None
                cause = cause.__cause__ or cause.__context__
        else:
            error = None
        if collect:
            gc.collect()
        # keep only the messages: a WarningMessage holds its source (the leaked file) alive
        leaks = [str(w.message) for w in record if issubclass(w.category, ResourceWarning)]
        record.clear()
    return error, leaks


def test_plain_npy_file(tmp_path):
    np.save(tmp_path / "array.npy", np.arange(4))
    with pytest.raises(SchemaError, match="not a tnkit file|corrupt"):
        MPS.load(tmp_path / "array.npy")


CORRUPT = {
    "empty": b"",
    "text": b"this is not a zip file at all",
    "bad-zip-header": b"PK\x03\x04garbage",
    "bad-npy-header": b"\x93NUMPY garbage",
}


@pytest.mark.parametrize("content", list(CORRUPT.values()), ids=list(CORRUPT))
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    error, _ = load_error(path)
    assert isinstance(error, SchemaError)
    assert "corrupt" in str(error) or "not a tnkit" in str(error)
    assert "bad.npz" in str(error)


def test_truncated_file(tmp_path, rng):
    MPS.random(6, 4, seed=rng).save(tmp_path / "full.npz")
    data = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    error, _ = load_error(tmp_path / "cut.npz")
    assert isinstance(error, SchemaError)
    assert "corrupt" in str(error)


def test_corrupt_zip_does_not_leak_file_handle(tmp_path):
    (tmp_path / "bad.npz").write_bytes(CORRUPT["bad-zip-header"])
    error, leaks = load_error(tmp_path / "bad.npz", collect=True)
    assert isinstance(error, SchemaError)
    assert leaks == []


def test_newer_schema_version(tmp_path, rng):
    header = tnkit_header(schema=SCHEMA_VERSION + 1)
    write_npz(tmp_path / "future.npz", **header, t0000=rng.standard_normal((1, 2, 1)))
    with pytest.raises(SchemaError, match=f"schema version {SCHEMA_VERSION + 1}.*Upgrade tnkit"):
        MPS.load(tmp_path / "future.npz")


def test_older_or_equal_schema_loads(tmp_path, rng):
    t = rng.standard_normal((1, 2, 1))
    write_npz(tmp_path / "ok.npz", **tnkit_header(), t0000=t)
    np.testing.assert_array_equal(MPS.load(tmp_path / "ok.npz").tensors[0], t)


def test_missing_site_tensor(tmp_path, rng):
    write_npz(tmp_path / "missing.npz", **tnkit_header(n_sites=2), t0000=rng.standard_normal((1, 2, 1)))
    with pytest.raises(SchemaError, match="missing site tensors"):
        MPS.load(tmp_path / "missing.npz")


def test_missing_n_sites_is_schema_error(tmp_path, rng):
    header = tnkit_header()
    del header["n_sites"]
    write_npz(tmp_path / "no_n.npz", **header, t0000=rng.standard_normal((1, 2, 1)))
    with pytest.raises(SchemaError):
        MPS.load(tmp_path / "no_n.npz")


def test_invalid_tensors_in_file_are_rejected(tmp_path):
    bad = np.ones((1, 2, 1))
    bad[0, 0, 0] = np.nan
    write_npz(tmp_path / "nan.npz", **tnkit_header(), t0000=bad)
    with pytest.raises(ValueError, match="NaN"):
        MPS.load(tmp_path / "nan.npz")
    write_npz(
        tmp_path / "chain.npz", **tnkit_header(n_sites=2), t0000=np.ones((1, 2, 3)), t0001=np.ones((2, 2, 1))
    )
    with pytest.raises(ValueError, match="bond"):
        MPS.load(tmp_path / "chain.npz")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        MPS.load(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match="nope"):
        load_mpo(tmp_path / "nope")


def test_load_accepts_the_path_given_to_save(tmp_path, rng):
    psi = MPS.random(3, 2, seed=rng)
    psi.save(tmp_path / "state")
    assert_same_tensors(MPS.load(tmp_path / "state"), psi)


def test_bad_path_type(rng):
    psi = MPS.random(2, 2, seed=rng)
    with pytest.raises(TypeError, match="path"):
        save_mps(psi, 123)
    with pytest.raises(TypeError, match="path"):
        load_mps(None)


def test_schema_error_is_value_error():
    assert issubclass(SchemaError, ValueError)


# ----------------------------------------------------------------------------- no pickle


_UNPICKLED = []


def _record_unpickling():
    _UNPICKLED.append(True)
    return "pwned"


class _Payload:
    def __reduce__(self):
        return (_record_unpickling, ())


def test_object_array_is_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    obj = np.empty(1, dtype=object)
    obj[0] = _Payload()
    write_npz(path, **tnkit_header(), t0000=obj)  # np.savez pickles object arrays
    with zipfile.ZipFile(path) as zf:
        assert "t0000.npy" in zf.namelist()
    _UNPICKLED.clear()
    with pytest.raises(SchemaError, match="corrupt|pickle"):
        MPS.load(path)
    assert _UNPICKLED == []


def test_pickled_kind_entry_is_never_unpickled(tmp_path):
    path = tmp_path / "evil_kind.npz"
    obj = np.empty((), dtype=object)
    obj[()] = _Payload()
    write_npz(path, __tnkit_kind__=obj, __tnkit_schema__=np.array(1), n_sites=np.array(0))
    _UNPICKLED.clear()
    with pytest.raises(SchemaError):
        MPS.load(path)
    assert _UNPICKLED == []


def test_raw_pickle_file_is_never_unpickled(tmp_path):
    import pickle

    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps(_Payload()))
    _UNPICKLED.clear()
    with pytest.raises(SchemaError):
        MPS.load(path)
    assert _UNPICKLED == []


def test_paths_returned_are_paths(tmp_path, rng):
    assert isinstance(save_mps(MPS.random(2, 2, seed=rng), tmp_path / "p"), Path)


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    from tnkit.io import atomic_write

    target = tmp_path / "sub" / "model.bin"
    with atomic_write(target) as fh:
        fh.write(b"first")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as fh:
            fh.write(b"half-written")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["model.bin"]


# ----------------------------------------------------------------------------- schema and size checks


@pytest.mark.parametrize("schema", [0, -7, 1.9, "1", True], ids=repr)
def test_invalid_schema_versions_are_refused(tmp_path, rng, schema):
    header = tnkit_header()
    header["__tnkit_schema__"] = np.array(schema)
    write_npz(tmp_path / "s.npz", **header, t0000=rng.standard_normal((1, 2, 1)))
    with pytest.raises(SchemaError, match="schema"):
        MPS.load(tmp_path / "s.npz")


def test_non_scalar_header_entries_are_refused(tmp_path, rng):
    header = tnkit_header()
    header["n_sites"] = np.array([1, 2])
    write_npz(tmp_path / "n.npz", **header, t0000=rng.standard_normal((1, 2, 1)))
    with pytest.raises(SchemaError, match="'n_sites' must be a scalar"):
        MPS.load(tmp_path / "n.npz")


def test_decompression_bomb_is_refused_before_reading(tmp_path):
    path = tmp_path / "bomb.npz"
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **tnkit_header(), t0000=np.zeros((1, 2**20, 1)))
    assert path.stat().st_size < 50_000  # 8 MiB of zeros in a few KiB
    with pytest.raises(SchemaError, match=r"would expand .* \(more than 100x\)"):
        MPS.load(path)


def test_total_size_from_headers_is_capped(tmp_path, rng):
    psi = MPS.random(6, 8, seed=rng)
    psi.save(tmp_path / "psi.npz")
    with pytest.raises(ValueError, match="more than `max_bytes`"):
        load_arrays(tmp_path / "psi.npz", "MatrixProductState", max_bytes=1000)
    tensors, _ = load_arrays(tmp_path / "psi.npz", "MatrixProductState", max_bytes=10_000)
    assert len(tensors) == 6


def test_header_claiming_more_data_than_stored_is_corrupt(tmp_path):
    path = tmp_path / "liar.npz"
    write_npz(path, **tnkit_header(), t0000=np.ones((1, 2, 1)))
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["t0000.npy"] = members["t0000.npy"].replace(b"(1, 2, 1)", b"(1, 9, 1)")
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(SchemaError, match="shorter than its header says"):
        MPS.load(path)


def test_corrupt_file_message_has_no_numpy_pickle_advice(tmp_path):
    for i, content in enumerate(CORRUPT.values()):
        path = tmp_path / f"bad{i}.npz"
        path.write_bytes(content)
        error, _ = load_error(path)
        assert isinstance(error, SchemaError)
        assert "allow_pickle" not in str(error)
        assert "\n" not in str(error)


def test_save_refuses_object_arrays(tmp_path):
    obj = np.empty((1, 2, 1), dtype=object)
    with pytest.raises(TypeError, match=r"`tensors\[0\]` must hold numbers"):
        save_arrays(tmp_path / "o", "Thing", [obj])
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- temporary files


def test_errors_name_the_users_path_not_the_temporary_file(tmp_path, rng):
    target = tmp_path / "psi.npz"
    target.mkdir()  # a directory where the file should go: the rename fails
    with pytest.raises(OSError) as info:
        MPS.random(3, 2, seed=rng).save(target)
    assert "psi.npz" in str(info.value)
    assert ".tmp" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["psi.npz"]


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(child.stdout)


@pytest.mark.skipif(os.name != "posix", reason="process ids are checked on POSIX")
def test_killed_writer_leaves_a_temporary_that_the_next_save_removes(tmp_path, rng):
    import subprocess
    import sys

    target = tmp_path / "psi.npz"
    code = (
        "import os, sys\n"
        "from tnkit.io import atomic_write\n"
        "with atomic_write(sys.argv[1]) as fh:\n"
        "    fh.write(b'half')\n"
        "    fh.flush()\n"
        "    os._exit(9)  # killed mid-write: no cleanup runs\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", code, str(target)], env=env, check=False)
    assert done.returncode == 9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".psi.npz.tnkit-") and left[0].endswith(".tmp")
    MPS.random(3, 2, seed=rng).save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["psi.npz"]


@pytest.mark.skipif(os.name != "posix", reason="process ids are checked on POSIX")
def test_only_stale_temporaries_are_removed(tmp_path, rng):
    from tnkit.io import remove_stale_temporaries

    target = tmp_path / "psi.npz"
    dead = tmp_path / f".psi.npz.tnkit-{_dead_pid()}-0123abcd.tmp"
    mine = tmp_path / f".psi.npz.tnkit-{os.getpid()}-0123abcd.tmp"
    old_style_old = tmp_path / ".psi.npz.k2j4h5g6.tmp"
    old_style_new = tmp_path / ".psi.npz.a1b2c3d4.tmp"
    other_target = tmp_path / f".other.npz.tnkit-{_dead_pid()}-0123abcd.tmp"
    for p in (dead, mine, old_style_old, old_style_new, other_target):
        p.write_bytes(b"partial")
    two_hours_ago = os.path.getmtime(old_style_old) - 7200
    os.utime(old_style_old, (two_hours_ago, two_hours_ago))
    removed = remove_stale_temporaries(target)
    assert sorted(p.name for p in removed) == sorted([dead.name, old_style_old.name])
    assert mine.exists() and old_style_new.exists() and other_target.exists()


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_link_to_a_device_is_refused_without_reading(tmp_path):
    (tmp_path / "zero.npz").symlink_to("/dev/zero")
    with pytest.raises(SchemaError, match="not a regular file"):
        MPS.load(tmp_path / "zero.npz")


def test_load_methods_take_max_bytes(tmp_path, rng):
    MPS.random(6, 8, seed=rng).save(tmp_path / "psi.npz")
    random_mpo(rng, [2, 2, 2], 3).save(tmp_path / "w.npz")
    with pytest.raises(ValueError, match="max_bytes"):
        MPS.load(tmp_path / "psi.npz", max_bytes=100)
    with pytest.raises(ValueError, match="max_bytes"):
        MPO.load(tmp_path / "w.npz", max_bytes=100)
    assert MPS.load(tmp_path / "psi.npz", max_bytes=10**6).n_sites == 6


def test_io_loaders_are_registered_by_the_classes_that_own_the_format(tmp_path):
    """io imports no class: MPS and MPO register their loaders; an unknown kind names the known ones."""
    import tnkit.io as tio

    assert tio._LOADERS["MatrixProductState"] == MPS.load
    psi = MPS.random(4, 3, seed=0)
    assert_same_tensors(tio.load_mps(tio.save_mps(psi, tmp_path / "p")), psi)
    with pytest.raises(SchemaError, match="MatrixProductOperator"):
        tio._loader("NoSuchKind")
    with pytest.raises(TypeError, match="callable"):
        tio.register_loader("X", 3)


def test_read_safetensors_header_matches_the_writer_and_refuses_corrupt_files(tmp_path):
    from tnkit.io import read_safetensors_header

    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "w.safetensors"
    arrays = {"a": np.zeros((2, 3), np.float32), "b": np.ones(4, np.float16)}
    safetensors_numpy.save_file(arrays, path, metadata={"format": "np"})
    table, data_start, size = read_safetensors_header(path)
    assert sorted(table) == ["a", "b"] and size == path.stat().st_size
    assert table["a"]["shape"] == [2, 3] and table["b"]["dtype"] == "F16"
    assert size - data_start == 2 * 3 * 4 + 4 * 2
    raw = path.read_bytes()
    for bad, match in [(raw[:5], "too short"), (raw[:8] + b"{", "header of"),
                       (struct.pack("<Q", 4) + b"[1] ", "not a table"), (struct.pack("<Q", 2) + b"{x", "unreadable")]:
        path.write_bytes(bad)
        with pytest.raises(SchemaError, match=match):
            read_safetensors_header(path)
    path.write_bytes(raw)
    with pytest.raises(SchemaError, match="header of"):
        read_safetensors_header(path, max_header_bytes=8)
