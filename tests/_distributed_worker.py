"""What each rank runs for tests/test_distributed.py (launched with mpiexec -n 2).

    python tests/_distributed_worker.py MODE

Modes (rank 0 prints "OK <mode>" when every check passed; a failed check raises, which
aborts every rank):
  sync      the demo's MLP, 6 steps of Adam on sharded global batches, buckets small enough
            that there are several: after every step the ranks' parameters are bitwise equal
  gradient  one Dense layer and an MSE loss: the summed gradients of the ranks' shards equal
            the one-process gradient of the global batch within the bound derived below
  torch     pybackprop.torch.Linear layers with TorchDataParallel: parameters stay equal
  raise     rank 1 raises after set-up: every rank must end (with an error) promptly
  die       rank 1 exits abruptly: every rank must end promptly
"""
import os
import sys

import numpy as np

import pybackprop as pb
from pybackprop import distributed as dist
from pybackprop.nn import Dense, Sequential

comm = dist.world()
rank, size = comm.Get_rank(), comm.Get_size()


def sync():
    from pybackprop.demo import build_model, make_spirals
    X, y = make_spirals(200, seed=0)
    model = build_model(hidden=32, seed=rank)  # different on each rank until broadcast
    ddp = dist.DataParallel(model, comm, bucket_bytes=4096, average=False)
    assert len(ddp.buckets) > 1, ddp.buckets
    assert ddp.check_in_sync()
    opt = pb.optim.Adam(model.parameters(), lr=1e-2)
    for step, idx in zip(range(6), dist.shard_batches(len(X), 64, seed=1, comm=comm)):
        model.zero_grad()
        n = ddp.global_batch_size(len(idx))
        _, dlogits = pb.softmax_cross_entropy(model.forward(X[idx]), y[idx], reduction="sum")
        ddp.backward(dlogits / np.float32(n))
        opt.step(model.gradients())
        assert ddp.check_in_sync(), f"parameters differ after step {step}"


def _gamma(n, dtype):
    u = np.finfo(dtype).eps / 2
    return n * u / (1 - n * u)


def gradient():
    # Bound: y = x w^T + b is computed by each process within gamma_(K+1) |x| |w|^T + |b| of
    # the exact value [Higham, ASNA 2nd ed., (3.5)], so two computations of a row differ by
    # at most twice that; dz = 2 (y - t) / B carries that difference times 2 / B (its own
    # roundings are the same operations on both sides). dw = dz^T x and db = sum(dz) are
    # sums of B terms (each shard's partial sums, then one more addition across the ranks):
    # within gamma_(B+1) of the exact sum of the terms on each side, plus the propagated
    # difference of dz times |x|.
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(7)
        B, K, N = 96, 130, 17
        X = rng.standard_normal((B, K)).astype(dtype)
        T = rng.standard_normal((B, N)).astype(dtype)
        model = Sequential(Dense(K, N, "identity", dtype=dtype, rng=rng))
        ddp = dist.DataParallel(model, comm, average=False, bucket_bytes=1000)
        idx = np.array_split(np.arange(B), size)[rank]
        model.zero_grad()
        _, dpred = pb.mse_loss(model.forward(X[idx]), T[idx], reduction="sum")
        ddp.backward(dpred / dtype(B * N))
        layer = model[0]
        w, b = layer.weight.astype(np.float64), layer.bias.astype(np.float64)
        # one process, the whole batch
        one = Sequential(Dense(K, N, "identity", dtype=dtype, rng=rng))
        one[0].weight[...], one[0].bias[...] = layer.weight, layer.bias
        one.zero_grad()
        _, dpred1 = pb.mse_loss(one.forward(X), T, reduction="sum")
        one.backward(dpred1 / dtype(B * N))
        x64 = np.abs(X.astype(np.float64))
        dy_diff = 2 * _gamma(K + 1, dtype) * (x64 @ np.abs(w).T + np.abs(b)) * 2 / (B * N)
        dz = np.abs(dpred1.astype(np.float64) / (B * N))
        tol_w = 2 * _gamma(B + 1, dtype) * (dz.T @ x64) + dy_diff.T @ x64
        tol_b = 2 * _gamma(B + 1, dtype) * dz.sum(0) + dy_diff.sum(0)
        err_w = np.abs(layer.grad_w.astype(np.float64) - one[0].grad_w)
        err_b = np.abs(layer.grad_b.astype(np.float64) - one[0].grad_b)
        assert np.all(err_w <= tol_w), (dtype, float((err_w / tol_w).max()))
        assert np.all(err_b <= tol_b), (dtype, float((err_b / tol_b).max()))


def torch_mode():
    import torch
    import pybackprop.torch as pbt
    torch.manual_seed(rank)  # different on each rank until broadcast
    module = torch.nn.Sequential(pbt.Linear(8, 16, activation="relu"), pbt.Linear(16, 3))
    ddp = dist.TorchDataParallel(module, comm, bucket_bytes=256)
    assert len(ddp.buckets) > 1
    opt = pbt.Adam(module.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    idx = np.array_split(np.arange(64), size)[rank]
    for _ in range(4):
        opt.zero_grad()
        pbt.functional.cross_entropy(module(X[idx]), y[idx]).backward()
        ddp.synchronize()
        opt.step()
    mine = b"".join(p.detach().numpy().tobytes() for p in module.parameters())
    first = comm.bcast(mine if rank == 0 else None, root=0)
    assert comm.allreduce(int(first == mine)) == size, "parameters differ across ranks"


def failing(mode):
    model = Sequential(Dense(4, 4, "relu", rng=np.random.default_rng(0)))
    dist.DataParallel(model, comm)
    if rank == 1:
        if mode == "die":
            os._exit(3)
        raise RuntimeError("rank 1 fails on purpose")
    comm.Barrier()  # rank 0 would wait here forever without the abort
    raise AssertionError("rank 0 got past a barrier that rank 1 never reached")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode in ("raise", "die"):
        failing(mode)
    else:
        {"sync": sync, "gradient": gradient, "torch": torch_mode}[mode]()
        comm.Barrier()
        if rank == 0:
            print(f"OK {mode}", flush=True)
