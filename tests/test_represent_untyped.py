"""Constituents of unknown type (-1, as h5-4vec / h5-constituents / lhco imports have) and empty representations.

Unknown types go into the type-agnostic channels ("all"), a type-specific channel on such data
is an error naming the channel, and a representation that is empty for every sample raises
(instead of an image autoencoder scoring every jet with the same constant).
"""

from __future__ import annotations

import re

import awkward as ak
import h5py
import numpy as np
import pytest

from darkshower.errors import ConfigError, DarkshowerError, DatasetError
from darkshower.io import import_dataset
from darkshower.represent import build, event_images, jet_images, point_clouds
from darkshower.represent.toys import toy_jets


def _write_4vec(path, n=40, p=12, seed=3):
    """Two jets per event as (px, py, pz, E) of up to p candidates; zero rows are padding."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as h:
        for name, eta0, phi0 in (("jet1_PFCands", 0.5, 0.0), ("jet2_PFCands", -0.5, 3.0)):
            k = rng.integers(3, p, n)
            pt = rng.exponential(20, (n, p)) + 1
            eta = rng.normal(eta0, 0.2, (n, p))
            phi = rng.normal(phi0, 0.2, (n, p))
            v = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], axis=-1)
            v[np.arange(p)[None, :] >= k[:, None]] = 0
            h.create_dataset(name, data=v.astype(np.float32))
    return path


@pytest.fixture(scope="module")
def untyped(tmp_path_factory):
    d = tmp_path_factory.mktemp("untyped")
    ds = import_dataset("h5-4vec", [_write_4vec(d / "a.h5")], d / "ds")
    ev = ds.arrays()
    types = ak.to_numpy(ak.flatten(ev.jets.constituents["type"], axis=None))
    assert len(types) > 0 and (types == -1).all()  # what the importer writes; the premise of these tests
    return ev


def _in_window_pt(ev, half_width):
    j = ak.flatten(ev.jets[:, :2], axis=1)
    c = j.constituents
    deta = c.eta - j.eta
    dphi = (c.phi - j.phi + np.pi) % (2 * np.pi) - np.pi
    inwin = (abs(deta) < half_width) & (abs(dphi) < half_width)
    return ak.to_numpy(ak.sum(c.pt[inwin], axis=1))


def test_all_channel_takes_constituents_of_unknown_type(untyped):
    im = jet_images(untyped, n_pixels=16, half_width=0.8, channels="all", normalize=False, max_jets=2)
    tot = _in_window_pt(untyped, 0.8)
    assert (tot > 0).all()
    np.testing.assert_allclose(im.images[:, 0].sum(axis=(1, 2)), tot, rtol=1e-5)
    norm = jet_images(untyped, n_pixels=16, channels="all", max_jets=2)
    np.testing.assert_allclose(norm.images.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    # a channel listing every type is type-agnostic too
    named = jet_images(untyped, n_pixels=16, channels={"everything": [4, 3, 2, 1, 0]}, normalize=False, max_jets=2)
    np.testing.assert_array_equal(named.images, im.images)


@pytest.mark.parametrize("channels, name", [("charged_neutral", "charged"), ("all_charged_neutral", "charged"),
                                            ({"ecal": [3]}, "ecal"), ([[0, 1, 2, 3]], "0+1+2+3")])
def test_type_specific_channel_on_untyped_data_is_an_error(untyped, channels, name):
    with pytest.raises(ConfigError, match=rf"image channel '{re.escape(name)}' selects candidate types .* have no type "
                                          r"\(type -1.*Use channels \"all\""):
        jet_images(untyped, channels=channels)


def test_event_images_of_untyped_data(untyped):
    with pytest.raises(ConfigError, match=r"image channel 'tracks' selects candidate types \[0, 1, 2\]"):
        event_images(untyped)  # default channels: tracks / ecal / hcal
    sp = event_images(untyped, channels="all", eta_max=2.5)
    c = untyped.jets.constituents
    want = ak.to_numpy(ak.sum(ak.sum(c.pt * (abs(c.eta) < 2.5), axis=-1), axis=-1))
    got = np.add.reduceat(sp.value.astype(np.float64), sp.offsets[:-1]) if len(sp.value) else np.zeros(len(sp))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_event_images_of_a_collection_without_type_field():
    ev = ak.Array([{"event_id": 7, "jets": [],
                    "particles": [{"pt": 10.0, "eta": 0.1, "phi": 0.2}, {"pt": 5.0, "eta": -1.0, "phi": 3.0}]}])
    sp = event_images(ev, n_eta=10, n_phi=10, channels="all")
    assert sp.collection == "particles" and sp.value.sum() == pytest.approx(15.0)
    with pytest.raises(ConfigError, match="image channel 'tracks'"):
        event_images(ev, n_eta=10, n_phi=10)  # was: everything silently in the tracks channel


def test_out_of_range_type_codes_count_as_unknown():
    jets = toy_jets(4, seed=5)
    c = jets.constituents
    odd = ak.with_field(jets, ak.with_field(c, ak.values_astype(ak.full_like(c.pt, 7), np.int8), "type"),
                        "constituents")
    a = jet_images(jets, channels="all", normalize=False)
    b = jet_images(odd, channels="all", normalize=False)
    np.testing.assert_allclose(a.images, b.images)
    with pytest.raises(ConfigError, match="image channel 'neutral'"):
        jet_images(odd, channels={"neutral": [3, 4]})


def test_point_clouds_keep_untyped_constituents_with_a_zero_one_hot(untyped):
    pc = point_clouds(untyped, n_constituents=20, max_jets=2)
    n = ak.to_numpy(ak.flatten(ak.num(untyped.jets[:, :2].constituents, axis=2)))
    np.testing.assert_array_equal(pc.mask.sum(axis=1), np.minimum(n, 20))
    onehot = [i for i, f in enumerate(pc.names) if f.startswith("is_")]
    assert len(onehot) == 5
    assert not pc.features[..., onehot].any()
    assert (pc.features[pc.mask][:, pc.names.index("log_pt")] > 0).all()


def test_build_image_of_untyped_data_is_not_constant(untyped):
    out = build({"kind": "image", "n_pixels": 16}, untyped, source="a.h5")
    x = out["x"].reshape(len(out["x"]), -1)
    assert x.any(axis=1).all()
    assert np.unique(x, axis=0).shape[0] == len(x)  # jets differ, so must their images


def _no_constituents(n=5):
    """Events with two jets each whose constituent lists are empty (typed, as read from a dataset)."""
    c = {"pt": 1.0, "eta": 0.2, "phi": 1.0, "e": 1.0, "charge": 0, "type": 0}
    jet = {"pt": 300.0, "eta": 0.2, "phi": 1.0, "mass": 20.0, "constituents": [c]}
    ev = ak.Array([{"event_id": i, "met_pt": 10.0, "met_phi": 0.0, "jets": [jet, jet]} for i in range(max(n, 1))])[:n]
    return ak.with_field(ev, ak.with_field(ev.jets, ev.jets.constituents[:, :, :0], "constituents"), "jets")


@pytest.mark.parametrize("rep", [{"kind": "constituents", "n_constituents": 8}, {"kind": "image", "n_pixels": 8},
                                 {"kind": "event_image", "n_eta": 8, "n_phi": 8, "channels": "all"},
                                 {"kind": "lund"}])
def test_build_of_an_all_empty_representation_raises(rep):
    with pytest.raises(DatasetError, match=rf"dataset /data/imported: representation '{rep['kind']}' is empty for "
                                           r"all \d+ samples \(the jets have no constituents.*\), so it cannot be "
                                           r"built.*Fix: import a format with jet constituents"):
        build(rep, _no_constituents(), source="/data/imported")
    assert issubclass(DatasetError, DarkshowerError)


def test_observables_of_jets_without_constituents_and_nothing_stored():
    """Jets without constituents and without stored observables give their four-vector; asking for more is
    one error naming the columns (represent/stored.py)."""
    with pytest.raises(DatasetError, match=r"dataset /data/imported: the jets have no constituents.*the observables "
                                           r"\['tau21', 'n2'\] cannot be computed; these jets give \['pt', 'eta', "
                                           r"'phi', 'mass'\].*Fix: leave the others out"):
        build({"kind": "observables", "columns": ["mass", "tau21", "n2"]}, _no_constituents(), source="/data/imported")
    x = build({"kind": "observables", "columns": ["pt", "mass"]}, _no_constituents())["x"]
    assert x.tolist() == [[300.0, 20.0]] * 10


def test_build_image_with_jets_far_from_their_constituents_raises():
    jets = toy_jets(6, seed=1)
    far = ak.with_field(jets, jets.eta + 3.0, "eta")  # jet axis 3 units away: every image is empty
    with pytest.raises(DatasetError, match=r"the input events: representation 'image' is empty for all 6 samples "
                                           r"\(every image is all zero"):
        build({"kind": "image"}, far)
    assert build({"kind": "image", "centre": "centroid"}, far)["x"].any()


def test_build_with_some_empty_samples_or_no_samples_is_fine():
    jets = toy_jets(4, seed=2)
    empty = _no_constituents(1).jets[0]
    mixed = ak.concatenate([empty[["pt", "eta", "phi", "mass", "constituents"]], jets[["pt", "eta", "phi", "mass", "constituents"]]])
    out = build({"kind": "image", "n_pixels": 8}, mixed)
    assert not out["x"][:2].any() and out["x"][2:].any()
    # event-level observables need no constituents; the jet mass comes from the jet record
    ev = build({"kind": "observables", "columns": ["met_pt", "mass"]}, _no_constituents())
    assert ev["x"][:, 0].tolist() == [10.0] * 10 and ev["x"][:, 1].tolist() == [20.0] * 10
    none = _no_constituents(0)
    assert len(build({"kind": "lund"}, none)["graphs"]) == 0
