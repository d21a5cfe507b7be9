"""The raw-vs-decorrelated table of an evaluation (metrics.json ``decorrelation``) as Markdown.

    python benchmarks/decorrelation_table.py EVAL_DIR/metrics.json
"""

from __future__ import annotations

import json
import sys


def fmt(v, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}g}"


def table(metrics: dict, effs=("0.1", "0.01")) -> list[str]:
    head = "| method | signal | AUC raw | AUC decor | 1/ε_B@ε_S=0.3 raw | decor |"
    sep = "|---|---|---|---|---|---|"
    for label in ("m_j1", "MT"):
        for e in effs:
            head += f" JSD {label} @ε_B={e} raw / decor / random mean, 95 % (p) |"
            sep += "---|"
    lines = [head, sep]
    for r in metrics.get("decorrelation", []):
        row = (f"| {r['method']} | {r['signal']} | {fmt(r['auc'])} | {fmt(r['auc_decor'])} | {fmt(r['rejection'])} | "
               f"{fmt(r['rejection_decor'])} |")
        for var in ("lead_jet_mass", "mt"):
            for e in effs:
                c = r["sculpting"].get(var, {}).get(e, {})
                row += (f" {fmt(c.get('jsd'), 2)} / {fmt(c.get('jsd_decor'), 2)} / {fmt(c.get('jsd_random'), 2)},"
                        f" {fmt(c.get('jsd_random_q95'), 2)} ({fmt(c.get('jsd_random_p'), 2)}) |")
        lines.append(row)
    return lines


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print("\n".join(table(json.load(f))))
