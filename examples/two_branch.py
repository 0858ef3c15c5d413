"""A two-branch network written by hand with pybackprop's functional kernels.

A shared input layer feeds two branches whose outputs are merged by an elementwise
maximum, then a softmax cross-entropy; no autograd, just the forward pass and its backward
pass in reverse order. The shared layer's output gradient is the SUM of what the two
branches send back, which dense_backward(..., accumulate=True) forms in one buffer.

The numbers are the worked example of a backpropagation course (and golden test 1 of
tests/test_golden.py): run ``python examples/two_branch.py``.

    x = (1, 2, 3, 1)
    l1  = relu(W1 x)          W1  = [[-1, 0, 1, -1], [0, -1, 1, 1]]
    l21 = relu(W21 l1)        W21 = [[1, 1], [1, -1], [-1, 1]]
    l22 = sigmoid(W22 l1)     W22 = [[2, -1], [4, -2], [-2, 1]]
    z   = max(l21, l22)       loss = softmax cross-entropy, true class index 1
"""
import numpy as np

import pybackprop as pb


def run():
    """Forward and backward pass; returns every intermediate value and gradient."""
    x = np.array([[1.0, 2.0, 3.0, 1.0]])                      # a batch of one row
    W1 = np.array([[-1.0, 0, 1, -1], [0, -1, 1, 1]])
    W21 = np.array([[1.0, 1], [1, -1], [-1, 1]])
    W22 = np.array([[2.0, -1], [4, -2], [-2, 1]])
    label = np.array([1])

    # forward
    l1 = pb.dense_forward(x, W1, activation="relu")              # shared layer (no bias)
    l21 = pb.dense_forward(l1, W21, activation="relu")           # branch 1
    l22 = pb.dense_forward(l1, W22, activation="sigmoid")        # branch 2
    z = pb.maximum_forward(l21, l22)                             # merge
    loss, dz = pb.softmax_cross_entropy(z, label)                # loss and dL/dz

    # backward, in reverse order
    dl21, dl22 = pb.maximum_backward(dz, l21, l22)               # route to the winner
    dl1 = np.zeros_like(l1)                                      # sum of both branches
    _, gW21, _ = pb.dense_backward(dl21, l1, W21, l21, activation="relu", dx=dl1,
                                   accumulate=True)
    _, gW22, _ = pb.dense_backward(dl22, l1, W22, l22, activation="sigmoid", dx=dl1,
                                   accumulate=True)
    _, gW1, _ = pb.dense_backward(dl1, x, W1, l1, activation="relu", need_dx=False)

    softmax = dz[0] + np.eye(3)[label[0]]                        # dz = softmax - onehot
    return {"l1": l1[0], "l21": l21[0], "l22": l22[0], "z": z[0], "softmax": softmax,
            "loss": float(loss), "grad_W21": gW21, "grad_W22": gW22, "dl1": dl1[0],
            "grad_W1": gW1}


if __name__ == "__main__":
    np.set_printoptions(precision=6, suppress=True)
    for name, value in run().items():
        print(f"{name:>8} = {value}".replace("\n", "\n" + " " * 11))
