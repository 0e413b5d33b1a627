"""Issue 21, reliability matrix round 3: run-state integrity. A checkpoint is only resumed under the config it was
written for (an edited ``config.json``, a checkpoint copied from another run: refused), an edited or undecodable
store item is the corrupt-checkpoint line, an edited LLM cache entry is a miss, and a full or read-only disk is
one line naming the file that failed, with ``--resume`` offered where it works.

One finished EDA run (in-process, module scope) is copied per test; the CLI runs in-process (CliRunner)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synalign.app.cli import app
from synalign.config import RunConfig

FAST = {"clusters_per_label": 1, "cluster_size": 4, "samples_per_cluster": 4, "max_rounds": 1, "llm": "eda"}


def _invoke(*args: str, env: dict[str, str] | None = None):  # noqa: ANN202
    return CliRunner().invoke(app, list(args), env=env)


def _one_line_error(result, *fragments: str, code: int = 2) -> str:  # noqa: ANN001
    assert result.exit_code == code, (result.exit_code, result.stderr[-3000:], result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("synalign: error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def _run(data: Path, out: Path, **options: object) -> None:
    from synalign.graphs import run

    run(RunConfig(data=data, out=out, **{**FAST, **options}))


@pytest.fixture(scope="module")
def finished_run(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-round EDA run directory (copy it before changing it)."""
    out = tmp_path_factory.mktemp("integrity") / "run"
    _run(small_data, out)
    return out


def _copy(run_dir: Path, tmp_path: Path, name: str = "run") -> Path:
    target = tmp_path / name
    shutil.copytree(run_dir, target)
    return target


def _edit_config(out: Path, **changes: object) -> None:
    path = out / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2), encoding="utf-8")


# -- the checkpoint belongs to the config it was written under --------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [("llm", "local", "--llm"), ("data", "DEMO", "--data"), ("selection", "random", "--selection")],
)
def test_resume_refuses_a_config_json_edited_after_the_run_started(
    field: str, value: str, flag: str, finished_run: Path, demo_dir: Path, tmp_path: Path
) -> None:
    out = _copy(finished_run, tmp_path)
    _edit_config(out, **{field: str(demo_dir) if value == "DEMO" else value})
    summary = (out / "summary.json").read_bytes()
    result = _invoke("run", "--out", str(out), "--resume")
    _one_line_error(result, str(out / "checkpoints.sqlite"), "belongs to another run", flag, "--overwrite")
    assert (out / "summary.json").read_bytes() == summary  # nothing rewritten, nothing credited to the edit


def test_resume_safe_fields_stay_changeable_and_a_moved_run_resumes(finished_run: Path, tmp_path: Path) -> None:
    out = _copy(finished_run, tmp_path, "moved")  # another directory: `out` is not part of what the run is
    _edit_config(out, max_concurrency=2, llm_cache=False)
    result = _invoke("run", "--out", str(out), "--resume", "--max-concurrency", "3")
    assert result.exit_code == 0, (result.stderr[-3000:], result.exception)
    assert (out / "synthetic.jsonl").read_bytes() == (finished_run / "synthetic.jsonl").read_bytes()


def test_a_run_extended_with_more_rounds_still_resumes(finished_run: Path, tmp_path: Path) -> None:
    out = _copy(finished_run, tmp_path)
    extended = _invoke("run", "--out", str(out), "--extend", "1")  # rewrites config.json: --rounds 2
    assert extended.exit_code == 0, (extended.stderr[-3000:], extended.exception)
    summary = (out / "summary.json").read_bytes()
    resumed = _invoke("run", "--out", str(out), "--resume")
    assert resumed.exit_code == 0, (resumed.stderr[-3000:], resumed.exception)
    assert json.loads((out / "summary.json").read_bytes())["rounds"] == json.loads(summary)["rounds"] == 2


