"""An autouse fixture that runs a test module's torch work on one intra-op thread.

The tiny models' matrices are a few dozen wide: a second torch thread gains nothing there,
and on a busy machine its spinning makes each product tens of times slower (measured: the
CLI end-to-end test took 160 s with the default threads under load, most of it in 48x96
matmuls). Import the fixture into a test module to use it; the count is restored afterwards.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
