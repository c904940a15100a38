"""Shared test fixtures."""

import sys
from pathlib import Path

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test with one torch thread.

    Training tests compare numbers across runs; on 2 shared cores an OpenMP
    team of 2 under contention is also up to ~20x slower than one thread.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# The tests live in one folder per subpackage; the shared helpers
# (launches.py, dist_worker.py) sit here, in tests/.
sys.path.insert(0, str(Path(__file__).resolve().parent))
