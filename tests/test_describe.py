"""``tnkit inspect``: every kind of file tnkit writes is described; anything else is refused in one line."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tnkit import MPO, MPS
from tnkit.cli import main
from tnkit.io import KINDS
from tnkit.ttn import TTN, Tree

ROOT = Path(__file__).resolve().parents[1]


def inspect(path, capsys) -> tuple[int, str, str]:
    status = main(["inspect", str(path)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_refused(path, capsys, match: str) -> str:
    status, out, err = inspect(path, capsys)
    assert status == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tnkit inspect: error: ")
    assert match in lines[0]
    assert "allow_pickle" not in err and "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------- the kinds tnkit writes


def test_state_operator_and_tree_files_are_described(tmp_path, capsys):
    MPS.random(8, 4, seed=0).save(tmp_path / "psi.npz")
    MPO.identity(4).save(tmp_path / "w.npz")
    TTN.random(Tree.balanced(8), 2, 4, seed=0).save(tmp_path / "tree.npz")
    expected = {
        "psi.npz": ["MatrixProductState (schema 1", "bond dims : [2, 4, 4, 4, 4, 4, 2]", "norm      : 1", "(nats)"],
        "w.npz": ["MatrixProductOperator (schema 1", "shape     : (16, 16)"],
        "tree.npz": ["TreeTensorNetwork (schema 1", "over 14 edges (nats)", "parameters: 208"],
    }
    for name, parts in expected.items():
        status, out, _ = inspect(tmp_path / name, capsys)
        assert status == 0
        for part in parts:
            assert part in out, (name, part, out)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> Path:
    pytest.importorskip("sklearn")
    from tnkit.ml import MPSBornMachine, MPSClassifier, TTNBornMachine, TTNClassifier

    out = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    X = rng.random((40, 8))
    y = np.where(X[:, 0] > 0.5, "high", "low")
    MPSClassifier(max_bond=4, n_epochs=1, random_state=0).fit(X, y).save(out / "clf.npz")
    TTNClassifier(max_bond=4, n_epochs=1, random_state=0).fit(X, y).save(out / "tclf.npz")
    bits = (X > 0.5).astype(int)
    MPSBornMachine(max_bond=4, n_epochs=1, random_state=0).fit(bits).save(out / "bm.npz")
    TTNBornMachine(max_bond=4, n_epochs=1, random_state=0).fit(bits).save(out / "tbm.npz")
    return out


@pytest.mark.parametrize(
    "name, kind, parts",
    [
        ("clf.npz", "MPSClassifier", ["classes   : 2 (high, low)", "features  : 8", "max_bond=4", "site tensors"]),
        ("tclf.npz", "TTNClassifier", ["classes   : 2 (high, low)", "tree over 8 leaves", "recorded steps"]),
        ("bm.npz", "MPSBornMachine", ["features  : 8, categories 2 per feature", "NLL", "site tensors"]),
        ("tbm.npz", "TTNBornMachine", ["tree over 8 leaves", "NLL", "(nats per sample)"]),
    ],
)
def test_model_files_are_described(model_files, capsys, name, kind, parts):
    status, out, _ = inspect(model_files / name, capsys)
    assert status == 0
    assert out.startswith(f"{model_files / name}: {kind} (schema 1")
    for part in parts:
        assert part in out, (part, out)


def test_every_kind_has_a_describer():
    from tnkit.describe import DESCRIBERS

    assert set(DESCRIBERS) == set(KINDS)


def test_model_file_with_broken_metadata_is_refused(model_files, tmp_path, capsys):
    with np.load(model_files / "clf.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["meta__params"] = np.array("{not json")
    with open(tmp_path / "broken.npz", "wb") as fh:
        np.savez(fh, **arrays)
    assert_refused(tmp_path / "broken.npz", capsys, "is not a valid MPSClassifier file")


# ----------------------------------------------------------------------------- compressed-model directories


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    """A safetensors file (8-byte header length, JSON header, zero data) without torch."""
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = int(np.prod(shape)) * {"F32": 4, "F16": 2}[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


def compressed_model_dir(root: Path) -> Path:
    d = root / "model"
    d.mkdir()
    layers = {
        "model.layers.0.mlp.up_proj": {"type": "mpo", "bond_dims": [16, 24], "out_dims": [4, 8], "in_dims": [8, 4]},
        "model.layers.0.mlp.down_proj": {"type": "lowrank", "rank": 8},
    }
    (d / "tnkit_layers.json").write_text(json.dumps({"schema": 1, "kind": "tnkit-compressed-lm", "layers": layers}))
    (d / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 1, "hidden_size": 32}))
    write_safetensors(d / "model.safetensors", {"a": ("F32", [2, 3]), "b": ("F16", [4])})
    return d


def test_compressed_model_directory_is_described(tmp_path, capsys):
    d = compressed_model_dir(tmp_path)
    status, out, _ = inspect(d, capsys)
    assert status == 0
    for part in [
        "compressed language model (layer table schema 1)",
        "LlamaForCausalLM (num_hidden_layers=1, hidden_size=32)",
        "2 compressed (1 lowrank, 1 mpo)",
        "largest 24",
        "2 tensors, 10 parameters (F16, F32)",
    ]:
        assert part in out, (part, out)


def test_broken_compressed_model_directories_are_refused(tmp_path, capsys):
    d = compressed_model_dir(tmp_path)
    (d / "model.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"{}")
    assert_refused(d, capsys, "is not a safetensors file")
    (d / "model.safetensors").unlink()
    assert_refused(d, capsys, "has no model.safetensors")
    (d / "tnkit_layers.json").write_text("{broken")
    assert_refused(d, capsys, "is not valid JSON")
    (d / "tnkit_layers.json").write_text(json.dumps({"schema": 1, "kind": "something-else", "layers": {}}))
    assert_refused(d, capsys, "is not a tnkit layer table")
    (d / "tnkit_layers.json").unlink()
    assert_refused(d, capsys, "without tnkit_layers.json")


def test_inspect_file_names_match_the_compressed_model_writer():
    serialize = pytest.importorskip("tnkit.compress.storage.serialize", exc_type=ImportError)
    from tnkit import describe as tnkit_inspect

    assert (tnkit_inspect._LM_LAYERS, tnkit_inspect._LM_WEIGHTS, tnkit_inspect._LM_KIND) == (
        serialize.LAYERS_FILE,
        serialize.WEIGHTS_FILE,
        serialize._KIND,
    )


# ----------------------------------------------------------------------------- foreign and corrupt files


FOREIGN = {
    "text.npz": (b"hello, not a tensor network", "not an .npz (zip) archive"),
    "image.png": (b"\x89PNG\r\n\x1a\n" + bytes(64), "not an .npz (zip) archive"),
    "torn.npz": (b"PK\x03\x04garbage", "is corrupt"),
    "pickle.npz": (pickle.dumps({"a": 1}), "not an .npz (zip) archive"),
    "empty.npz": (b"", "not an .npz (zip) archive"),
}


@pytest.mark.parametrize("name", list(FOREIGN))
def test_foreign_and_corrupt_files_are_refused_in_one_line(tmp_path, capsys, name):
    content, match = FOREIGN[name]
    (tmp_path / name).write_bytes(content)
    line = assert_refused(tmp_path / name, capsys, match)
    assert name in line


def test_plain_numpy_archives_are_refused(tmp_path, capsys):
    with open(tmp_path / "plain.npz", "wb") as fh:
        np.savez(fh, a=np.arange(3))
    assert_refused(tmp_path / "plain.npz", capsys, "not a tnkit file")
    obj = np.empty(1, dtype=object)
    with open(tmp_path / "objects.npz", "wb") as fh:
        np.savez(fh, __tnkit_kind__=np.array("MatrixProductState"), t0000=obj)
    assert_refused(tmp_path / "objects.npz", capsys, "never loaded")


def test_unknown_kind_and_missing_path_are_refused(tmp_path, capsys):
    with open(tmp_path / "alien.npz", "wb") as fh:
        np.savez(fh, __tnkit_kind__=np.array("Alien"), __tnkit_schema__=np.array(1), n_sites=np.array(0))
    assert_refused(tmp_path / "alien.npz", capsys, "holds a 'Alien', which this tnkit cannot describe")
    assert_refused(tmp_path / "nope.npz", capsys, "no such file or directory")
    assert_refused(tmp_path, capsys, "without tnkit_layers.json")


def test_python_m_tnkit_inspect_refuses_a_corrupt_file(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 torn")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "tnkit", "inspect", str(tmp_path / "bad.npz")],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"tnkit inspect: error: {str(tmp_path / 'bad.npz')!r} is corrupt: the zip archive is damaged or truncated."
    ]


def test_states_beyond_float_range_and_zero_state_are_described(tmp_path, capsys):
    psi = MPS.random(8, 4, seed=0)
    (psi * 1e300 * 1e300).save(tmp_path / "huge.npz")
    (psi * 0).save(tmp_path / "zero.npz")
    status, out, _ = inspect(tmp_path / "huge.npz", capsys)
    assert status == 0
    assert "norm      : exp(1381.5510558" in out and "entropy" in out
    status, out, _ = inspect(tmp_path / "zero.npz", capsys)
    assert status == 0
    assert "norm      : 0 (the zero state)" in out and "entropy" not in out
