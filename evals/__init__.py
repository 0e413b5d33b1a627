"""synalign.evals: downstream evaluation, benchmarks, the generator's DSPy metric and prompt optimisation.

Among its modules: :mod:`synalign.evals.metrics` (``GenerationMetric``: label fidelity, attribute adherence,
novelty, MMD² drop) and :mod:`synalign.evals.optimize` (``optimize``, behind ``synalign optimize``).
Nothing is imported here, so ``import synalign.evals`` stays light.
"""
