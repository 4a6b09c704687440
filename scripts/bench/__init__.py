"""The parts of `scripts/benchmark.py`, by job.

- `references`: the case (NEURON's `hh` under a step) and its spike times from NEURON or scipy.
- `runner`: each case in its own process, timed the same way.
- `single`: the single-neuron cases (hh_jax, Jaxley, the gist's odeint) and their driver.
- `network`: the COBAHH network, hh_jax beside Brian2, and its driver.
- `report`: machine information, one-line rows and the markdown tables.
"""
