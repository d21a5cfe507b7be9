"""Whole-event quantities use the optional ``particles`` collection when the dataset has it."""

from __future__ import annotations

import awkward as ak
import numpy as np

from darkshower.represent import event_images
from darkshower.represent.observables import event_observables, observables_table
from darkshower.represent.toys import toy_events


def _with_particles(events, seed=0):
    """Toy events plus a ``particles`` collection: all jet constituents and extra soft isotropic ones."""
    rng = np.random.default_rng(seed)
    cons = ak.flatten(events.jets.constituents, axis=2)
    n = len(events)
    n_extra = rng.integers(20, 60, n)
    tot = int(n_extra.sum())
    pt = rng.exponential(2.0, tot) + 0.5
    eta = rng.uniform(-2.4, 2.4, tot)
    phi = rng.uniform(-np.pi, np.pi, tot)
    extra = ak.unflatten(ak.zip({
        "pt": pt.astype(np.float32), "eta": eta.astype(np.float32), "phi": phi.astype(np.float32),
        "e": (pt * np.cosh(eta)).astype(np.float32), "charge": np.ones(tot, np.int8),
        "pid": np.full(tot, 211, np.int32), "type": np.zeros(tot, np.int8),
        "d0": np.zeros(tot, np.float32), "r_prod": np.zeros(tot, np.float32),
    }), n_extra)
    keep = ak.fields(extra)
    dtype = {f: ak.to_numpy(ak.flatten(extra[f])).dtype for f in keep}
    cons = ak.zip({f: ak.values_astype(cons[f] if f in ak.fields(cons) else ak.zeros_like(cons.pt), dtype[f])
                   for f in keep})
    parts = ak.concatenate([cons, extra], axis=1)
    return ak.with_field(events, parts, "particles"), n_extra


def test_event_quantities_use_particles_when_present():
    events = toy_events(20, n_prongs=2, seed=3, n_constituents=(20, 40))
    with_p, n_extra = _with_particles(events)
    base = event_observables(events)
    new = event_observables(with_p)
    assert base.attrs["event_collection"] == "jets" and new.attrs["event_collection"] == "particles"
    # jet quantities unchanged; multiplicity counts all particles
    np.testing.assert_array_equal(new.n_event_constituents, base.n_event_constituents)
    np.testing.assert_array_equal(base.n_event_particles, base.n_event_constituents)
    np.testing.assert_array_equal(new.n_event_particles, base.n_event_constituents + n_extra)
    np.testing.assert_allclose(new.mt, base.mt)
    # isotropic soft particles make the event more spherical
    assert (new.sphericity > base.sphericity).all()
    assert ((new.aplanarity >= 0) & (new.aplanarity <= 0.5)).all()
    # forcing the jet constituents reproduces the fallback exactly
    forced = event_observables(with_p, event_collection="jets")
    np.testing.assert_allclose(forced.sphericity, base.sphericity)
    np.testing.assert_array_equal(forced.n_event_particles, base.n_event_particles)
    tab = observables_table(with_p)
    assert tab.attrs["event_collection"] == "particles"
    assert "n_event_particles" in tab.columns


def test_event_images_use_particles_when_present():
    events = toy_events(10, n_prongs=2, seed=4, n_constituents=(20, 40))
    with_p, _ = _with_particles(events, seed=1)
    a = event_images(events, channels="all")
    b = event_images(with_p, channels="all")
    c = event_images(with_p, channels="all", collection="jets")
    assert a.collection == "jets" and b.collection == "particles" and c.collection == "jets"
    np.testing.assert_array_equal(a.index, c.index)
    # every particle inside the acceptance lands in the images
    p = with_p.particles
    inwin = np.abs(ak.to_numpy(ak.flatten(p.eta))) < 2.5
    np.testing.assert_allclose(b.value.astype(np.float64).sum(), ak.to_numpy(ak.flatten(p.pt))[inwin].sum(), rtol=1e-4)
    assert b.value.sum() > a.value.sum()
    assert b.select([0, 2]).collection == "particles"


def test_event_image_collection_resolved_from_the_data(caplog):
    """``collection: auto`` becomes the collection the training data have and is recorded, with a warning when the
    images can only hold jet constituents; a run trained on particles refuses data without them."""
    import logging

    import pytest

    from darkshower.errors import ConfigError
    from darkshower.represent.build import adapt_to_data

    events = toy_events(10, n_prongs=2, seed=5, n_constituents=(20, 40))
    with_p, _ = _with_particles(events, seed=2)
    cfg = {"kind": "event_image", "n_eta": 16, "n_phi": 16}
    with caplog.at_level(logging.WARNING):
        jets = adapt_to_data(cfg, events, "qcd_jets_only")
    assert jets.collection == "jets"
    assert "qcd_jets_only" in caplog.text and "store_particles" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        parts = adapt_to_data(cfg, with_p, "qcd_with_particles")
    assert parts.collection == "particles" and not caplog.text
    # an empty sample (a first chunk the jet selection empties) still has the fields that decide it
    assert adapt_to_data(cfg, events[:0]).collection == "jets"
    assert adapt_to_data(cfg, with_p[:0]).collection == "particles"
    assert adapt_to_data({**cfg, "collection": "jets"}, with_p).collection == "jets"  # an explicit choice stays
    with pytest.raises(ConfigError, match="store_particles"):
        event_images(events, 16, 16, collection=parts.collection)
