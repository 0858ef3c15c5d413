"""``python -m pybackprop bench ... --plot FILE.png``: the ratios of the tables just printed,
as bar charts (matplotlib, the ``plot`` extra).

One panel per table that has ratio columns: one bar per row and ratio (against numpy, and
against PyTorch when it ran), the row named by its text columns left of the ratios
(operation, dtype, shape, ...), drawn from 1 on a log axis (right of 1: pybackprop
faster). Ratio columns are those whose row keys start with ``vs_`` or ``r_``; a value such
as ``"1.23*"`` is read as 1.23.
"""
import re

RATIO_PREFIXES = ("vs_", "r_")
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")


def _value(v):
    if isinstance(v, (int, float)):
        return float(v)
    m = _NUMBER.match(str(v)) if v is not None else None
    return float(m.group(1)) if m else None


def panels(tables):
    """[(title, row labels, {ratio header: [value or None per row]})] of the ``tables``,
    (title, columns, rows) triples (columns and rows as ``bench._common.PRINTED`` holds
    them), that have ratio columns."""
    out = []
    for title, columns, rows in tables:
        ratios = [(h, k) for h, k, _ in columns if k.startswith(RATIO_PREFIXES)]
        if not ratios or not rows:
            continue
        first = min(i for i, (_, k, _) in enumerate(columns) if k.startswith(RATIO_PREFIXES))
        text = [k for _, k, fmt in columns[:first] if fmt == "s"]  # what the row is
        labels = [" ".join(str(r.get(k)) for k in text if r.get(k) not in (None, "", "-"))
                  for r in rows]
        series = {h: [_value(r.get(k)) for r in rows] for h, k in ratios}
        series = {h: v for h, v in series.items() if any(x is not None for x in v)}
        if series:
            out.append((title, labels, series))
    return out


def plot(tables, path, title="pybackprop bench"):
    """Draw :func:`panels` of ``tables`` into ``path`` (any format matplotlib writes)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("bench --plot needs matplotlib: pip install 'pybackprop[plot]'") \
            from None
    found = panels(tables)
    if not found:
        raise SystemExit("bench --plot: no table with ratios was printed")
    heights = [max(2.0, 0.22 * len(labels) * max(1, len(series)) + 1.0)
               for _, labels, series in found]
    fig, axes = plt.subplots(len(found), 1, figsize=(9, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (name, labels, series) in zip(axes[:, 0], found):
        n, k = len(labels), len(series)
        width = 0.8 / k
        for j, (header, values) in enumerate(series.items()):
            ys = [i + (j - (k - 1) / 2) * width for i in range(n)]
            # bars from 1 to the ratio on a log axis: right when faster, left when slower
            ax.barh(ys, [v - 1.0 if v is not None else 0.0 for v in values], left=1.0,
                    height=width, label=header)
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(range(n))
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("their time / our time (> 1: pybackprop faster)")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
