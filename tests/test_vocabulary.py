"""One word per idea (issue 17): the new names work, and the old spellings still work for one
release, warn with a `DeprecationWarning` naming the new one, and give identical results."""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh


def _same(a, b):
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    return tree_a == tree_b and all(np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b))


def test_every_public_name_still_exists():
    for name in hh.__all__:
        assert hasattr(hh, name), name
    for name in hh.presets.__all__:
        assert callable(getattr(hh.presets, name)), name


# --------------------------------------------------------------------------- presets


def test_hh1952_preset_is_the_squid_axon_with_rest_at_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        p = hh.presets.hh1952()
    assert isinstance(p, hh.HodgkinHuxley)
    assert float(p.ENa) == 115.0 and float(p.EK) == -12.0 and float(p.vshift) == 65.0
    assert float(p.resting_potential()) == pytest.approx(0.0)


@pytest.mark.parametrize("overrides", [{}, {"gNa": 100.0, "gK": 40.0}, {"gNa": jnp.linspace(80.0, 160.0, 5)}])
def test_old_preset_name_warns_and_gives_the_same_model(overrides):
    with pytest.warns(DeprecationWarning, match=r"hh\.presets\.hh1952\(\)"):
        old = hh.presets.seed(**overrides)
    assert _same(old, hh.presets.hh1952(**overrides))


def test_old_preset_name_keeps_its_error_messages():
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="gNaa"):
        hh.presets.seed(gNaa=1.0)
    with pytest.raises(ValueError, match=r"hh\.presets\.hh1952.*gNaa"):
        hh.presets.hh1952(gNaa=1.0)


def test_cobahh_returns_a_named_model_and_tuple_unpacking_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        model = hh.presets.cobahh(n=50, seed=3)
        assert isinstance(model, hh.presets.NetworkModel) and isinstance(model, eqx.Module)
        assert isinstance(model.network, hh.Network) and "P.V" in model.init
    with pytest.warns(DeprecationWarning, match=r"\.network.*\.init"):
        net, init = hh.presets.cobahh(n=50, seed=3)
    assert _same(net, model.network) and _same(init, model.init)
    with pytest.warns(DeprecationWarning):
        assert model[0] is model.network and model[1] is model.init
    # The random seed is `seed=` (an int) here as in hh.fit: the same seed, the same network.
    other = hh.presets.cobahh(n=50, seed=4)
    assert not _same(other.init, model.init)


# --------------------------------------------------------------------------- traces


def test_trace_reads_by_name_like_a_network_trace():
    ts = jnp.linspace(0.0, 5.0, 11)
    tr = hh.simulate(hh.presets.hh1952(), hh.Step(start=1.0, amplitude=10.0), t1=5.0, ts=ts)
    assert set(tr.values) == {"V", "n", "m", "h"}
    assert tr["V"] is tr.V and tr["n"] is tr.n and tr.values["m"] is tr.m
    with pytest.raises(KeyError, match="saved"):
        tr["q"]
    only_v = hh.simulate(hh.presets.hh1952(), None, t1=5.0, ts=ts, save="V")
    assert set(only_v.values) == {"V"}


def test_network_trace_values_and_learned_weights():
    rule = hh.STDP(A_plus=0.01, A_minus=0.012)
    pops = {"pre": hh.Population(hh.presets.neuron(), 1), "post": hh.Population(hh.presets.neuron(), 1)}
    projs = {"syn": hh.Projection("pre", "post", hh.ExpSynapse(), weight=[[0.05]], stdp=rule),
             "fixed": hh.Projection("pre", "post", hh.ExpSynapse(), weight=[[0.01]])}
    stim = {"pre": hh.Pulse(start=2.0, stop=2.5, amplitude=40.0),
            "post": hh.Pulse(start=6.0, stop=6.5, amplitude=40.0)}
    tr = hh.simulate(hh.Network(pops, projs), stim, t1=20.0, dt=0.025, save=("post.V", "syn.w"))
    assert set(tr.values) == {"post.V", "syn.w"} and tr["post.V"] is tr.values["post.V"]
    assert set(tr.weights) == {"syn"}  # only the plastic projection learns
    w = np.asarray(tr.weights["syn"])
    np.testing.assert_array_equal(w, tr.final["projections"]["syn"]["w"])
    np.testing.assert_array_equal(w, tr["syn.w"][..., -1])
    assert w[0, 0] > 0.05  # pre before post: potentiation


def test_cli_takes_the_new_preset_name_and_the_old_one(tmp_path):
    from hh_jax.cli import main

    runs = {}
    for name in ("hh1952", "seed"):
        out = tmp_path / f"{name}.npz"
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # the alias is the CLI's, silent
            assert main(["simulate", "--preset", name, "--set", "gNa=100", "--t1", "5",
                         "--stimulus", "step:start=1,stop=4,amplitude=10", "--out", str(out)]) == 0
        runs[name] = hh.load_trace(out)
    np.testing.assert_array_equal(runs["seed"].V, runs["hh1952"].V)
