"""The run report: what it says (verdict, per-label table, calibrated discriminator, named noise floors) and
that it renders in a real browser (headless Chromium): no console errors, every image decodes, nothing wider
than the page. A screenshot is kept (``$SYNALIGN_ARTIFACTS_DIR`` or the test's tmp dir) and its path printed."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from synalign.config import RunConfig
from synalign.graphs import run
from synalign.graphs.report_sections import REAL_FLOOR, SAME_SIZE_FLOOR, verdict


@pytest.fixture(scope="module")
def report(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """report.html of a 2-round EDA run on 60 real examples per label, with a target it cannot reach."""
    out = tmp_path_factory.mktemp("report") / "run"
    run(RunConfig(
        data=small_data, out=out, clusters_per_label=1, cluster_size=4, samples_per_cluster=6, max_rounds=2,
        target="0.0001", seed=3, llm="eda",
    ))
    return out / "report.html"


def _cells(page: str, label: str) -> list[str]:
    """Text of the cells of the first per-label table row of ``label``."""
    block = page[page.index('id="per-label"'):]
    row = re.search(rf"<tr><td class=t>{label}</td>(.*?)</tr>", block)
    assert row, label
    return [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))]


def test_report_says_what_happened(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    summary = json.loads((report.parent / "summary.json").read_text(encoding="utf-8"))
    metrics = json.loads((report.parent / "metrics.json").read_text(encoding="utf-8"))
    # the verdict comes first, with the ratio to the target and what to try next
    top = page[page.index('id="verdict"'):page.index("</div>", page.index('id="verdict"'))]
    assert page.index('id="verdict"') < page.index("<h2>")
    ratio = summary["final_mmd2"] / summary["target_mmd2"]
    assert "Target missed" in top and f"{ratio:.2f}×" in top and "after 2 round(s)" in top
    assert "--rounds" in top and "--selection herding" in top and re.search(r"--target \d+(\.\d)?x", top)
    # per label: real vs accepted counts (60 real each; 2 rounds × 6 generated, half accepted)
    for label in ("negative", "positive"):
        real, generated, accepted, share = _cells(page, label)[:4]
        assert (real, generated, accepted, share) == ("60", "12", "6", "0.5")
    assert "terms real" in page and "words accepted" in page
    # one clearly named floor each, and the real-calibrated discriminator beside MMD²
    assert SAME_SIZE_FLOOR in page and REAL_FLOOR in page and "1x same-size" not in page
    assert "real vs accepted synthetic" in page and "real vs real (two random halves)" in page
    # accepted and not-accepted samples, the not-accepted ones with an honest reason
    assert ">accepted</td>" in page and (">not accepted</td>" in page or ">not selected</td>" in page)
    if metrics[-1]["filtered"]:
        assert "is not recorded" in page
    # the backend, its calls and cost; self-contained: every src/href is a data: URI
    assert "offline:eda" in page and "LM calls" in page and "none (no language model calls)" in page
    assert not re.findall(r"""(?:src|href)=["'](?!data:)""", page)
    assert "overflow-x:auto" in page


def test_verdict_when_reached() -> None:
    rows = [
        {"round": 1, "mmd2_accepted": 0.05, "target_mmd2": 0.03, "noise_floor_same_size": 0.02, "mmd2_pool": 0.06},
        {"round": 2, "mmd2_accepted": 0.024, "target_mmd2": 0.03, "noise_floor_same_size": 0.02, "mmd2_pool": 0.05},
    ]
    text = verdict(rows, {"stop_reason": "target", "target": "1.5x noise floor", "selection": "filter"})
    assert "Target reached</b> in round 2 of 2" in text and "0.80×" in text and "1.20×" in text
    assert "synalign eval" in text and 'class="verdict hit"' in text


@pytest.fixture
def chromium() -> str:
    """The headless browser: skipped when missing, unless ``SYNALIGN_REQUIRE_BROWSER=1`` (CI) says it must run."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        if os.environ.get("SYNALIGN_REQUIRE_BROWSER") == "1":
            pytest.fail("SYNALIGN_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH (apt-get install -y --no-install-recommends chromium)")
    return binary


# Injected into a copy of the page: records script errors and failed loads, decodes every image, measures the
# page width, and writes the result into the DOM, which --dump-dom prints.
_PROBE = """<script>
window.__errs = [];
window.addEventListener("error", function (e) {
  window.__errs.push(String(e.message || (e.target && (e.target.src || e.target.tagName)) || "error").slice(0, 200));
}, true);
["error", "warn"].forEach(function (level) {
  var original = console[level];
  console[level] = function () { window.__errs.push(level + ": " + Array.from(arguments).join(" ")); original.apply(console, arguments); };
});
window.addEventListener("load", function () {
  var images = Array.from(document.images);
  Promise.all(images.map(function (i) {
    return i.decode().then(function () { return [i.alt, i.naturalWidth]; }, function () { return [i.alt, 0]; });
  })).then(function (result) {
    var pre = document.createElement("pre");
    pre.id = "synalign-probe";
    pre.textContent = JSON.stringify({errors: window.__errs, images: result,
      scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth});
    document.body.appendChild(pre);
  });
});
</script>"""


def _browser(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_report_renders_in_a_real_browser(
    chromium: str, report: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = chromium
    page = report.read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    # The probe lands once every image has decoded; on a loaded machine the dump can come first within the
    # virtual-time budget, so the page is loaded again with a longer one (the assertions stay the same).
    for budget in (10_000, 30_000, 90_000):
        done = _browser(binary, tmp_path / "profile", "--window-size=1100,900", f"--virtual-time-budget={budget}",
                        "--enable-logging=stderr", "--v=0", "--dump-dom", probed.as_uri())
        assert done.returncode == 0, done.stderr[-2000:]
        found = re.search(r'<pre id="synalign-probe">(.*?)</pre>', done.stdout, re.S)
        if found:
            break
    assert found, done.stdout[-2000:]
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["errors"] == []
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # the report runs no script; anything here came from loading the page
    assert len(probe["images"]) == 2 and all(width > 0 for _, width in probe["images"]), probe["images"]
    assert probe["scrollWidth"] <= probe["innerWidth"], probe  # wide tables scroll inside their own box
    dom = done.stdout
    assert 'id="verdict"' in dom and "Target missed" in dom
    assert 'id="per-label"' in dom and all(f"<td class=\"t\">{label}</td>" in dom for label in ("negative", "positive"))

    artifacts = Path(os.environ.get("SYNALIGN_ARTIFACTS_DIR") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "report.png"
    done = _browser(binary, tmp_path / "profile", "--window-size=1100,4000", "--hide-scrollbars",
                    f"--screenshot={shot}", report.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nreport screenshot: {shot}")