def test_a_checkpoint_copied_from_another_run_is_refused(small_data: Path, finished_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "seed5"
    _run(small_data, other, seed=5)
    out = _copy(finished_run, tmp_path)
    shutil.copyfile(other / "checkpoints.sqlite", out / "checkpoints.sqlite")
    result = _invoke("run", "--out", str(out), "--resume")
    _one_line_error(result, "belongs to another run", "--seed")


# -- store values: checked against the digest in their key, decoded safely ---------------------------------------


def _update_store(db: Path, kind: str, change) -> None:  # noqa: ANN001
    with sqlite3.connect(db) as conn:
        key, value = conn.execute(
            "SELECT key, value FROM store WHERE prefix LIKE ? ORDER BY key DESC LIMIT 1", (f"%.{kind}",)
        ).fetchone()
        value = value.decode() if isinstance(value, bytes) else value
        conn.execute("UPDATE store SET value = ? WHERE key = ? AND prefix LIKE ?", (change(value), key, f"%.{kind}"))


def _edit_text(value: str) -> str:
    item = json.loads(value)
    item["samples"][0]["text"] = "an edited text that no generator wrote"
    return json.dumps(item)


def _bad_base64(value: str) -> str:
    return json.dumps({**json.loads(value), "weights_f64": "@@not base64@@"})


def _short_bits(value: str) -> str:
    item = json.loads(value)
    return json.dumps({**item, "accepted_bits": item["accepted_bits"][:-4]})  # one base64 group (3 bytes) short


STORE_DAMAGE = {
    "edited_text": ("samples", _edit_text),
    "weights_not_base64": ("alignment", _bad_base64),
    "accepted_bits_truncated": ("alignment", _short_bits),
    "samples_not_json": ("samples", lambda value: value[: len(value) // 2]),
    "alignment_not_json": ("alignment", lambda value: "{" + value),
}


@pytest.mark.parametrize("damage", sorted(STORE_DAMAGE))
def test_a_damaged_store_value_is_the_corrupt_checkpoint_line(damage: str, finished_run: Path, tmp_path: Path) -> None:
    out = _copy(finished_run, tmp_path)
    kind, change = STORE_DAMAGE[damage]
    _update_store(out / "checkpoints.sqlite", kind, change)
    before = (out / "synthetic.jsonl").read_bytes()
    result = _invoke("run", "--out", str(out), "--resume")
    _one_line_error(result, str(out / "checkpoints.sqlite"), "checkpoint is corrupt", "--overwrite")
    assert (out / "synthetic.jsonl").read_bytes() == before


def test_an_alignment_that_matches_its_key_but_does_not_decode_is_a_missing_item() -> None:
    from langgraph.store.memory import InMemoryStore

    from synalign.graphs.samplestore import MissingItemError, get_alignment, namespace_for, put_alignment

    store, prefix = InMemoryStore(), namespace_for("t")
    ref = put_alignment(store, prefix, 1, np.ones(20), np.ones(20, dtype=bool), previous=None)
    ns = (*prefix, "alignment")
    item = store.get(ns, ref["key"])
    assert item is not None
    for broken in ({"accepted_bits": item.value["accepted_bits"][:0]}, {"weights_f64": "@@"}):
        value = {**item.value, **broken}
        key = "r0001-" + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
        store.put(ns, key, value)  # a value that matches its key (so the checksum passes) yet cannot be decoded
        with pytest.raises(MissingItemError, match="cannot be decoded"):
            get_alignment(store, prefix, {**ref, "key": key}, 20)


# -- LLM response cache: an edited value is a miss, moved aside ---------------------------------------------------


def test_an_llm_cache_value_of_another_shape_is_a_miss_moved_aside(tmp_path: Path) -> None:
    from synalign.agents.cache import ResponseCache

    path = tmp_path / "llm_cache.sqlite"
    cache = ResponseCache(path)
    cache.put("k", {"value": {"texts": ["a"]}, "text": "a", "meta": {}})
    cache.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE responses SET value = ? WHERE key = 'k'", (json.dumps(["another", "shape"]),))
    cache = ResponseCache(path)
    assert cache.get("k") is None and cache.misses == 1
    cache.put("k", {"value": {"texts": ["b"]}, "text": "b", "meta": {}})
    assert cache.get("k") == {"value": {"texts": ["b"]}, "text": "b", "meta": {}}
    with sqlite3.connect(path) as conn:
        aside = conn.execute("SELECT key, value, reason FROM responses_aside").fetchall()
    assert aside == [("k", '["another", "shape"]', "failed its checksum")]


def test_a_cache_written_before_checksums_keeps_its_entries(tmp_path: Path) -> None:
    from synalign.agents.cache import ResponseCache

    path = tmp_path / "llm_cache.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")
        conn.execute("INSERT INTO responses VALUES ('k', '{\"texts\": [\"a\"]}', 0)")
    assert ResponseCache(path).get("k") == {"texts": ["a"]}


def test_the_same_llm_run_after_a_cached_reply_was_replaced_asks_again(tmp_path: Path, demo_rows: list[dict]) -> None:
    from synalign.agents import LLMSettings, build_backend
    from synalign.agents.testing import OpenAITestServer
    from synalign.backends import GenerationRequest
    from synalign.records import AttributeSummary

    texts = [r["text"] for r in demo_rows if r["label"] == "negative"][:6]
    attributes = AttributeSummary(style="short reviews", tone="negative", topic="films", length="one line",
                                  perspective="a viewer")
    requests = [GenerationRequest(task="Sentiment of movie reviews.", label="negative", attributes=attributes,
                                  demonstrations=texts, n=4, seed=0, round=1)]
    os.environ["SYNALIGN_TEST_KEY"] = "sk-test-integrity"
    with OpenAITestServer(api_key="sk-test-integrity") as server:
        config = RunConfig(data=tmp_path / "unused.jsonl", out=tmp_path / "run", llm="openai:test-model",
                           base_url=server.url, api_key_env="SYNALIGN_TEST_KEY", cache_dir=tmp_path / "cache")

        def generate() -> list[str]:
            settings = LLMSettings.from_config(config, timeout_s=2, backoff_s=0.01)
            backend = build_backend(config, config.out, settings=settings, sleep=lambda s: None)
            try:
                return [t for g in backend.generator.generate(requests) for t in g.texts]
            finally:
                backend.close()

        first = generate()
        calls = server.completions()
        with sqlite3.connect(tmp_path / "cache" / "llm_cache.sqlite") as conn:
            conn.execute("UPDATE responses SET value = ?", (json.dumps({"value": {"texts": 5}, "text": ""}),))
        assert generate() == first and server.completions() > calls  # a miss: asked again, same reply
    with sqlite3.connect(tmp_path / "cache" / "llm_cache.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM responses_aside").fetchone()[0] >= 1


# -- full and read-only disks -------------------------------------------------------------------------------------


def _cache_env(tmp_path: Path) -> dict[str, str]:
    return {"SYNALIGN_CACHE_DIR": str(tmp_path / "cache")}


def test_a_full_cache_disk_names_the_cache_file(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import synalign.cachedb as cachedb

    real_connect = cachedb._connect

    def tiny(path: Path, schema, what: str) -> sqlite3.Connection:  # noqa: ANN001
        conn = real_connect(path, schema, what)
        conn.execute("PRAGMA max_page_count = 4")  # SQLite's own SQLITE_FULL once the file would grow past it
        return conn

    monkeypatch.setattr(cachedb, "_connect", tiny)
    out = tmp_path / "run"
    result = _invoke("run", "--data", str(small_data), "--out", str(out), "--rounds", "1", env=_cache_env(tmp_path))
    line = _one_line_error(result, "no space left", str(tmp_path / "cache" / "embeddings.sqlite"), code=1)
    assert "checkpoints.sqlite" not in line and not out.exists()


def _first_write_fails(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    if where == "config.json":
        import synalign.fileio as fileio

        real_write = fileio._atomic_write

        def atomic_write(path: Path, write) -> None:  # noqa: ANN001
            if path.name == "config.json":
                def half(handle) -> None:  # noqa: ANN001
                    handle.write(b"{")
                    raise OSError(errno.ENOSPC, "No space left on device")  # a write() names no file

                return real_write(path, half)
            return real_write(path, write)

        monkeypatch.setattr(fileio, "_atomic_write", atomic_write)
    else:
        from langgraph.checkpoint.sqlite import SqliteSaver

        def setup(self) -> None:  # noqa: ANN001
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(SqliteSaver, "setup", setup)


@pytest.mark.parametrize("where", ["config.json", "checkpoints.sqlite"])
def test_a_disk_full_at_the_first_write_names_it_and_says_how_to_go_on(
    where: str, small_data: Path, finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    args = ["run", "--data", str(small_data), "--out", str(out), "--clusters-per-label", "1", "--cluster-size", "4",
            "--samples-per-cluster", "4", "--rounds", "1", "--llm", "eda"]
    with monkeypatch.context() as patch:
        _first_write_fails(patch, where)
        line = _one_line_error(_invoke(*args), "no space left", str(out / where), code=1)
    assert "corrupt" not in line and not [p for p in out.glob("*.tmp")]
    if where == "config.json":  # nothing of the run exists: run it again, never --resume
        assert "run the same command again" in line and not out.exists()
        return
    assert f"synalign run --out {out} --resume" in line
    resumed = _invoke("run", "--out", str(out), "--resume")
    assert resumed.exit_code == 0, (resumed.stderr[-3000:], resumed.exception)
    assert (out / "synthetic.jsonl").read_bytes() == (finished_run / "synthetic.jsonl").read_bytes()


def _refuse_writes_under(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only ``directory``: chmod 0o555, and, for root (whom chmod does not stop), every open for writing
    under it fails with EROFS, as on a read-only mount."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o555)
    if os.geteuid() == 0:
        real_open = os.open
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT

        def read_only_open(path, flags, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if flags & writes and Path(os.fsdecode(path)).resolve().is_relative_to(directory.resolve()):
                raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", read_only_open)


def test_a_read_only_cache_directory_is_one_line_and_writes_nothing(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "ro-cache"
    out = tmp_path / "run"
    try:
        with monkeypatch.context() as patch:
            _refuse_writes_under(cache, patch)
            result = _invoke("run", "--data", str(small_data), "--out", str(out), "--rounds", "1",
                             env={"SYNALIGN_CACHE_DIR": str(cache)})
    finally:
        cache.chmod(0o755)
    _one_line_error(result, str(cache / "embeddings.sqlite"), "cannot be written", "SYNALIGN_CACHE_DIR")
    assert not out.exists()


def test_a_cache_file_that_turns_read_only_is_one_line_naming_it(tmp_path: Path) -> None:
    from synalign.agents.cache import ResponseCache
    from synalign.errors import InputError

    cache = ResponseCache(tmp_path / "llm_cache.sqlite")
    cache._conn.execute("PRAGMA query_only = 1")  # SQLite then refuses writes as for a read-only file
    with pytest.raises(InputError, match=r"llm_cache\.sqlite cannot be written .*SYNALIGN_CACHE_DIR"):
        cache.put("k", {"texts": ["a"]})


def _full_at(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    import synalign.fileio as fileio

    real_write = fileio._atomic_write

    def atomic_write(path: Path, write) -> None:  # noqa: ANN001
        if path.name == name:
            def half(handle) -> None:  # noqa: ANN001
                handle.write(b"x" * 1000)
                raise OSError(errno.ENOSPC, "No space left on device")

            return real_write(path, half)
        return real_write(path, write)

    monkeypatch.setattr(fileio, "_atomic_write", atomic_write)


def test_align_out_on_a_full_disk_is_one_line_and_leaves_nothing(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "aligned"
    _full_at(monkeypatch, "pool.parquet")
    result = _invoke("align", "--real", str(small_data), "--pool", str(small_data), "--allow-near-copies",
                     "--out", str(out))
    _one_line_error(result, "no space left", str(out / "pool.parquet"), "nothing was written", code=1)
    assert not out.exists()


def test_export_to_dir_on_a_full_disk_is_one_line_and_leaves_nothing(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = pytest.importorskip("datasets")
    real_to_parquet = datasets.Dataset.to_parquet

    def to_parquet(self, path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if "pool" in str(path):
            Path(path).write_bytes(b"PAR1 half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_to_parquet(self, path, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "to_parquet", to_parquet)
    target = tmp_path / "export"
    result = _invoke("export", str(finished_run), "--to-dir", str(target))
    _one_line_error(result, "no space left", str(target), "nothing was written", code=1)
    assert not target.exists() and not list(tmp_path.glob(".export*"))
