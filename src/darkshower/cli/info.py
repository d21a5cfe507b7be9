"""``darkshower info PATH`` — a human summary of a dataset.

Example::

    darkshower info data/svj
    darkshower info data/svj --verify     # also check every chunk's checksum
"""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="summarize a dataset", description=__doc__,
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("path", help="dataset directory")
    p.add_argument("--verify", action="store_true", help="verify all chunk checksums")
    p.add_argument("--json", action="store_true", help="print the manifest summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.data.summary import summarize

    summary = summarize(args.path, verify=args.verify)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(format_summary(summary))
    return 0


def format_summary(s: dict) -> str:
    lines = [
        f"dataset   {s['path']}",
        f"process   {s['process']} ({s['kind']}), schema {s['schema_version']}, status {s['status']}",
        f"events    {s['n_events']} in {s['n_chunks']} chunks ({s['bytes'] / 1e6:.1f} MB)"
        + (", checksums verified" if s.get("verified") else ""),
    ]
    if s.get("parameters"):
        lines.append("params    " + ", ".join(f"{k}={v}" for k, v in s["parameters"].items() if v is not None))
    if s.get("jets"):
        j = s["jets"]
        lines.append(f"jets      {j.get('algorithm', '?')} R={j.get('radius')} pT>{j.get('pt_min')} |eta|<{j.get('eta_max')}")
    if s.get("detector"):
        lines.append(f"detector  {s['detector'].get('name')}")
    xs = s.get("cross_section") or {}
    if xs:
        lines.append(f"xsec      sigma_gen={xs['sigma_gen_pb']:.4g} pb, selection eff={xs['selection_efficiency']:.3f}, "
                     f"sigma_sel={xs['sigma_selected_pb']:.4g} pb")
    st = s.get("stats") or {}
    if st:
        lines.append(
            f"first chunk: {st['jets_per_event']:.2f} jets/event, leading-jet pT median {st['lead_pt_median']:.0f} GeV, "
            f"mass median {st['lead_mass_median']:.1f} GeV, {st['constituents_mean']:.1f} constituents/jet, "
            f"MET mean {st['met_mean']:.1f} GeV"
        )
    v = s.get("versions") or {}
    if v:
        lines.append("versions  " + ", ".join(f"{k} {val}" for k, val in v.items() if val))
    return "\n".join(lines)
