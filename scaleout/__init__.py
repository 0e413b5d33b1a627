"""synalign.scaleout: the Ray adapters, together (``pip install 'synalign[ray]'``; nothing here runs without
``RunConfig.ray`` / ``--ray``).

- :mod:`~synalign.scaleout.embed` — embeddings with ``ray.data`` ``map_batches`` actors
  (:class:`~synalign.scaleout.embed.RayEmbedder`: cache misses on the cluster, the cache on the driver);
- :mod:`~synalign.scaleout.align` — the Nyström KMM screen on sharded actors (``ray_kmm_weights``,
  ``ray_align``);
- :mod:`~synalign.scaleout.generation` — generation over several OpenAI-compatible endpoints, one actor each;
- :mod:`~synalign.scaleout.cluster` — what ``synalign run --ray`` wires into the loop: connecting to the
  cluster and choosing, per heavy step, the Ray path or the local one.

Floor: above the core and the LLM floor (``agents``: generation builds one LLM backend per endpoint), below
``graphs``.
"""
