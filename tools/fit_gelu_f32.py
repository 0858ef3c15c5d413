"""Fit the float32 tables of csrc/simd/gelu_f32_tables.inc (maintainer tool; needs mpmath).

    python tools/fit_gelu_f32.py > csrc/simd/gelu_f32_tables.inc

With S(a) = Phi(-a) exp(a^2 / 2) (Mills' ratio over sqrt(2 pi)), two functions of a >= 0:
    M(a) = a S(a)                    gelu(-a)  = -exp(-a^2/2) M(a)
    K(a) = S(a) - a / sqrt(2 pi)     gelu'(-a) =  exp(-a^2/2) K(a),  gelu'(a) = 1 - that
Both are entire and vary slowly (M from 0 to 1/sqrt(2 pi), K ~ -a / sqrt(2 pi)). Each is
cut into 16 pieces, [k - 1/2, k + 1/2] around k = 0..15 (piece 0: [0, 1/2]), and each piece
is a polynomial of degree 8 in x = a - k; piece 0 holds exp(-a^2/2) M(a) = a Phi(-a) and
exp(-a^2/2) K(a) = Phi(-a) - a phi(a) themselves. The fit: least squares on the relative
error (for K: relative to S(a) + a / sqrt(2 pi), the scale of the derivative's error, as K
crosses zero at a = 0.752) at Chebyshev nodes, reweighted toward minimax (Lawson). The
constant term is kept as two float32s (hi + lo, rows 0 and 1 of a table), the others rounded
to float32 one at a time upward, the rest refitted after each rounding; the piece 0 of M has
constant term 0 (a Phi(-a) = 0 at 0, kept exactly). Each piece's largest error over a fine
grid is printed to stderr (in units of 2^-24 relative: 0.05 at most).
"""
import sys

import mpmath as mp
import numpy as np

mp.mp.dps = 40
PIECES, DEGREE = 16, 8


def S(a):
    return mp.erfc(a / mp.sqrt(2)) / 2 * mp.exp(a * a / 2)


FUNCTIONS = {"m": lambda a: a * S(a), "k": lambda a: S(a) - a / mp.sqrt(2 * mp.pi)}
# the error is measured relative to these (see the docstring)
SCALE = {FUNCTIONS["m"]: FUNCTIONS["m"], FUNCTIONS["k"]: lambda a: S(a) + a / mp.sqrt(2 * mp.pi)}
GAUSS = {f: (lambda a, f=f: f(a) * mp.exp(-a * a / 2)) for f in FUNCTIONS.values()}
SCALE.update({GAUSS[f]: (lambda a, f=f: SCALE[f](a) * mp.exp(-a * a / 2)) for f in FUNCTIONS.values()})


def fit(x, f, sc, fixed):
    """Coefficients of degree DEGREE (the first len(fixed) given) minimising max |p - f| / sc."""
    v = np.vander(x, DEGREE + 1, increasing=True)
    nf = len(fixed)
    b = (f - v[:, :nf] @ np.array(fixed, dtype=float)) / sc
    a = v[:, nf:] / sc[:, None]
    w = np.ones(len(x))
    for _ in range(40):
        c = np.linalg.lstsq(a * np.sqrt(w)[:, None], b * np.sqrt(w), rcond=None)[0]
        e = np.abs(a @ c - b)
        w = w * e / e.max() + 1e-12
        w /= w.sum()
    return list(fixed) + list(c)


def piece(fun, k):
    lo, hi = (0.0, 0.5 + 1e-6) if k == 0 else (-0.5 - 1e-6, 0.5 + 1e-6)
    if k == 0:  # piece 0 holds the product by exp(-a^2 / 2) itself
        fun = GAUSS[fun]
    n = 240
    x = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
    f = np.array([float(fun(mp.mpf(k) + mp.mpf(t))) for t in x])
    sc = np.array([float(SCALE[fun](mp.mpf(k) + mp.mpf(t))) for t in x])
    fixed = []
    if fun is GAUSS[FUNCTIONS["m"]]:
        fixed = [0.0]
    while len(fixed) <= DEGREE:
        c = fit(x, f, sc, fixed)
        # the constant term stays a float64 (kept as two float32s, hi + lo), the others float32
        fixed.append(c[0] if not fixed else float(np.float32(c[len(fixed)])))
    c0_hi = float(np.float32(fixed[0]))
    c0_lo = float(np.float32(fixed[0] - c0_hi))
    fixed[0] = c0_hi + c0_lo
    grid = np.linspace(lo, hi, 2001)
    ref = np.array([float(fun(mp.mpf(k) + mp.mpf(t))) for t in grid])
    sg = np.array([float(SCALE[fun](mp.mpf(k) + mp.mpf(t))) for t in grid])
    got = np.polyval(np.array(fixed[::-1]), grid)
    keep = sg != 0
    return [c0_hi, c0_lo] + fixed[1:], float(np.max(np.abs(got[keep] - ref[keep]) / sg[keep]))


def _c(v):
    t = f"{v:.9g}"
    return (t if ("." in t or "e" in t) else t + ".0") + "f"


def main():
    out = ["/* gelu_f32_tables.inc -- written by tools/fit_gelu_f32.py (its docstring: what the",
           " * tables hold and how they were fitted). Per table, over the 16 pieces (x = a - k on",
           " * piece k): rows 0 and 1 the constant term's two parts, row j >= 2 the coefficient",
           " * of x^(j - 1). */",
           "#ifndef PB_GELU_F32_TABLES_INC", "#define PB_GELU_F32_TABLES_INC"]
    for name, fun in FUNCTIONS.items():
        rows, worst = [[0.0] * PIECES for _ in range(DEGREE + 2)], 0.0
        for k in range(PIECES):
            c, err = piece(fun, k)
            print(f"{name} piece {k}: {err * 2**24:.3f} ulp", file=sys.stderr)
            worst = max(worst, err)
            for j in range(DEGREE + 2):
                rows[j][k] = c[j]
        print(f"{name}: largest relative error {worst:.3g} ({worst * 2**24:.3f} ulp)",
              file=sys.stderr)
        out.append(f"static const float pb_gelu_{name}_f32[{DEGREE + 2}][{PIECES}] = {{")
        for j in range(DEGREE + 2):
            vals = [_c(v) for v in rows[j]]
            lines = [", ".join(vals[i:i + 4]) for i in range(0, PIECES, 4)]
            out.append("    {" + ",\n     ".join(lines) + "},")
        out.append("};")
    out.append("#endif")
    print("\n".join(out))


if __name__ == "__main__":
    main()
