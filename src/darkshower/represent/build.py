"""One entry point: build the configured representation of a batch of events as numpy arrays."""

from __future__ import annotations

import numpy as np

from darkshower.represent.config import (
    ConstituentsConfig,
    EventImageConfig,
    ImageConfig,
    LundConfig,
    ObservablesConfig,
    parse_representation,
)
from darkshower.represent.common import jet_batch


def build(config, events) -> dict:
    """Representation of ``events`` as a dict of arrays with one leading sample axis
    (``x``, plus ``mask`` for point clouds), except Lund graphs (a LundGraphs under ``graphs``)
    and event images (a SparseEventImages under ``sparse``). Always includes ``event_id``
    (and ``jet_idx`` for jet-level kinds)."""
    cfg = parse_representation(config)
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


def fit_standardizer(config, events):
    """Fit point-cloud standardization statistics on ``events``; returns an updated config."""
    from darkshower.represent.constituents import Standardizer, point_clouds

    cfg = parse_representation(config)
    assert isinstance(cfg, ConstituentsConfig), "standardization applies to kind='constituents'"
    b = jet_batch(events, cfg.max_jets, cfg.use_weights)
    pc = point_clouds(b, cfg.n_constituents, cfg.centre, cfg.rotate, cfg.flip, cfg.displacement)
    return cfg.model_copy(update={"standardizer": Standardizer.fit(pc).to_dict()})
