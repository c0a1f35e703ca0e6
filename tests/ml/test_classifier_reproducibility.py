"""Classifier and Born machine fits are the same function of data, options and seed at 1 and 2 threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_FIT = """
import hashlib, json, sys
sys.path.insert(0, {root!r})
from tnkit.datasets import load_digits
from tnkit.ml import MPSClassifier, TTNClassifier
X, y = load_digits()
out = {{}}
for clf in (MPSClassifier(n_epochs=2, random_state=5), TTNClassifier(n_epochs=2, random_state=5)):
    f = clf.fit(X[:400], y[:400]).decision_function(X[1000:1200])
    out[type(clf).__name__] = hashlib.sha256(f.tobytes()).hexdigest()
print(json.dumps(out))
"""

_BORN_FIT = """
import hashlib, json, sys
sys.path.insert(0, {root!r})
import numpy as np
from tnkit.ml import MPSBornMachine, TTNBornMachine
rng = np.random.default_rng(3)
X = (rng.random((600, 10)) < np.linspace(0.2, 0.8, 10)).astype(np.int64)
X[:, 1::2] ^= X[:, ::2]
out = {{}}
for model in (MPSBornMachine(max_bond=4, n_sweeps=6, n_starts=1, random_state=5),
              TTNBornMachine(max_bond=4, n_sweeps=6, random_state=5)):
    f = model.fit(X).score_samples(X[:200])
    out[type(model).__name__] = hashlib.sha256(np.ascontiguousarray(f).tobytes()).hexdigest()
print(json.dumps(out))
"""


def _fit_in_fresh_process(threads: int, script: str = _FIT) -> dict[str, str]:
    env = dict(os.environ, TNKIT_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", script.format(root=str(ROOT))], env=env, capture_output=True,
                          text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fit_is_bit_identical_across_processes_and_thread_counts():
    one, two = _fit_in_fresh_process(1), _fit_in_fresh_process(2)
    assert set(one) == {"MPSClassifier", "TTNClassifier"}
    assert one == two


def test_born_fit_is_bit_identical_across_processes_and_thread_counts():
    one, two = _fit_in_fresh_process(1, _BORN_FIT), _fit_in_fresh_process(2, _BORN_FIT)
    assert set(one) == {"MPSBornMachine", "TTNBornMachine"}
    assert one == two
