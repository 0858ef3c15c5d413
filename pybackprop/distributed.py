"""Data-parallel training over MPI (mpi4py, the ``mpi`` extra): every rank holds the whole
model, computes the gradients of its slice of each global batch, and the gradients are
summed across ranks before the optimizer step, so every rank takes the same step.

    mpiexec -n 2 python train.py

    from pybackprop import distributed as dist
    ddp = dist.DataParallel(model)              # broadcasts rank 0's parameters
    for idx in dist.shard_batches(len(X), 64, seed=0, epoch=e, comm=ddp.comm):
        model.zero_grad()
        loss, dlogits = pb.softmax_cross_entropy(model.forward(X[idx]), y[idx],
                                                 reduction="sum")
        ddp.backward(dlogits / ddp.global_batch_size(len(idx)), need_dx=False)
        opt.step(model.gradients())             # the summed gradients, same on every rank

As PyTorch's DistributedDataParallel and Horovod do it, gradients travel in **buckets**
(about ``bucket_bytes`` each, one dtype each, in the order the backward produces them: last
layer first). A bucket's non-blocking allreduce (``Iallreduce``) starts as soon as its last
gradient is produced, so communication overlaps the rest of the backward; ``backward``
waits for every bucket before it returns.

Same parameters on every rank: each rank receives the same sums (MPI's advice for
reductions, which MPICH follows: the same operands in the same order on every rank; with
two ranks a sum is one commutative addition) and applies the same optimizer step to the
same parameters, so parameters stay bitwise identical; :meth:`DataParallel.check_in_sync`
verifies it. Against one process on the same global batches the sums differ only by
rounding (another order of the batch's terms).

Threads: :func:`default_threads` gives each rank ``OMP_NUM_THREADS`` when set, else the
node's CPUs divided by the ranks on the node; :class:`DataParallel` applies it unless told
otherwise. Failure: :func:`abort_on_error` (installed by :class:`DataParallel`) makes an
uncaught exception on any rank abort every rank (``MPI_Abort``) instead of leaving the
others waiting in a collective forever.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Iterator, List, Sequence

import numpy as np

from ._runtime import set_num_threads

__all__ = ["DataParallel", "TorchDataParallel", "bucket_plan", "shard_batches",
           "default_threads", "abort_on_error", "world"]

DEFAULT_BUCKET_BYTES = 1 << 20


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("pybackprop.distributed needs mpi4py and an MPI library: "
                          "pip install 'pybackprop[mpi]' (mpi4py and mpich)") from None
    return MPI


def world():
    """``MPI.COMM_WORLD`` (imports mpi4py)."""
    return _mpi().COMM_WORLD


def default_threads(comm=None) -> int:
    """Threads per rank: ``OMP_NUM_THREADS`` when set (its first value), else the CPUs this
    process may use divided by the ranks on this node (at least 1)."""
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    MPI = _mpi()
    comm = comm if comm is not None else MPI.COMM_WORLD
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        per_node = node.Get_size()
    finally:
        node.Free()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // per_node)


def abort_on_error(comm=None) -> None:
    """Make an uncaught exception on this rank print its traceback and abort every rank
    (``comm.Abort(1)``): the other ranks would otherwise wait in their next collective
    forever."""
    comm = comm if comm is not None else world()
    previous = sys.excepthook
    if getattr(previous, "_pybackprop_abort", False):
        return

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.write(f"pybackprop.distributed: rank {comm.Get_rank()} raised "
                         f"{kind.__name__}; aborting every rank\n")
        sys.stderr.flush()
        comm.Abort(1)
    hook._pybackprop_abort = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def bucket_plan(nbytes: Sequence[int], dtypes: Sequence[Any],
                bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> List[List[int]]:
    """Buckets of gradient indices, in the order the gradients are produced (the order of
    ``nbytes``): consecutive gradients of one dtype are gathered until a bucket holds at
    least ``bucket_bytes`` (a larger gradient is a bucket of its own). Every index appears
    in exactly one bucket."""
    if len(nbytes) != len(dtypes):
        raise ValueError(f"nbytes has {len(nbytes)} entries but dtypes has {len(dtypes)}")
    if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, (int, np.integer)) \
            or bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be a positive int, got {bucket_bytes!r}")
    plan: List[List[int]] = []
    size = 0
    for i, (n, dt) in enumerate(zip(nbytes, dtypes)):
        if not plan or size >= bucket_bytes or np.dtype(dtypes[plan[-1][0]]) != np.dtype(dt):
            plan.append([])
            size = 0
        plan[-1].append(i)
        size += int(n)
    return plan


def shard_batches(n: int, batch_size: int, *, seed: int = 0, epoch: int = 0,
                  comm=None) -> Iterator[np.ndarray]:
    """One epoch of this rank's row indices: the rows ``0..n-1`` in an order drawn from
    ``(seed, epoch)`` (the same on every rank), cut into global batches of ``batch_size``
    (the last one may be shorter), each split into ``size`` disjoint, nearly equal slices;
    yields slice ``rank`` of each global batch (possibly empty). The slices of all ranks
    make up the global batch."""
    comm = comm if comm is not None else world()
    if n < 0 or batch_size < 1:
        raise ValueError(f"need n >= 0 and batch_size >= 1, got n={n}, "
                         f"batch_size={batch_size}")
    order = np.random.default_rng([seed, epoch]).permutation(n)
    size, rank = comm.Get_size(), comm.Get_rank()
    for start in range(0, n, batch_size):
        yield np.array_split(order[start:start + batch_size], size)[rank]


class _Reducer:
    """The bucketed allreduce of one step: ``ready(i, grad)`` copies gradient ``i`` into its
    bucket and starts the bucket's ``Iallreduce`` once it is full; ``finish()`` waits for
    every bucket and writes the sums (divided by the ranks when averaging) back."""

    def __init__(self, comm, shapes, dtypes, bucket_bytes, average):
        self.comm, self.average = comm, average
        self.MPI = _mpi()
        sizes = [int(np.prod(s)) for s in shapes]
        nbytes = [n * np.dtype(d).itemsize for n, d in zip(sizes, dtypes)]
        self.plan = bucket_plan(nbytes, dtypes, bucket_bytes)
        self.slot = {}
        self.buffers = []
        for b, idx in enumerate(self.plan):
            off = 0
            for i in idx:
                self.slot[i] = (b, off, sizes[i])
                off += sizes[i]
            self.buffers.append(np.empty(off, dtype=dtypes[idx[0]]))
        self._reset()

    def _reset(self):
        self.left = [len(idx) for idx in self.plan]
        self.requests = [None] * len(self.plan)
        self.targets = {}

    def ready(self, i, grad):
        b, off, n = self.slot[i]
        if i in self.targets:
            raise RuntimeError(f"gradient {i} was produced twice in one step")
        self.buffers[b][off:off + n] = grad.reshape(-1)
        self.targets[i] = grad
        self.left[b] -= 1
        if self.left[b] == 0:
            self.requests[b] = self.comm.Iallreduce(self.MPI.IN_PLACE, self.buffers[b],
                                                    op=self.MPI.SUM)

    def finish(self):
        missing = [i for i in self.slot if i not in self.targets]
        if missing:
            self._reset()
            raise RuntimeError(f"the backward produced no gradient for parameters {missing}")
        size = self.comm.Get_size()
        for b, idx in enumerate(self.plan):
            self.requests[b].Wait()
            buf = self.buffers[b]
            if self.average:
                buf /= size
            for i in idx:
                _, off, n = self.slot[i]
                self.targets[i].reshape(-1)[...] = buf[off:off + n]
        self._reset()


class DataParallel:
    """Data parallelism for a :class:`pybackprop.nn.Sequential` (or any model with
    ``layers``, each with ``backward``, ``parameters`` and ``gradients``).

    Parameters
    ----------
    model : the model, the same architecture on every rank; rank 0's parameters are
        broadcast to the others here.
    comm : mpi4py communicator, default ``MPI.COMM_WORLD``.
    bucket_bytes : int, about how many bytes of gradients one allreduce carries.
    average : bool, default True: divide the summed gradients by the number of ranks (each
        rank's loss a mean over an equal share of the batch, as DistributedDataParallel).
        False: keep the sums (each rank's loss already scaled to the global batch, e.g.
        ``reduction="sum"`` divided by :meth:`global_batch_size`).
    overlap : bool, default True: start each bucket's allreduce during the backward.
        False: one allreduce per bucket after the whole backward (for comparison).
    threads : int or None, default: :func:`default_threads`; ``False`` leaves the thread
        count alone.
    """

    def __init__(self, model, comm=None, *, bucket_bytes: int = DEFAULT_BUCKET_BYTES,
                 average: bool = True, overlap: bool = True, threads: Any = None):
        self.comm = comm if comm is not None else world()
        if not hasattr(model, "layers"):
            raise TypeError(f"model must have layers (a pybackprop.nn.Sequential), got "
                            f"{type(model).__name__}")
        self.model, self.overlap = model, bool(overlap)
        if threads is not False:
            set_num_threads(default_threads(self.comm) if threads is None else threads)
        abort_on_error(self.comm)
        for p in model.parameters():  # every rank starts from rank 0's parameters
            self.comm.Bcast(p, root=0)
        # gradients in the order the backward produces them: last layer first
        self._order = [(li, g) for li in range(len(model.layers) - 1, -1, -1)
                       for g in range(len(model.layers[li].gradients()))]
        grads = [model.layers[li].gradients()[g] for li, g in self._order]
        self._reducer = _Reducer(self.comm, [a.shape for a in grads], [a.dtype for a in grads],
                                 bucket_bytes, average)

    @property
    def buckets(self) -> List[List[int]]:
        """The buckets, as indices into the gradients in production order."""
        return self._reducer.plan

    def global_batch_size(self, local: int) -> int:
        """The sum of ``local`` over the ranks (the global batch's rows)."""
        return int(self.comm.allreduce(int(local)))

    def forward(self, x):
        return self.model.forward(x)

    __call__ = forward

    def backward(self, dy, need_dx: bool = False):
        """The model's backward, layer by layer from the last, each layer's gradients
        handed to their buckets as soon as it has produced them; returns after every
        bucket's allreduce has completed and the gradient buffers hold the result."""
        layers = self.model.layers
        k = 0
        for li in range(len(layers) - 1, -1, -1):
            dy = layers[li].backward(dy, need_dx=need_dx or li > 0)
            if self.overlap:
                for g in layers[li].gradients():
                    self._reducer.ready(k, g)
                    k += 1
        if not self.overlap:
            for k, (li, g) in enumerate(self._order):
                self._reducer.ready(k, layers[li].gradients()[g])
        self._reducer.finish()
        return dy

    def check_in_sync(self) -> bool:
        """True if every rank holds bitwise the same parameters (collective: every rank
        must call it)."""
        mine = b"".join(np.ascontiguousarray(p).tobytes() for p in self.model.parameters())
        first = self.comm.bcast(mine if self.comm.Get_rank() == 0 else None, root=0)
        return bool(self.comm.allreduce(int(first == mine), op=_mpi().MIN))


class TorchDataParallel:
    """The same for a ``torch.nn.Module`` on the CPU (with :mod:`pybackprop.torch`'s layers
    or any others): a hook on each parameter hands its gradient to its bucket as soon as
    autograd has accumulated it; call :meth:`synchronize` after ``loss.backward()`` and
    before ``optimizer.step()``. Rank 0's parameters are broadcast at construction;
    gradients are averaged (``average=False``: summed)."""

    def __init__(self, module, comm=None, *, bucket_bytes: int = DEFAULT_BUCKET_BYTES,
                 average: bool = True, threads: Any = None):
        import torch
        self.comm = comm if comm is not None else world()
        if threads is not False:
            n = default_threads(self.comm) if threads is None else threads
            set_num_threads(n)
            torch.set_num_threads(n)
        abort_on_error(self.comm)
        params = [p for p in module.parameters() if p.requires_grad]
        for p in params:
            if p.device.type != "cpu":
                raise ValueError(f"parameters must be on the CPU, got one on {p.device}")
            with torch.no_grad():
                self.comm.Bcast(p.detach().numpy(), root=0)
        params = params[::-1]  # autograd produces the last layers' gradients first
        self._index = {id(p): i for i, p in enumerate(params)}
        self._reducer = _Reducer(self.comm, [tuple(p.shape) for p in params],
                                 [p.detach().numpy().dtype for p in params], bucket_bytes,
                                 average)
        for p in params:
            p.register_post_accumulate_grad_hook(self._hook)

    @property
    def buckets(self) -> List[List[int]]:
        return self._reducer.plan

    def _hook(self, p):
        self._reducer.ready(self._index[id(p)], p.grad.detach().numpy())

    def synchronize(self) -> None:
        """Wait for every bucket; the parameters' ``.grad`` then hold the averages."""
        self._reducer.finish()

