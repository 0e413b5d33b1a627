"""synalign.evals: downstream evaluation, benchmarks, the generator's DSPy metric and prompt optimisation.

Among its modules: :mod:`synalign.evals.metrics` (``GenerationMetric``: label fidelity, attribute adherence,
novelty, MMD² drop) and :mod:`synalign.evals.optimize` (``optimize``, behind ``synalign optimize``);
:mod:`synalign.evals.downstream` (``run_eval``, behind ``synalign eval``) with its data handling
(:mod:`~synalign.evals.taskdata`), selection strategies (:mod:`~synalign.evals.strategies`) and classifiers
(:mod:`~synalign.evals.classifiers`); :mod:`synalign.evals.explorer_eval` (demonstration coverage); the study
tables of ``synalign ablate`` (:mod:`~synalign.evals.ablation_eval`, :mod:`~synalign.evals.baselines_eval`).
The benchmark and study scripts are in ``evals/scripts/`` (not shipped; run as ``python evals/scripts/X.py``
from a checkout). Results: ``evals/RESULTS.md``.
Nothing is imported here, so ``import synalign.evals`` stays light.
"""
