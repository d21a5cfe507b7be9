"""One entry point: build the configured representation of a batch of events as numpy arrays."""

from __future__ import annotations

import logging

import numpy as np

from darkshower.errors import DatasetError
from darkshower.represent.common import jet_batch
from darkshower.represent.config import (
    OBS_EVENT_COLUMNS,
    OBS_JET_COLUMNS,
    ConstituentsConfig,
    EventImageConfig,
    ImageConfig,
    LundConfig,
    ObservablesConfig,
    parse_representation,
)

log = logging.getLogger(__name__)


def build(config, events, source: str | None = None) -> dict:
    """Representation of ``events`` as a dict of arrays with one leading sample axis
    (``x``, plus ``mask`` for point clouds), except Lund graphs (a LundGraphs under ``graphs``)
    and event images (a SparseEventImages under ``sparse``). Always includes ``event_id``
    (and ``jet_idx`` for jet-level kinds).

    A representation that comes out empty for every sample (no constituent, all-zero images,
    no Lund declustering, observables that are all 0) raises a DatasetError
    naming ``source`` (the dataset the events come from) instead of returning something a
    model would happily train on. Zero samples are not an error here.
    """
    cfg = parse_representation(config)
    _check_observables_available(cfg, events, source)
    out = _build(cfg, events)
    _check_not_empty(cfg, out, events, source)
    return out


def _default_columns(cfg) -> list[str]:
    """The columns of a jet-level observables config without explicit ``columns`` (as :func:`_build` makes
    them): every jet observable, then the per-event ones with ``include_event``."""
    return [*OBS_JET_COLUMNS, *(OBS_EVENT_COLUMNS if cfg.include_event else ())]


def _check_observables_available(cfg, events, source) -> None:
    """Observables of jets without constituents that neither their four-vector nor the format's stored
    observables give: one error naming them (instead of a column of zeros a model would train or score on)."""
    import awkward as ak

    if not isinstance(cfg, ObservablesConfig) or not jets_without_constituents(events):
        return
    cols = list(cfg.columns) if cfg.columns is not None else _default_columns(cfg)
    gone = unavailable_without_constituents(cols + list(cfg.event_columns or []), events)
    if gone:
        from darkshower.represent.stored import available_without_constituents

        have = available_without_constituents(ak.fields(events["jets"]))
        raise DatasetError(
            f"{'dataset ' + source if source else 'the input events'}: the jets have no constituents (jets.constituents "
            f"is empty everywhere), so the observables {gone} cannot be computed; these jets give {have} (their "
            "four-vector and what the format stores per jet). Fix: leave the others out of representation.columns "
            "(a run trained on such data does it itself: darkshower train auto / any observables method), or import "
            "a format with jet constituents (pfnano with PF candidates, delphes, h5-4vec, ...)")


def _build(cfg, events) -> dict:
    if isinstance(cfg, ConstituentsConfig):
        from darkshower.represent.constituents import Standardizer, point_clouds

        std = Standardizer.from_dict(cfg.standardizer) if (cfg.standardize and cfg.standardizer) else None
        pc = point_clouds(events, cfg.n_constituents, cfg.centre, cfg.rotate, cfg.flip, cfg.displacement,
                          std, cfg.max_jets, cfg.use_weights)
        return {"x": pc.features, "mask": pc.mask, "event_id": pc.event_id, "jet_idx": pc.jet_idx, "names": pc.names}
    if isinstance(cfg, ImageConfig):
        from darkshower.represent.images import jet_images

        im = jet_images(events, cfg.n_pixels, cfg.half_width, cfg.channels, cfg.normalize, cfg.centre,
                        cfg.max_jets, cfg.use_weights)
        return {"x": im.images, "event_id": im.event_id, "jet_idx": im.jet_idx, "names": im.channels}
    if isinstance(cfg, EventImageConfig):
        from darkshower.represent.images import event_images

        sp = event_images(events, cfg.n_eta, cfg.n_phi, cfg.eta_max, cfg.channels, cfg.collection, cfg.use_weights)
        return {"sparse": sp, "event_id": sp.event_id, "names": sp.channels}
    if isinstance(cfg, LundConfig):
        from darkshower.represent.lund import LUND_FEATURES, lund_graphs

        g = lund_graphs(events, cfg.max_level, cfg.undirected, cfg.max_jets, cfg.use_weights)
        return {"graphs": g, "event_id": g.event_id, "jet_idx": g.jet_idx, "names": list(LUND_FEATURES)}
    if isinstance(cfg, ObservablesConfig) and cfg.level == "event":
        return _build_event_level(cfg, events)
    if isinstance(cfg, ObservablesConfig):
        from darkshower.represent.observables import event_observables, jet_observables

        df = jet_observables(events, cfg.max_jets, cfg.use_weights, cfg.zcut, cfg.sd_beta, cfg.r0, cfg.tau_beta,
                             cfg.ecf_groomed)
        if cfg.include_event and "jets" in getattr(events, "fields", []):
            ev = event_observables(events, use_weights=cfg.use_weights)
            df = df.merge(ev, on="event_id", how="left")
        cols = cfg.columns or [c for c in df.columns if c not in ("event_id", "jet_idx")]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            from darkshower.errors import ConfigError

            raise ConfigError(f"observables columns {missing} do not exist; available: {list(df.columns)}")
        return {"x": df[cols].to_numpy(np.float32), "event_id": df.event_id.to_numpy(),
                "jet_idx": df.jet_idx.to_numpy(), "names": cols}
    raise AssertionError(cfg)  # pragma: no cover


