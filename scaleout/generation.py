"""Generation requests fanned out over several OpenAI-compatible endpoints on Ray actors (issue 13, scale-out).

The one job of this module is a :class:`~synalign.backends.Generator` that spreads a batch of
:class:`~synalign.backends.GenerationRequest` over endpoints (several vLLM / llama.cpp / Ollama servers of the same
model): one Ray actor per base URL, each holding the generator that :func:`synalign.agents.backend.
build_llm_backend` builds for its endpoint (its own :class:`~synalign.agents.runner.LLMRunner`: retries, adaptive
concurrency, response cache, trace). The batch is cut into chunks of at most ``chunk_size`` requests (and at
least one chunk per endpoint), which ``ray.util.ActorPool.map`` hands to whichever actor is free (a slow endpoint
gets fewer chunks) and returns in order; inside an actor a chunk runs ``max_concurrency`` requests at a time, as
locally.

Same results as the local path: a request's texts depend only on the request (its seed, and the top-up seeds
derived from it) and on the endpoint's replies, so endpoints that serve the same model deterministically (the same
weights and a seeded sampler, or temperature 0) give what one endpoint gives; ``tests/test_ray.py`` checks it with
two scripted servers against the local generator. The response cache key holds the base URL, so each endpoint's
replies are cached separately.

The actors run wherever Ray places them: each endpoint must be reachable from the cluster, the API key must be
in the workers' environment (``api_key_env``; Ray passes the driver's environment to a local cluster only when it
is started), and each actor writes its LLM trace under ``run_dir/ray/endpoint-I`` on its own node.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from synalign.agents.settings import LLMSettings
from synalign.agents.usage import merge_usage
from synalign.backends import Backend, Generation, GenerationRequest
from synalign.config import RunConfig
from synalign.errors import InputError
from synalign.scaleout.embed import require_ray

__all__ = ["RayGenerator", "ray_backend"]

_log = logging.getLogger("synalign.agents")


class _EndpointWorker:
    """Ray actor: the LLM backend of one endpoint; :meth:`generate` runs a chunk of requests on its generator."""

    def __init__(self, config: RunConfig, settings: LLMSettings | None, base_url: str, run_dir: str | None) -> None:
        from synalign.agents.backend import build_llm_backend

        config = config.model_copy(update={"base_url": base_url})
        settings = replace(settings, base_url=base_url) if settings is not None else None
        self.error = ""
        try:
            self.backend = build_llm_backend(config, Path(run_dir) if run_dir else None, settings=settings)
        except InputError as exc:  # reported by ready(): one line for the driver, not an actor's death
            self.error = f"endpoint {base_url}: {exc}"

    def ready(self) -> str:
        """``""``, or why this endpoint's backend could not be built."""
        return self.error

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        return self.backend.generator.generate(requests)

    def usage(self) -> dict[str, Any]:
        return self.backend.usage() if not self.error else {}


