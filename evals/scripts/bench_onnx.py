"""Benchmark: ONNX Runtime (fp32, O2-optimised, dynamic int8) vs today's torch embedding path (issue 13.2).

Needs ``pip install onnxruntime onnx`` (not project dependencies; exits with one line without them). ONNX files
are made offline from the bundled all-MiniLM-L6-v2: ``torch.onnx.export`` (TorchScript exporter, eager
attention, opset 17), ``onnxruntime.transformers.optimizer`` (BERT fusions = optimum's O2) and
``quantize_dynamic`` (int8 weights per channel, symmetric, uint8 activations = optimum's ``avx512_vnni``).
Length-sorted batches of 64, tokenisation, mean pooling and L2 normalisation are the torch path's
(``Embedder.encode`` = ``SentenceTransformer.encode(batch_size=64, normalize_embeddings=True)``): only the
transformer differs. sentence-transformers' own ``backend="onnx"`` (needs optimum-onnx) is tried too (status
printed; a row if it loads). Per data set (SST-2 sentences, Amazon reviews), in one process: texts/s (best of
``--repeats`` passes after a warm-up, order rotated), speed-up vs torch, max 1 − cos to the torch embedding,
unbiased MMD² between the two halves of the sorted label set (RBF, torch median bandwidth) and its relative
difference from torch's, and whether ``synalign.explorer.explore`` (first 500 rows) picks the same. torch
threads = ORT intra-op threads = ``--threads`` (2). Truncation: ``--max-seq-length`` (default: model's, 256).

    pip install --target DIR --no-deps onnxruntime onnx flatbuffers ml_dtypes   # beside the venv, not in it
    PYTHONPATH=DIR python evals/scripts/bench_onnx.py [--n-sst2 2000] [--n-amazon 500] [--repeats 3]
        [--max-seq-length 256] [--threads 2] [--picks 4] [--work-dir DIR] [--no-st-backend]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from _bench import demo_dir, machine_note, markdown, shared_data


def session_options(threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return so


def export_models(model, work: Path, threads: int) -> tuple[dict, dict]:
    """Export fp32 / O2 / int8 / O2+int8 ONNX files into ``work``; returns (sessions, notes)."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry
    from onnxruntime.transformers.optimizer import optimize_model

    hf = model[0].auto_model.eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]

    class Wrap(torch.nn.Module):  # positional inputs -> last_hidden_state (hf registered: weights, not constants)
        def __init__(self) -> None:
            super().__init__()
            self.hf = hf

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.hf(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]

    feats = model.preprocess(["a short one", "a somewhat longer dummy sentence for the export trace"])
    paths, notes = {"onnx fp32": work / "model.onnx"}, {}
    t0 = time.perf_counter()
    attn = hf.config._attn_implementation
    hf.set_attn_implementation("eager")  # the SDPA graph defeats ORT's Attention fusion; restored below
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrap(), tuple(feats[k] for k in names), str(paths["onnx fp32"]), input_names=names,
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={k: {0: "batch", 1: "seq"} for k in [*names, "last_hidden_state"]})
    hf.set_attn_implementation(attn)
    notes["export s"] = time.perf_counter() - t0
    t0, paths["onnx O2"] = time.perf_counter(), work / "model_O2.onnx"
    opt = optimize_model(str(paths["onnx fp32"]), model_type="bert", num_heads=hf.config.num_attention_heads,
                         hidden_size=hf.config.hidden_size, opt_level=2)
    opt.save_model_to_file(str(paths["onnx O2"]))
    notes["fused Attention"] = opt.get_fused_operator_statistics()["Attention"]
    notes["optimise s"], t0 = time.perf_counter() - t0, time.perf_counter()
    logging.disable(logging.WARNING)  # quantize_dynamic's "consider pre-processing" note
    for name, src in [("onnx int8", "onnx fp32"), ("onnx O2+int8", "onnx O2")]:
        paths[name] = work / (paths[src].stem + "_qint8.onnx")
        quantize_dynamic(paths[src], paths[name], op_types_to_quantize=list(IntegerOpsRegistry), per_channel=True,
                         reduce_range=False, weight_type=QuantType.QInt8,
                         extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                        "DefaultTensorType": onnx.TensorProto.FLOAT})
    logging.disable(logging.NOTSET)
    notes["quantise s"] = time.perf_counter() - t0
    so = session_options(threads)
    sessions = {k: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    notes.update({f"{k} MB": p.stat().st_size / 2**20 for k, p in paths.items()})
    return sessions, notes


def onnx_encoder(model, sess, batch_size: int):
    """Same sorting, tokenisation, mean pooling and normalisation as ``SentenceTransformer.encode``."""
    import numpy as np

    inputs = [i.name for i in sess.get_inputs()]

    def encode(texts: list[str]) -> np.ndarray:
        order = np.argsort([-model._input_length(t) for t in texts])
        out = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            feats = model.preprocess([texts[i] for i in idx])
            tok = sess.run(None, {k: feats[k].numpy() for k in inputs})[0]
            mask = feats["attention_mask"].numpy()[..., None].astype(np.float32)
            emb = (tok * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            out[idx] = emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
        return out

    return encode


def try_st_backend(src: str, work: Path, threads: int, max_len: int):
    """sentence-transformers' own ``backend="onnx"`` on a scratch copy of the model dir: (model or None, status)."""
    if importlib.util.find_spec("optimum") is None:
        return None, "not tried (optimum-onnx not installed)"
    from sentence_transformers import SentenceTransformer

    copy = shutil.copytree(src, work / "st_model", dirs_exist_ok=True)  # never export into site-packages
    kwargs = {"provider": "CPUExecutionProvider", "session_options": session_options(threads)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st = SentenceTransformer(str(copy), backend="onnx", device="cpu", model_kwargs=kwargs)
        st.max_seq_length = max_len
        return st, "loaded (exported offline)"
    except Exception as exc:  # ImportError / version conflicts inside optimum
        return None, f"blocked: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ONNX Runtime vs torch embedding benchmark")
    parser.add_argument("--shared", default=None, help="shared data dir (default ../shared/data)")
    for flag, default in [("--n-sst2", 2000), ("--n-amazon", 500), ("--repeats", 3), ("--threads", 2),
                          ("--batch-size", 64), ("--picks", 4)]:  # --picks: explorer clusters per label
        parser.add_argument(flag, type=int, default=default)
    parser.add_argument("--max-seq-length", type=int, default=None, help="truncation in tokens (default: model's)")
    parser.add_argument("--work-dir", default=None, help="where the ONNX files go (default: a temp dir)")
    parser.add_argument("--no-st-backend", action="store_true", help="skip sentence-transformers' backend='onnx'")
    args = parser.parse_args(argv)
    missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"bench_onnx: needs {' and '.join(missing)} (pip install onnxruntime onnx); not installed")
        return 2

    import numpy as np
    import torch

    from synalign.datafiles import load_examples
    from synalign.divergence import median_bandwidth, mmd2_unbiased
    from synalign.embeddings import Embedder, default_model_path
    from synalign.explorer import explore

    torch.set_num_threads(args.threads)
    logging.getLogger("synalign.explorer").setLevel(logging.ERROR)  # few-shot Amazon labels: "fewer clusters"
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the untruncated length count below warns about > 256 tokens
    shared = shared_data(args.shared)
    sets = {"SST-2": (shared / "sst2" / "train.jsonl") if shared else demo_dir() / "train.jsonl",
            "Amazon": (shared / "amazon_fdu13" / "train.jsonl") if shared else None}
    data = {k: load_examples(p)[: args.n_sst2 if k == "SST-2" else args.n_amazon] for k, p in sets.items() if p}
    model = Embedder(cache_dir=False, device="cpu").model  # the object Embedder encodes with
    if args.max_seq_length:
        model.max_seq_length = args.max_seq_length
    max_len = model.max_seq_length
    tmp = tempfile.TemporaryDirectory()
    work = Path(args.work_dir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    sessions, notes = export_models(model, work, args.threads)

    def st_encode(m):  # today's path: Embedder.encode's call
        return lambda t: m.encode(t, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                                  show_progress_bar=False)

    methods = {"torch": st_encode(model), **{k: onnx_encoder(model, s, args.batch_size) for k, s in sessions.items()}}
    st, st_status = (None, "skipped") if args.no_st_backend else try_st_backend(
        default_model_path(), work, args.threads, max_len)
    if st is not None:
        methods["st backend=onnx"] = st_encode(st)
    rows = []
    for dname, recs in data.items():
        texts, labels, ids = [r.text for r in recs], [r.label for r in recs], [r.id for r in recs]
        lengths = [len(x) for x in model.tokenizer(texts, truncation=False)["input_ids"]]
        trunc = sum(n > max_len for n in lengths)
        for fn in methods.values():
            fn(texts[: args.batch_size])  # warm-up
        best, embs, names = {k: float("inf") for k in methods}, {}, list(methods)
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                t0 = time.perf_counter()
                embs[name] = np.asarray(methods[name](texts), dtype=np.float32)
                best[name] = min(best[name], time.perf_counter() - t0)
        ref = embs["torch"]
        bw = median_bandwidth(ref)
        print(f"{dname}: {len(texts)} texts, tokens mean {np.mean(lengths):.0f} / max {max(lengths)}; "
              f"{trunc} truncated at max_seq_length={max_len}; MMD² bandwidth {bw:.4f} (torch median)")
        ordered = sorted(set(labels))
        side = np.isin(np.asarray(labels), ordered[: max(1, len(ordered) // 2)])
        k = min(500, len(texts))

        def mmd(e: np.ndarray, side=side, bw=bw) -> float:
            return mmd2_unbiased(e[side], e[~side], bw, device="cpu")

        def picks(e: np.ndarray, k=k, ids=ids, labels=labels):  # (picked ids, cluster member sets), in order
            res = explore(e[:k], ids[:k], labels[:k], clusters_per_label=args.picks, cluster_size=8, device="cpu")
            return [c.pick_id for c in res.clusters], [frozenset(c.example_ids) for c in res.clusters]

        def same(a: list, b: list) -> str:  # "yes" (identical, same order), else how many of b's items a has
            return "yes" if a == b else f"NO ({len(set(a) & set(b))}/{len(b)} shared)"

        m_ref, p_ref = mmd(ref), picks(ref)
        for name in names:
            e = embs[name]
            m, p = mmd(e), picks(e)
            rows.append([dname, name, len(texts) / best[name], best["torch"] / best[name],
                         float(np.max(1.0 - np.sum(e * ref, axis=1))), m, abs(m - m_ref) / abs(m_ref),
                         same(p[0], p_ref[0]), same(p[1], p_ref[1])])
    print()
    print(markdown(["data", "backend", "texts/s", "speed-up", "max 1−cos", "MMD²", "MMD² rel. diff",
                    "same picks", "same clusters"], rows))
    print()
    print(f"max_seq_length (truncation, tokens) = {max_len} for every backend; batch size {args.batch_size}; "
          f"best of {args.repeats} timed passes after a warm-up; torch threads = ORT intra-op threads = "
          f"{args.threads}, ORT inter-op 1")
    print(f"explorer: first 500 rows, per label, clusters_per_label {args.picks}, cluster_size 8, median "
          "length-scale; a cluster counts as shared when its member set is")
    print("onnx: " + ", ".join(f"{k} {v:.1f}" for k, v in notes.items()))
    print(f"sentence-transformers backend='onnx': {st_status}")
    print(machine_note())
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
