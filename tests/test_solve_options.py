"""`hh.simulate`'s options: the `hh.Batching` option object, the deprecated spellings it
replaces (they warn and give the same numbers), options that do not apply to the model
(refused, naming them), one failure table for both solvers, and the module layout the
dispatcher rests on (no import cycle, no private name imported across modules)."""

from __future__ import annotations

import ast
import pathlib
import re
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hh_jax as hh
from hh_jax._solve_setup import FAILURES

P = hh.presets.hh1952()
BATCH = hh.presets.hh1952(gNa=jnp.array([100.0, 120.0, 140.0]))
STEP = hh.Step(start=1.0, stop=9.0, amplitude=10.0)
TS = jnp.linspace(0.0, 10.0, 101)
PACKAGE = pathlib.Path(hh.__file__).parent


def network():
    pop = hh.Population(P, size=2)
    edges = (jnp.asarray([0, 1]), jnp.asarray([1, 0]))
    return hh.Network({"E": pop}, {"ee": hh.Projection("E", "E", hh.ExpSynapse(tau=5.0, E=0.0), 0.05, edges)})


def test_batching_defaults_and_fields():
    b = hh.Batching()
    assert (b.chunk_size, b.devices, b.per_neuron) == (None, None, False)
    assert b.chosen_devices() == tuple(jax.devices())
    assert hh.Batching(devices=[jax.devices()[0]]).devices == (jax.devices()[0],)


@pytest.mark.solve
@pytest.mark.parametrize(
    "old, new",
    [
        (dict(chunk_size=2), hh.Batching(chunk_size=2)),
        (dict(steps="per_neuron"), hh.Batching(per_neuron=True)),
        (dict(steps="shared", devices=jax.devices()), hh.Batching(devices=jax.devices())),
    ],
)
def test_old_batch_keywords_warn_and_give_the_same_trace(old, new):
    with pytest.warns(DeprecationWarning, match=r"hh\.Batching"):
        before = hh.simulate(BATCH, STEP, t1=10.0, ts=TS, save="V", **old)
    after = hh.simulate(BATCH, STEP, t1=10.0, ts=TS, save="V", batching=new)
    np.testing.assert_array_equal(np.asarray(before.V), np.asarray(after.V))


