"""synalign.artifacts: what a run leaves on disk, and everything that reads it back (no LangGraph here).

One concern per module:

- :mod:`~synalign.artifacts.rundir` — the run directory (:class:`~synalign.artifacts.rundir.RunDir`): its files,
  whether a folder is a run or finished, its config and summary, its lock, the clean-up of an overwritten run;
- :mod:`~synalign.artifacts.summary` — ``summary.json`` as a typed model (``RunSummary``);
- :mod:`~synalign.artifacts.report` / :mod:`~synalign.artifacts.report_sections` — the self-contained
  ``report.html`` and its sections;
- :mod:`~synalign.artifacts.datacard` — the dataset card (``README.md``) of a run;
- :mod:`~synalign.artifacts.export` — ``synalign export``: a finished run as Hugging Face datasets / files;
- :mod:`~synalign.artifacts.usage` — the run's LLM usage file (calls, tokens, cost).

Floor: above the core and the LLM floor (``agents``), below ``graphs``, which writes these files at the end of
each run, and ``app``, which exports them.
"""
