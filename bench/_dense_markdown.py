"""_dense_markdown.py -- bench dense's main table in brief, as the markdown section the
README shows per CPU model and configuration (``--markdown PATH``)."""
import numpy as np

try:
    from pybackprop._bench import _common
except ImportError:  # run as a script with a pybackprop that does not ship _bench
    import _common

import pybackprop


def _num(v):
    """A ratio cell ("1.23", "1.23*") as a float; None for a missing one."""
    try:
        return float(str(v).rstrip("*"))
    except ValueError:
        return None


def summary(rows):
    """The main table in brief: one line per operation and shape at the largest thread
    count, float32 and float64 side by side, then the worst ratios over every row."""
    top = max(r["threads"] for r in rows)
    cells = {}
    for r in rows:
        if r["threads"] == top:
            name = r["op"] if r["act"] == "relu" else f"{r['op']} {r['act']}"
            cells.setdefault((name, r["shape"]), {})[r["dtype"]] = r
    dts = sorted({r["dtype"] for r in rows})
    head = ["op", "B x K x N"] + [f"{d} {c}" for d in dts
                                  for c in ("us", "% peak", "x numpy", "x torch")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "--:|" * (len(head) - 2)]
    for (name, shape), by_dt in cells.items():
        out = [name, shape]
        for d in dts:
            r = by_dt.get(d)
            out += (["-"] * 4 if r is None else
                    [_common.fmt_us(r["ours_us"]), f"{r['peak_pct']:.0f}",
                     str(r.get("vs_numpy") or "-"), str(r.get("vs_torch") or "-")])
        lines.append("| " + " | ".join(out) + " |")

    def worst(key):
        vals = [v for v in (_num(r.get(key)) for r in rows) if v is not None]
        return f"{min(vals):.2f}" if vals else "-"
    thr = sorted({r["threads"] for r in rows})
    lines += ["", f"{top} thread(s) above. Worst over all {len(rows)} rows "
              f"({', '.join(map(str, thr))} thread(s), {', '.join(dts)}): x numpy "
              f"{worst('vs_numpy')}, x torch "
              f"{worst('vs_torch')}, automatic configuration / best pinned "
              f"{worst('auto_vs_best')}."]
    return "\n".join(lines)


def write_section(path, rows, shown_args, torch):
    """A summary of the main table as markdown, in PATH's section for this CPU model and
    configuration (the whole table: the bench's output, ``--save``)."""
    import datetime
    info = pybackprop.cpu_info()
    model = _common.cpu_model()
    cpu = pybackprop.get_cpu()
    key = "bench-dense " + "".join(ch if ch.isalnum() else "-" for ch in f"{model} {cpu}")
    head = (f"**{model}** (cpuid {info['vendor']} family {info['family']:#x} model "
            f"{info['model']:#x}), configuration `{cpu}` (kernels: "
            + ", ".join(f"{k} {v}" for k, v in info["kernels"].items())
            + f"), {datetime.date.today().isoformat()}, numpy {np.__version__}, "
            + (f"torch {torch.__version__}" if torch is not None else "no torch")
            + f"; `python -m pybackprop bench dense {shown_args}`")
    _common.write_markdown_section(path, key, head + "\n\n" + summary(rows))
    print(f"  markdown table written to {path} (section {key!r})")
