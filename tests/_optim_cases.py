"""What the optimizer tests share: a flat state_dict's arrays grouped by state name, and a
bitwise comparison of array lists."""
import numpy as np


def _group(sd):
    """A flat state_dict's arrays by state name: {"m": [m.0, m.1, ...], ...}."""
    out = {}
    for key in sorted((k for k in sd if "." in k), key=lambda k: int(k.rsplit(".", 1)[1])):
        out.setdefault(key.rsplit(".", 1)[0], []).append(sd[key])
    return out


def _assert_same(actual, expected):
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)
