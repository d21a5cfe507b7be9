"""``darkshower generate PROCESS --events N --seed S --out DIR`` — simulate events.

Example::

    darkshower generate svj --events 2000 --seed 1 --out data/svj --set r_inv=0.5 --set m_dark=10
    darkshower generate qcd --events 5000 --out data/qcd --set pthat_min=300 --detector none
    darkshower generate qcd --events 1000 --out data/qcd --pythia "PartonLevel:MPI = off"
    darkshower generate minbias --events 2000 --out data/minbias
    darkshower generate svj --events 1000 --out data/svj_pu30 --pileup 30 --pileup-library data/minbias \
        --pu-mitigation puppi
"""

from __future__ import annotations

import sys

from darkshower.cli.options import add_executor, executor_of, nonnegative_float, positive_float, positive_int
from darkshower.config import load_yaml, parse_assignment, set_nested


def register(sub) -> None:
    from darkshower.simulate.processes import PROCESSES

    p = sub.add_parser(
        "generate",
        help="simulate events (Pythia 8 + detector + jets) into a dataset",
        description=__doc__,
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    p.add_argument("process", help=f"process to generate: {', '.join(sorted(PROCESSES))}")
    p.add_argument("--events", type=positive_int, help="number of events passing the jet selection")
    p.add_argument("--seed", type=int, help="run seed (chunk seeds derive from it); default 1")
    p.add_argument("--out", required=True, help="output dataset directory (rerun to resume)")
    p.add_argument("--jobs", type=int, default=0, help="worker processes (default: all cores)")
    p.add_argument("--detector", choices=["cms", "none"], help="detector model (default cms)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="process parameter (e.g. r_inv=0.3) or config key with dots (e.g. jets.pt_min=200)")
    p.add_argument("--pythia", action="append", default=[], metavar='"Key = value"',
                   help="extra Pythia setting, repeatable (stored in the provenance)")
    p.add_argument("--config", help="YAML config file (same keys as the library config)")
    p.add_argument("--chunk-size", type=int, help="events per chunk file")
    p.add_argument("--ecm", type=float, help="centre-of-mass energy in GeV (default 13000)")
    p.add_argument("--resimulate", type=int, metavar="K",
                   help="K shower+hadronization realizations of each hard process (shared resim_id)")
    p.add_argument("--pileup", type=nonnegative_float, metavar="MU",
                   help="overlay Poisson(MU) minimum-bias interactions per event (needs --pileup-library)")
    p.add_argument("--pileup-library", metavar="DIR",
                   help="minimum-bias library made by `darkshower generate minbias --events N --out DIR`")
    p.add_argument("--beam-spot-z-mm", type=positive_float, metavar="MM",
                   help="Gaussian width of the vertex z distribution in mm (default 35)")
    p.add_argument("--pu-mitigation", metavar="none|chs|puppi|distillnet:RUN",
                   help="pileup mitigation in the detector step: none (default), chs (drop charged "
                        "candidates not from the primary vertex), puppi (PUPPI-like weights per candidate) or "
                        "distillnet:RUN (the weights of a DistillNet student, `darkshower distill --student "
                        "per-particle`)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_executor(p)
    p.set_defaults(func=run)


def build_config(args) -> dict:
    from darkshower.errors import ConfigError
    from darkshower.simulate.config import GenerateConfig
    from darkshower.simulate.processes import PROCESSES

    data: dict = load_yaml(args.config) if args.config else {}
    if "process" in data and data["process"] != args.process:
        raise ConfigError(f"--config {args.config}: process {data['process']!r} differs from the command's {args.process!r}")
    data["process"] = args.process
    data.setdefault("params", {})
    proc = PROCESSES.get(args.process)
    params = proc.Params.model_fields if proc is not None else {}
    for text in args.sets:  # a process parameter, else a top-level config key (store_particles=true), or dotted
        key, value = parse_assignment(text)
        if "." in key or (key in GenerateConfig.model_fields and key not in params):
            set_nested(data, key, value)
        else:
            data["params"][key] = value
    if args.events is not None:
        data["events"] = args.events
    if args.seed is not None:
        data["seed"] = args.seed
    if args.detector is not None:
        data.setdefault("detector", {})["name"] = args.detector
    if args.chunk_size is not None:
        data["chunk_size"] = args.chunk_size
    if args.ecm is not None:
        data["ecm"] = args.ecm
    if args.resimulate is not None:
        data["resimulate"] = args.resimulate
    for opt, key in (("pileup", "mu"), ("pileup_library", "library"), ("beam_spot_z_mm", "beam_spot_z_mm"),
                     ("pu_mitigation", "mitigation")):
        if getattr(args, opt) is not None:
            section = data.setdefault("pileup", {})
            if not isinstance(section, dict):
                raise ConfigError(f"--config {args.config}: 'pileup' must be a section (mu, library, ...)")
            section[key] = getattr(args, opt)
    if args.pythia:
        data["pythia"] = list(data.get("pythia", [])) + list(args.pythia)
    if "events" not in data:
        raise ConfigError("--events N is required (or 'events:' in the --config file)")
    return data


def run(args) -> int:
    from darkshower.simulate.run import generate

    data = build_config(args)
    with executor_of(args) as ex:
        ds = generate(data, args.out, progress=False if args.no_progress else None,
                      command=["darkshower", *sys.argv[1:]], executor=ex)
    xs = ds.manifest.get("cross_section", {})
    print(f"wrote {ds.n_events} {ds.process} events in {len(ds.chunks)} chunks to {ds.path}")
    if xs:
        print(f"  generated {xs['n_generated']} events, selection efficiency {xs['selection_efficiency']:.3f}, "
              f"sigma_gen = {xs['sigma_gen_pb']:.4g} pb")
    return 0
