"""synalign: distribution-matched LLM synthetic training data (SynAlign, Ren et al., WWW 2025, arXiv 2502.08661).

Core package: data model and IO, embeddings, GP explorer, divergences (MMD², Sinkhorn), alignment (kernel mean
matching + selection), the offline backend and the run config. Heavy dependencies are imported lazily, so
``import synalign`` is cheap. The core imports nothing above it: the LangGraph loop is
:func:`synalign.graphs.run`, the command line :mod:`synalign.app`.
"""

from __future__ import annotations

from synalign.config import RunConfig
from synalign.errors import InputError, SynalignError

try:  # one source of truth: the version in pyproject.toml, read from the installed package's metadata
    from importlib.metadata import PackageNotFoundError as _NotInstalled
    from importlib.metadata import version as _version

    __version__ = _version("synalign")
except _NotInstalled:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["RunConfig", "InputError", "SynalignError", "__version__"]