@pytest.mark.solve
def test_simulate_spikes_sampling_keywords_warn_and_change_nothing():
    """`sample_dt` (and its older name `dt`) no longer has an effect (spikes are found on
    the solver's steps): both warn, and the spikes are those of a call without them."""
    kwargs = dict(t1=10.0, max_spikes=4)
    with pytest.warns(DeprecationWarning) as caught:
        before = hh.simulate_spikes(BATCH, STEP, dt=0.05, steps="per_neuron", **kwargs)
    messages = " ".join(str(w.message) for w in caught)
    assert "`dt=`" in messages and "no effect" in messages and "hh.Batching(per_neuron=True)" in messages
    with pytest.warns(DeprecationWarning, match="`sample_dt=`.*no effect"):
        sampled = hh.simulate_spikes(BATCH, STEP, sample_dt=0.05, batching=hh.Batching(per_neuron=True), **kwargs)
    after = hh.simulate_spikes(BATCH, STEP, batching=hh.Batching(per_neuron=True), **kwargs)
    for other in (before, sampled):
        np.testing.assert_array_equal(np.asarray(other.times), np.asarray(after.times))
        np.testing.assert_array_equal(np.asarray(other.counts), np.asarray(after.counts))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: hh.simulate(P, STEP, t1=5.0, steps="each"), "`steps`"),
        (lambda: hh.simulate(P, STEP, t1=5.0, chunk_size=0), "chunk_size"),
    ],
)
def test_bad_old_spellings_still_name_the_keyword(call, match):
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "kwargs, names",
    [
        (dict(max_spikes=8), ["max_spikes"]),  # silently ignored for a neuron before
        (dict(max_active=8), ["max_active"]),
        (dict(init={"E.V": -60.0}), ["init"]),
        (dict(dt=0.1, max_spikes=8), ["dt", "max_spikes"]),
    ],
)
def test_network_options_are_refused_for_a_neuron(kwargs, names):
    with pytest.raises(ValueError, match="networks only") as info:
        hh.simulate(P, STEP, t1=5.0, **kwargs)
    for name in names:
        assert f"`{name}`" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(batching=hh.Batching(chunk_size=2)), "batching"),
        (dict(chunk_size=2), "chunk_size"),
        (dict(devices=jax.devices()), "devices"),
        (dict(steps="per_neuron"), "steps"),
    ],
)
def test_batch_options_are_refused_for_a_network(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`.*not to a network"):
        hh.simulate(network(), None, t1=5.0, **kwargs)


def test_max_active_needs_fixed_steps():
    with pytest.raises(ValueError, match="max_active.*dt"):
        hh.simulate(network(), None, t1=5.0, max_active=8)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: hh.simulate(P, STEP, t1=5.0, chunk=2), TypeError, "chunk"),
        (lambda: hh.simulate(P, STEP, t1=5.0, batching=hh.Batching(), chunk_size=2), TypeError, "not both"),
        (lambda: hh.simulate(P, STEP, t1=5.0, batching={"chunk_size": 2}), TypeError, "hh.Batching"),
        (lambda: hh.simulate_spikes(P, STEP, t1=5.0, dt=0.1, sample_dt=0.1), TypeError, "not both"),
        (lambda: hh.simulate(network(), None, t1=5.0, chunk=2), TypeError, "chunk"),
    ],
)
def test_unknown_or_doubled_keywords(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_return_annotation_names_both_traces():
    hints = typing.get_type_hints(hh.simulate)
    assert set(typing.get_args(hints["return"])) == {hh.Trace, hh.NetworkTrace}


@pytest.mark.solve
def test_one_failure_table_for_neurons_and_networks():
    with pytest.raises(hh.SolverError, match=re.escape("hh.simulate: " + FAILURES[0][0])) as neuron:
        hh.simulate(P, hh.Step(start=1.0, amplitude=10.0), t1=50.0, max_steps=20)
    with pytest.raises(hh.SolverError, match=re.escape("hh.simulate: " + FAILURES[0][0])) as net:
        hh.simulate(network(), {"E": hh.Step(start=1.0, amplitude=10.0)}, t1=50.0, max_steps=20)
    assert "check the parameters" in str(neuron.value)
    assert "fixed steps" in str(net.value)
    with pytest.raises(hh.SolverError, match=re.escape("hh.simulate_spikes: " + FAILURES[0][0])):
        hh.simulate_spikes(P, hh.Step(start=1.0, amplitude=10.0), t1=50.0, max_steps=20)


def _imports(path: pathlib.Path):
    """(module imported, names imported) for each relative import of a package module."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            yield node.module or "", [alias.name for alias in node.names]


def test_solvers_share_a_setup_module_without_an_import_cycle():
    solve = {module for module, _ in _imports(PACKAGE / "_solve.py")}
    network_solve = {module for module, _ in _imports(PACKAGE / "_network_solve.py")}
    assert "_solve_setup" in solve and "_solve_setup" in network_solve
    assert not any(m.startswith("_network") or m == "_simulate" for m in solve)
    assert not any(m in ("_solve", "_simulate") for m in network_solve)
    setup = {module for module, _ in _imports(PACKAGE / "_solve_setup.py")}
    assert not setup & {"_solve", "_network_solve", "_network", "_simulate"}


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for module, names in _imports(path):
            if module:  # `from . import _submodule` imports a module, not a private name
                offenders += [f"{path.relative_to(PACKAGE)}: {module}.{n}" for n in names if n.startswith("_")]
    assert not offenders, offenders