def has_met(events) -> bool:
    """Whether ``events`` carry a missing transverse momentum: a ``met_pt`` field that is not 0 everywhere
    (importers of formats without MET write met_pt = 0, and say so in the manifest's notes)."""
    import awkward as ak

    if len(events) == 0 or "met_pt" not in ak.fields(events):
        return False
    return bool(np.any(ak.to_numpy(events["met_pt"]) != 0))


def _build_event_level(cfg: ObservablesConfig, events) -> dict:
    from darkshower.represent.config import met_column
    from darkshower.represent.observables import event_level_table

    cols = list(cfg.columns or [])
    need_met = [c for c in cols if met_column(c)]
    if need_met and len(events) and not has_met(events):
        raise DatasetError(
            f"representation observables (level event): columns {need_met} need the missing transverse momentum, "
            "but these events have none (met_pt is 0 everywhere or absent; formats such as LHCO, h5-4vec and "
            "h5-constituents carry no MET). Fix: score data with MET, or train on this kind of data: the run then "
            "leaves the MET columns out (see left_out in its config.yaml)")
    df = event_level_table(events, int(cfg.max_jets or 2), cfg.use_weights, cfg.zcut, cfg.sd_beta, cfg.r0,
                           cfg.tau_beta, cfg.ecf_groomed)
    if df.attrs.get("n_without_jets"):
        log.info("observables (level event): %d events without any jet left out", df.attrs["n_without_jets"])
    return {"x": df[cols].to_numpy(np.float32), "event_id": df.event_id.to_numpy(), "names": cols}


def has_constituents(events) -> bool:
    """Whether any jet of ``events`` has constituents (formats such as CMS TreeMaker store jets without them)."""
    import awkward as ak

    if len(events) == 0 or "jets" not in ak.fields(events) or "constituents" not in ak.fields(events["jets"]):
        return False
    return int(ak.sum(ak.num(events["jets"]["constituents"], axis=2))) > 0


def jets_without_constituents(events) -> bool | None:
    """Whether the jets of ``events`` come without constituents (no jet has any: a format such as CMS TreeMaker);
    None when the events have no jet to tell from (an empty sample, or one the jet selection emptied)."""
    import awkward as ak

    if len(events) == 0 or "jets" not in ak.fields(events) or not int(ak.sum(ak.num(events["jets"], axis=1))):
        return None
    return not has_constituents(events)


def unavailable_without_constituents(columns, events) -> list[str]:
    """The observables ``columns`` (jet columns, ``j{i}_<column>`` slots or per-event columns) that jets without
    constituents cannot give: not the four-vector nor stored by the format (:mod:`darkshower.represent.stored`),
    and the event shape / multiplicities of the constituents (unless the events carry their particles)."""
    import awkward as ak

    from darkshower.represent.common import event_collection
    from darkshower.represent.config import slot_column
    from darkshower.represent.stored import CONSTITUENT_EVENT_COLUMNS, available_without_constituents

    jet_fields = ak.fields(events["jets"]) if "jets" in ak.fields(events) else []
    avail = set(available_without_constituents(jet_fields))
    from_jets = len(events) == 0 or event_collection(events) == "jets"
    out = []
    for c in columns:
        sc = slot_column(c)
        base = sc[1] if sc else c
        if base in OBS_JET_COLUMNS and base not in avail:
            out.append(c)
        elif not sc and c in CONSTITUENT_EVENT_COLUMNS and (from_jets or c == "n_event_constituents"):
            out.append(c)
    return out


