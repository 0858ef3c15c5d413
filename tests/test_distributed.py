"""pybackprop.distributed: the bucket plan and the batch shards (in this process), and two
ranks under mpiexec (tests/_distributed_worker.py), each run under a timeout."""
import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pybackprop import distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_distributed_worker.py")
TIMEOUT = 120
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(not (HAVE_MPI4PY and MPIEXEC),
                               reason="needs mpi4py and mpiexec (pip install "
                                      "'pybackprop[mpi]': mpi4py and mpich)")


@pytest.mark.parametrize("bucket_bytes", [1, 7, 64, 100, 4096, 10**9])
def test_buckets_cover_every_gradient_once(bucket_bytes):
    rng = np.random.default_rng(bucket_bytes)
    nbytes = [int(n) for n in rng.integers(0, 300, 40)]
    dtypes = [np.float32 if d else np.float64 for d in rng.integers(0, 2, 40)]
    plan = dist.bucket_plan(nbytes, dtypes, bucket_bytes)
    flat = [i for bucket in plan for i in bucket]
    assert flat == list(range(40))  # each once, in production order
    for bucket in plan:
        assert len({np.dtype(dtypes[i]) for i in bucket}) == 1  # one dtype per allreduce
        # a bucket is closed as soon as it holds bucket_bytes
        assert sum(nbytes[i] for i in bucket[:-1]) < bucket_bytes


def test_bucket_plan_checks_its_arguments():
    with pytest.raises(ValueError, match="bucket_bytes"):
        dist.bucket_plan([4], [np.float32], 0)
    with pytest.raises(ValueError, match="dtypes has 2"):
        dist.bucket_plan([4], [np.float32, np.float32])


class _FakeComm:
    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size


@pytest.mark.parametrize("n,batch,size", [(103, 16, 2), (10, 4, 3), (5, 8, 4), (0, 3, 2)])
def test_shards_partition_every_global_batch(n, batch, size):
    per_rank = [list(dist.shard_batches(n, batch, seed=3, epoch=1, comm=_FakeComm(r, size)))
                for r in range(size)]
    order = np.random.default_rng([3, 1]).permutation(n)
    for b, start in enumerate(range(0, n, batch)):
        union = np.concatenate([per_rank[r][b] for r in range(size)])
        assert np.array_equal(union, order[start:start + batch])  # disjoint, complete
        lens = [len(per_rank[r][b]) for r in range(size)]
        assert max(lens) - min(lens) <= 1


def _run(mode):
    env = dict(os.environ, PYBACKPROP_NUM_THREADS="1")
    try:
        return subprocess.run([MPIEXEC, "-n", "2", sys.executable, WORKER, mode],
                              capture_output=True, text=True, timeout=TIMEOUT, env=env,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mpiexec -n 2 ... {mode} did not end within {TIMEOUT} s")


@needs_mpi
@pytest.mark.parametrize("mode", ["sync", "gradient", "torch"])
def test_two_ranks(mode):
    """sync: parameters bitwise equal on both ranks after every step; gradient: the summed
    shard gradients equal one process's within the derived bound; torch: the same through
    pybackprop.torch (skipped there when torch is missing)."""
    if mode == "torch" and importlib.util.find_spec("torch") is None:
        pytest.skip("the torch bridge needs the optional torch")
    res = _run(mode)
    assert res.returncode == 0 and f"OK {mode}" in res.stdout, res.stdout + res.stderr


@needs_mpi
@pytest.mark.parametrize("mode", ["raise", "die"])
def test_a_failing_rank_ends_every_rank(mode):
    res = _run(mode)  # a hang fails in _run
    assert res.returncode != 0
    if mode == "raise":
        assert "rank 1 raised RuntimeError; aborting every rank" in res.stderr


def test_missing_mpi4py_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"pybackprop\[mpi\]"):
        dist.world()
