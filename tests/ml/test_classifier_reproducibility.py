"""A classifier fit is the same function of data, options and seed in a fresh process at 1 and 2 threads."""

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


def _fit_in_fresh_process(threads: int) -> dict[str, str]:
    env = dict(os.environ, TNKIT_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", _FIT.format(root=str(ROOT))], env=env, capture_output=True,
                          text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fit_is_bit_identical_across_processes_and_thread_counts():
    one, two = _fit_in_fresh_process(1), _fit_in_fresh_process(2)
    assert set(one) == {"MPSClassifier", "TTNClassifier"}
    assert one == two