#: jet observables that need particle charges/types (0 everywhere on data whose constituents are untyped)
TYPED_COLUMNS = ("n_charged",)


def has_untyped_constituents(events) -> bool:
    """Whether ``events`` have jet constituents whose particle types are unknown (``type`` -1 everywhere, as
    the importers of formats without particle types write): charge-based observables are 0 there."""
    import awkward as ak

    if len(events) == 0 or "jets" not in ak.fields(events) or "constituents" not in ak.fields(events["jets"]):
        return False
    cons = events["jets"]["constituents"]
    if int(ak.sum(ak.num(cons, axis=2))) == 0:
        return False
    if "type" not in ak.fields(cons):
        return True
    return not bool(np.any(ak.to_numpy(ak.flatten(cons["type"], axis=None)) >= 0))


def typed_column(c: str) -> bool:
    """Whether observables column ``c`` (``n_charged`` or an event-level slot's ``j1_n_charged``) needs types."""
    return c in TYPED_COLUMNS or any(c.startswith("j") and c.endswith("_" + t) and c[1:-len(t) - 1].isdigit()
                                     for t in TYPED_COLUMNS)


def adapt_to_data(config, events, source: str | None = None):
    """The representation ``config`` fitted to what a dataset has (``events``: a sample of it, e.g. its first
    chunk): an observables config leaves out the columns the data cannot give and lists them in ``left_out``
    (a warning says so) — at event level the MET columns on events without MET, at either level the
    charge-based columns (:data:`TYPED_COLUMNS`) on jets whose constituents have no particle types. An event
    image config with ``collection: auto`` gets the collection the data have (``particles``, else ``jets``, with a
    warning that the images then hold only the jet constituents), so a run scores the collection it trained on.
    Other configs come back unchanged."""

    from darkshower.represent.config import met_column

    cfg = parse_representation(config)
    if isinstance(cfg, EventImageConfig) and cfg.collection == "auto":  # the fields say it, even of an empty sample
        from darkshower.represent.common import event_collection

        used = event_collection(events)
        if used == "jets":
            log.warning(
                "%s: no `particles` collection, so the event images hold only the constituents of the stored jets "
                "(soft, unclustered particles are missing); generate with `store_particles: true` for whole-event "
                "images. Recorded as representation.collection = jets in the run config", source or "the data")
        return cfg.model_copy(update={"collection": used})
    if not isinstance(cfg, ObservablesConfig) or len(events) == 0:
        return cfg  # an empty sample (e.g. a first chunk the jet selection empties) says nothing about the values
    cols = list(cfg.columns) if cfg.columns is not None else _default_columns(cfg)
    ev_cols = list(cfg.event_columns or [])
    why = []
    drop: list[str] = []
    if cfg.level == "event" and not has_met(events):
        met = [c for c in [*cols, *ev_cols] if met_column(c)]
        if met:
            drop += met
            why.append(f"no MET (met_pt is 0 everywhere): {', '.join(dict.fromkeys(met))}")
    if jets_without_constituents(events):
        gone = list(dict.fromkeys(unavailable_without_constituents([*cols, *ev_cols], events)))
        if gone:
            drop += gone
            why.append("jets without constituents (their four-vector and the observables the format stores per "
                       f"jet are used): {', '.join(gone)}")
    if has_untyped_constituents(events):
        typed = [c for c in cols if typed_column(c)]
        if typed:
            drop += typed
            why.append(f"no particle types (constituent type -1 everywhere): {', '.join(typed)}")
    if not drop:
        return cfg
    drop = list(dict.fromkeys(drop))
    data = cfg.model_dump(mode="json")
    data["left_out"] = list(dict.fromkeys([*cfg.left_out, *drop]))
    data["columns"] = [c for c in cols if c not in drop]
    if cfg.level == "event":
        data["event_columns"] = [c for c in ev_cols if c not in drop]
    if not data["columns"]:
        raise DatasetError(f"{source or 'the data'}: no column of the observables representation is left once "
                           f"{drop} are left out ({'; '.join(why)}); add other observables to "
                           "representation.columns (e.g. [mass, n_constituents, pt])")
    log.warning(
        "%s: the representation leaves out what the data cannot give (%s); recorded as representation.left_out "
        "in the run config", source or "the data", "; ".join(why))
    return parse_representation(data)


