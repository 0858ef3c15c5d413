"""Arrays of other libraries as inputs (pybackprop/_core.py): converted by their own dtype,
as a view where DLPack allows, with an error of ours where they cannot be read."""
import numpy as np
import pytest

import pybackprop as pb

torch = pytest.importorskip("torch", reason="the tensor inputs are PyTorch's (optional)")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensors_keep_their_dtype(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g, dtype=dtype)
    w = torch.randn(2, 3, generator=g, dtype=dtype)
    b = torch.randn(2, generator=g, dtype=dtype)
    y = pb.dense_forward(x, w, b, activation="relu")
    want = {torch.float32: np.float32, torch.float64: np.float64}[dtype]
    assert y.dtype == want
    np.testing.assert_array_equal(y, pb.dense_forward(x.numpy(), w.numpy(), b.numpy(),
                                                      activation="relu"))
    # an integer tensor follows the float arrays, as an integer ndarray does
    assert pb.dense_forward(torch.ones(4, 3, dtype=torch.int64), w, b).dtype == want


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors_raise_type_error(dtype):
    x = torch.ones(4, 3, dtype=dtype)
    with pytest.raises(TypeError, match=r"\bx\b"):
        pb.dense_forward(x, np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="float16"):
        pb.dense_forward(np.ones((4, 3), np.float16), np.ones((2, 3), np.float32))


def test_a_tensor_that_requires_grad_is_named():
    w = torch.ones(2, 3, requires_grad=True)
    with pytest.raises(TypeError, match=r"w .*requires grad: pass w\.detach\(\)"):
        pb.dense_forward(np.ones((4, 3), np.float32), w)


def test_an_output_over_a_tensor_input_is_refused():
    """A tensor is read through a view of its memory, so out= over it is an overlap."""
    x = torch.ones(3, 3)
    out = x.numpy()  # the same memory
    with pytest.raises(ValueError, match="overlap"):
        pb.dense_forward(x, np.ones((3, 3), np.float32), out=out)
