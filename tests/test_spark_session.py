"""Session settings derived from the master URL (no Spark started)."""

from __future__ import annotations

import os

import pytest

from ltvcast.engines.spark import EngineError, local_cores


def test_local_cores_reads_the_thread_count():
    assert local_cores("local") == 1
    assert local_cores("local[2]") == 2
    assert local_cores("local[16, 3]") == 16  # local[N,F]: F is the task retry count
    assert local_cores("local[*]") == (os.cpu_count() or 1)


@pytest.mark.parametrize("master", ["local[0]", "local[two]", "yarn", "local-cluster[2,1,1024]"])
def test_local_cores_refuses_other_masters(master):
    with pytest.raises(EngineError, match="master"):
        local_cores(master)
