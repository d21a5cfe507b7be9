"""``darkshower import FORMAT INPUT... --out DIR``: external formats → darkshower dataset."""

from __future__ import annotations

import argparse

from darkshower.cli.options import add_executor, executor_of

FORMAT_HELP = """formats:
  pfnano           CMS PFNano NanoAOD (FatJet + FatJetPFCands, per-jet or PFCands-indexed layout)
  treemaker        CMS TreeMaker ntuple (JetsAK8 + substructure; no constituents)
  delphes          Delphes ROOT output (EFlow objects reclustered with FastJet)
  h5-4vec          HDF5 (N, P, 4) = (px, py, pz, E) per jet slot (--jets, --extra, --jet-kinematics)
  lhco             LHC Olympics 2020 pandas HDF5 (particles clustered with FastJet, truth_label)
  h5-constituents  HDF5 jet_constituent_data (N, J, P, 3) + event_feature_data
see docs/importers.md for what maps to what."""

#: CLI option name -> library option name (only passed on when given)
FORMAT_OPTIONS = {
    "tree": "tree",
    "jets": "jets",
    "extra": "extra",
    "jet_kinematics": "jet_kinematics",
    "jet_fields": "jet_fields",
    "radius": "radius",
    "jet_pt_min": "jet_pt_min",
    "eta_max": "eta_max",
    "key": "key",
    "constituents": "constituents",
    "features": "features",
    "coordinates": "coordinates",
    "delphes_jets": "delphes_jets",
    "keep_empty_events": "keep_empty_events",
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import",
        help="import CMS PFNano / TreeMaker / Delphes / HDF5 / LHCO files into a dataset",
        description="Convert files of an external format into a darkshower dataset (chunked, resumable).",
        epilog=FORMAT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("format", metavar="FORMAT", help="input format (see below)")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="input files")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset directory to write (or resume)")
    p.add_argument("--chunk-size", type=int, default=None, metavar="N", help="events per chunk (default 5000)")
    p.add_argument("--skip-bad-files", action="store_true", help="skip unreadable/bad inputs and report them")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_executor(p, 1, "reading chunks in parallel")
    g = p.add_argument_group("format options (only those that apply to FORMAT are accepted)")
    g.add_argument("--tree", help="tree name (pfnano: Events, treemaker: PreSelection, delphes: Delphes)")
    g.add_argument("--jets", help="h5-4vec: datasets, one per jet slot (default jet1_PFCands,jet2_PFCands)")
    g.add_argument("--extra", help="h5-4vec: per-event datasets to carry, comma-separated (e.g. ae_loss1,ae_loss2)")
    g.add_argument("--jet-kinematics", help="h5-4vec: per-event stored kinematics dataset to carry (e.g. jet_kinematics)")
    g.add_argument("--jet-fields", help="pfnano/treemaker: FatJet_/JetsAK8_ columns to keep as cms_*, glob patterns (default *)")
    g.add_argument("--radius", type=float, help="delphes/lhco: anti-kt radius (delphes 0.8, lhco 1.0)")
    g.add_argument("--jet-pt-min", type=float, help="delphes/lhco: minimum jet pT [GeV] (150)")
    g.add_argument("--eta-max", type=float, help="delphes/lhco: maximum jet |eta| (delphes 2.4, lhco 2.5)")
    g.add_argument("--key", help="lhco: pandas key (default df)")
    g.add_argument("--constituents", help="h5-constituents: constituent dataset (default jet_constituent_data)")
    g.add_argument("--features", help="h5-constituents: feature dataset (default event_feature_data)")
    g.add_argument("--coordinates", choices=["auto", "relative", "absolute"], help="h5-constituents: constituent eta/phi")
    g.add_argument("--delphes-jets", help="delphes: stored jet collection kept as delphes_jets (default FatJet)")
    g.add_argument(
        "--keep-empty-events", action="store_true", default=None, help="h5-4vec/lhco/h5-constituents: keep events with no particles"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from darkshower.io import DEFAULT_CHUNK_SIZE, import_dataset

    options = {lib: getattr(args, cli) for cli, lib in FORMAT_OPTIONS.items() if getattr(args, cli, None) is not None}
    with executor_of(args) as ex:
        ds = import_dataset(
            args.format,
            args.inputs,
            args.out,
            chunk_size=args.chunk_size or DEFAULT_CHUNK_SIZE,
            skip_bad_files=args.skip_bad_files,
            progress=False if args.no_progress else None,
            executor=ex,
            **options,
        )
    m = ds.manifest
    n_jets = m.get("n_jets", 0)
    n_inputs = len(m["provenance"]["inputs"])
    print(
        f"imported {ds.n_events} events, {n_jets} jets from {n_inputs} file(s) "
        f"[{m['process']}] into {ds.path} ({len(ds.chunks)} chunk(s))"
    )
    extra = m.get("parameters", {}).get("extra_event_fields", [])
    if extra:
        print(f"extra per-event columns: {', '.join(extra)}")
    skipped = m.get("skipped_files", [])
    if skipped:
        print(f"skipped {len(skipped)} bad file(s):")
        for s in skipped:
            reason = s["reason"]
            print(f"  {reason if reason.startswith(s['path']) else s['path'] + ': ' + reason}")
    return 0
