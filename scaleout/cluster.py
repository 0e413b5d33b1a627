"""``synalign run --ray``: the loop's three heavy steps on a Ray cluster (issue 21, item 6).

What runs where, given ``RunConfig.ray``:

- **embedding** (the real, held-out and validation sets, then each round's new texts):
  :class:`synalign.scaleout.embed.RayEmbedder`, an embedder whose cache misses are encoded by ``ray.data`` actors and
  whose cache stays the driver's (hits are read there, Ray's vectors are stored there);
- **the KMM screen**: the labels whose eligible pool is larger than the working set
  (:data:`synalign.kmm.NYSTROM_WORKING_SET`, 2,048 rows) get their weights from the Nyström screen on sharded
  actors (:func:`synalign.scaleout.align.ray_kmm_weights_by_label`, one set of shards per round); smaller pools, where
  both paths would solve the same exact problem on the driver, are solved there as locally. The selection then runs
  on the driver with these weights (``align(..., weights=...)``); the default ``filter`` selection does not read
  them, so its accepted set is the local path's;
- **generation** with ``--llm openai:MODEL --base-url URL[,URL...]``: one actor per endpoint
  (:func:`synalign.scaleout.generation.ray_backend`); the summariser calls the first endpoint from the driver.
  The embedded local LM and the EDA backend generate on the driver.

Everything else (the explorer, the divergences, the held-out check, the checkpoints and outputs) stays on the
driver, as locally.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import numpy as np

from synalign.backends import Backend
from synalign.config import RunConfig
from synalign.errors import InputError
from synalign.scaleout.embed import RayEmbedder, require_ray

__all__ = ["connect", "ray_embedder", "ray_generation_backend", "screen_weights"]

_log = logging.getLogger("synalign.graphs")

_CONNECT_TIMEOUT_S = 5.0
"""How long :func:`connect` waits for the head's port to answer before it says so (Ray itself retries for
minutes)."""


def connect(address: str) -> None:
    """Join the Ray cluster of ``--ray`` once per process (an already initialised Ray is used as it is).

    ``"auto"`` is ``ray.init()``: ``$RAY_ADDRESS``, else the cluster ``ray start`` began on this machine, else a
    new local one; an address is ``ray.init(address=...)``. An address whose port does not answer is refused
    first, even when Ray is already initialised. Ray Data's own progress bars are turned off (the run shows
    its own).

    Raises:
        InputError: Ray missing, the head does not answer, or ``ray.init`` fails.
    """
    require_ray("`ray`")
    import ray
    import ray.data

    if address != "auto":
        _check_reachable(address)  # seconds, where Ray would retry for minutes
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "auto" else address, logging_level=logging.ERROR,
                     log_to_driver=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            raise InputError(
                f"`ray` {address}: could not join the Ray cluster ({' '.join(str(exc).split())})"
            ) from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its per-dataset INFO lines and "progress bars off"
    resources = ray.cluster_resources()
    _log.info("Ray cluster: %d node(s), %g CPU(s), %g GPU(s)", len(ray.nodes()), resources.get("CPU", 0),
              resources.get("GPU", 0))


def _check_reachable(address: str) -> None:
    """One line, within seconds, when nothing listens at the head's ``HOST:PORT``."""
    host, _, port = address.rpartition("://")[2].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise InputError(
            f"`ray` {address}: no Ray head answers at {host}:{port} ({exc.strerror or exc}); start one there with "
            "'ray start --head', or use `ray` auto"
        ) from None


def ray_embedder(config: RunConfig) -> RayEmbedder:
    """The run's embedder with its cache misses encoded on the cluster (:class:`~synalign.scaleout.embed.RayEmbedder`,
    the model, truncation, cache and device of ``config``)."""
    return RayEmbedder(config.embedding_model, cache_dir=config.cache_dir, device=config.device,
                       max_seq_length=config.max_seq_length)


def ray_generation_backend(config: RunConfig) -> Backend | None:
    """Generation fanned out over ``config``'s endpoints (:func:`~synalign.scaleout.generation.ray_backend`),
    or None where there is nothing to fan out: a backend other than ``openai:MODEL``, or api.openai.com (no
    ``--base-url``); the run then builds its backend as locally.

    Raises:
        InputError: as :func:`~synalign.scaleout.generation.ray_backend` (an endpoint whose backend cannot
            be built, a missing extra or key).
    """
    if config.llm.kind != "openai" or not config.endpoints:
        return None
    from synalign.agents.backend import require_llm_extra
    from synalign.scaleout.generation import ray_backend

    require_llm_extra(f"`llm` {config.llm}")
    return ray_backend(config, config.endpoints, config.out)


def screen_weights(
    synthetic: np.ndarray,
    labels: list[str],
    real: np.ndarray,
    real_labels: list[str],
    *,
    bandwidth: float,
    eligible: np.ndarray | None,
    seed: int,
    device: str,
) -> np.ndarray | None:
    """KMM weights of the pool (per label, over its eligible rows), with the Nyström screen on Ray for the labels
    whose eligible pool exceeds the working set (one set of shard actors for all of them,
    :func:`synalign.scaleout.align.ray_kmm_weights_by_label`); None when no label does (the run then solves every
    label locally, bit for bit as without ``--ray``).

    Returns:
        (m,) float64, each label's eligible weights ≥ 0 and summing to 1, 0 for the ineligible rows: what
        :func:`synalign.alignment.align` takes as ``weights`` (with the same ``eligible``).
    """
    from synalign import kmm
    from synalign.scaleout.align import ray_kmm_weights_by_label

    lab = np.asarray(labels, dtype=object)
    real_lab = np.asarray(real_labels, dtype=object)
    ok = np.ones(len(lab), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    groups = {label: np.flatnonzero((lab == label) & ok) for label in dict.fromkeys(lab.tolist())}
    large = [rows for rows in groups.values() if len(rows) > kmm.NYSTROM_WORKING_SET]
    if not large:
        return None
    weights = np.zeros(len(lab))
    for label, rows in groups.items():  # as align solves them (a label without real rows: align refuses it)
        xr = real[real_lab == label]
        if 0 < len(rows) <= kmm.NYSTROM_WORKING_SET and len(xr):
            weights[rows] = kmm.kmm_weights(synthetic[rows], xr, bandwidth=bandwidth, device=device, seed=seed)
    rows = np.sort(np.concatenate(large))
    shards = _shards()
    ids, _, screened = ray_kmm_weights_by_label(
        _pool_dataset(rows, synthetic[rows], lab[rows], shards), real, real_labels, bandwidth=bandwidth, seed=seed,
        shards=shards, device=device,
    )
    weights[ids] = screened
    return weights


def _pool_dataset(ids: np.ndarray, vectors: np.ndarray, labels: np.ndarray, shards: int) -> Any:
    """Pool rows as a Ray Dataset (``id`` = row of the pool, ``label``, ``embedding``), in enough blocks for every
    shard."""
    import ray.data

    rows = np.asarray(vectors, dtype=np.float32)
    items = [
        {"id": int(i), "label": str(label), "embedding": row} for i, label, row in zip(ids, labels, rows, strict=True)
    ]
    # materialised: the shard actors then hold every free CPU, and a lazy Dataset would wait for one
    return ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * shards))).materialize()


def _shards() -> int:
    """Shard actors for the screen (one CPU each): one per free CPU of the cluster now, at least one (the
    generation actors of the run keep theirs), at most 64."""
    import ray

    return max(1, min(int(ray.available_resources().get("CPU", 0)), 64))