def _empty_reason(cfg, out) -> tuple[int, str, str] | None:
    """(number of samples, what is empty, the fix) when every sample is empty, else None."""
    data_fix = "check that the dataset's jets have constituents (pt, eta, phi, e)"
    if isinstance(cfg, ConstituentsConfig):
        n = len(out["mask"])
        return (n, "no jet has a constituent", data_fix) if n and not out["mask"].any() else None
    if isinstance(cfg, ImageConfig):
        n = len(out["x"])
        return (n, "every image is all zero: no constituent of the channels' types lies within "
                   f"half_width={cfg.half_width} of the {'jet axis (the jets eta, phi)' if cfg.centre == 'axis' else 'centroid'}",
                data_fix + ", that the jets' eta/phi are filled (or use centre \"centroid\"), and the channels "
                           "(channels \"all\" takes every type)") if n and not out["x"].any() else None
    if isinstance(cfg, EventImageConfig):
        sp = out["sparse"]
        n = len(sp)
        return (n, f"every event image is all zero: no candidate of the channels' types within |eta| < {cfg.eta_max}",
                data_fix + " and the channels (channels \"all\" takes every type)") if n and not np.any(sp.value) else None
    if isinstance(cfg, LundConfig):
        g = out["graphs"]
        n = len(g)
        return (n, "no jet has two constituents, so no Lund tree has a node",
                data_fix + ", or use another representation") if n and not g.node_counts.any() else None
    if isinstance(cfg, ObservablesConfig):  # event-level columns (met_pt, mt, ...) need no constituents
        n = len(out["x"])
        return (n, "every selected column is 0 for every jet",
                data_fix + ", or select columns that do not need them (columns: [met_pt, mt, ...])"
                ) if n and not out["x"].any() else None
    return None  # pragma: no cover


def _n_inputs(cfg, events) -> int | None:
    """Number of constituents (particles for event images from a particle collection) in ``events``;
    None when it cannot be told. Only called on the error path."""
    import awkward as ak

    from darkshower.represent.common import event_collection

    try:
        fields = ak.fields(events)
        if isinstance(cfg, EventImageConfig) and event_collection(events, cfg.collection) != "jets":
            return int(ak.sum(ak.num(events[event_collection(events, cfg.collection)], axis=1)))
        if "jets" in fields:
            return int(ak.sum(ak.num(events["jets"]["constituents"], axis=2)))
        return int(ak.sum(ak.num(events["constituents"], axis=1)))
    except Exception:
        return None


def _check_not_empty(cfg, out, events, source) -> None:
    why = _empty_reason(cfg, out)
    if why is None:
        return
    n, reason, fix = why
    where = f"dataset {source}" if source else "the input events"
    if _n_inputs(cfg, events) == 0:
        reason = "the jets have no constituents (jets.constituents is empty everywhere)"
        fix = ("import a format with jet constituents (pfnano, delphes, h5-4vec, ...) or generate events"
               + (", or select event-level columns (met_pt, mt, ...)" if isinstance(cfg, ObservablesConfig) else ""))
    raise DatasetError(f"{where}: representation '{cfg.kind}' is empty for all {n} samples ({reason}), so it "
                       f"cannot be built: a model trained or scored on it would see nothing. Fix: {fix}")


def fit_standardizer(config, events):
    """Fit point-cloud standardization statistics on ``events``; returns an updated config."""
    from darkshower.represent.constituents import Standardizer, point_clouds

    cfg = parse_representation(config)
    assert isinstance(cfg, ConstituentsConfig), "standardization applies to kind='constituents'"
    b = jet_batch(events, cfg.max_jets, cfg.use_weights)
    pc = point_clouds(b, cfg.n_constituents, cfg.centre, cfg.rotate, cfg.flip, cfg.displacement)
    return cfg.model_copy(update={"standardizer": Standardizer.fit(pc).to_dict()})