class RayGenerator:
    """:class:`~synalign.backends.Generator` over Ray actors, one per OpenAI-compatible endpoint.

    Args:
        config: run configuration with ``llm="openai:MODEL"`` (its ``base_url`` is replaced per endpoint);
            ``llm_cache=False`` makes every request a call.
        endpoints: base URLs ending in ``/v1``, one actor each (at least one; duplicates are refused).
        run_dir: directory under which each actor writes its trace (``ray/endpoint-I``, node-local); None
            keeps no trace (a graph embedded in an app, ``RunConfig.out`` unset).
        settings: explicit :class:`~synalign.agents.settings.LLMSettings` (its ``base_url`` is replaced per
            endpoint); ``None`` = :meth:`LLMSettings.from_config` in each actor.
        chunk_size: at most this many requests per actor call (default: the settings' ``max_concurrency``, so
            an endpoint runs that many at once); a batch smaller than ``chunk_size × endpoints`` is cut into one
            chunk per endpoint.
        cpus_per_actor: CPUs Ray reserves per actor (the calls wait on the network: a quarter by default).

    Raises:
        InputError: Ray missing, no endpoints or a repeated one, a non-OpenAI ``--llm``, or what building an
            endpoint's backend raises (missing key, bad prompts file).
    """

    name = "ray-generator"

    def __init__(
        self,
        config: RunConfig,
        endpoints: Sequence[str],
        run_dir: Path | str | None,
        *,
        settings: LLMSettings | None = None,
        chunk_size: int | None = None,
        cpus_per_actor: float = 0.25,
    ) -> None:
        require_ray("RayGenerator")
        import ray

        urls = [str(u).rstrip("/") for u in endpoints]
        if not urls or len(set(urls)) != len(urls):
            raise InputError(f"RayGenerator needs one or more distinct endpoint URLs, got {list(endpoints)}")
        if config.llm.kind != "openai":
            raise InputError(f"RayGenerator fans out `llm` openai:MODEL endpoints, not `llm` {config.llm}")
        concurrency = settings.max_concurrency if settings is not None else max(1, config.max_concurrency)
        self.chunk_size = max(1, chunk_size or concurrency)
        self.endpoints = urls
        self._last: dict[str, Any] = {"by_endpoint": {}}
        worker = ray.remote(num_cpus=cpus_per_actor)(_EndpointWorker)
        # Any: Ray types an actor's methods (``a.ready.remote``) only under ``@ray.method``, and ray loads lazily here
        self._actors: list[Any] = [
            worker.remote(config, settings, url, str(Path(run_dir) / "ray" / f"endpoint-{i}") if run_dir else None)
            for i, url in enumerate(urls)
        ]
        errors = [e for e in ray.get([a.ready.remote() for a in self._actors]) if e]
        if errors:
            for actor in self._actors:
                ray.kill(actor)
            self._actors = []
            raise InputError(errors[0])
        _log.info("Ray generator over %d endpoint(s), %d request(s) per call", len(urls), self.chunk_size)

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        """One :class:`Generation` per request, in request order (chunks run on whichever endpoint is free).

        Raises:
            LLMError: a request failed after all retries at its endpoint.
            InputError: the generator was closed.
        """
        from ray.util import ActorPool

        if not self._actors:
            raise InputError("this RayGenerator was closed; build a new one")
        # at most chunk_size per call, and at least one chunk per endpoint when there are enough requests
        size = max(1, min(self.chunk_size, -(-len(requests) // len(self._actors))))
        chunks = [requests[i : i + size] for i in range(0, len(requests), size)]
        pool = ActorPool(list(self._actors))
        results = pool.map(lambda actor, chunk: actor.generate.remote(chunk), chunks)
        return [generation for chunk in results for generation in chunk]

    def usage(self) -> dict[str, Any]:
        """Usage counters of every endpoint added up (:func:`synalign.agents.usage.merge_usage`), with
        ``by_endpoint`` per URL; after :meth:`close`, the counters as they were then."""
        import ray

        if self._actors:
            snaps = ray.get([a.usage.remote() for a in self._actors])
            self._last = {**merge_usage(snaps), "by_endpoint": dict(zip(self.endpoints, snaps))}
        return self._last

    def close(self) -> None:
        """Stop the actors, keeping their final usage counters (idempotent)."""
        import ray

        if self._actors:
            self.usage()
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []


def ray_backend(
    config: RunConfig,
    endpoints: Sequence[str],
    run_dir: Path | str | None,
    *,
    settings: LLMSettings | None = None,
    chunk_size: int | None = None,
) -> Backend:
    """The run's LLM backend with generation fanned out on Ray: the summariser of the first endpoint's backend
    (one call per demonstration cluster, on the driver) and a :class:`RayGenerator` over ``endpoints``.

    Pass it to :func:`synalign.graphs.runner.run` as ``backend=``. Args as :class:`RayGenerator`.

    Raises:
        InputError: as :class:`RayGenerator`.
    """
    from synalign.agents.backend import build_llm_backend

    urls = list(endpoints)
    if not urls:
        raise InputError("ray_backend needs at least one endpoint URL")
    first = config.model_copy(update={"base_url": urls[0]})
    local = build_llm_backend(
        first, Path(run_dir) if run_dir else None,
        settings=replace(settings, base_url=urls[0]) if settings is not None else None,
    )
    generator = RayGenerator(config, urls, run_dir, settings=settings, chunk_size=chunk_size)

    def usage() -> dict[str, Any]:
        fanned = generator.usage()
        return {**merge_usage([local.usage(), fanned]), "by_endpoint": fanned["by_endpoint"]}

    def close() -> None:
        generator.close()
        local.close()

    info = {**local.info, "generator": "ray", "endpoints": generator.endpoints}
    return Backend(name=local.name, summarizer=local.summarizer, generator=generator, usage=usage, is_llm=True,
                   info=info, close=close)
