"""The HTML report of a backtest: sections, embedded figures, names that are not in the run,
saved runs, focus windows and an offline render in a headless browser."""

import base64
import html
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from neuralfolio.backtest import BacktestResult, Execution
from neuralfolio.errors import ConfigError
from neuralfolio.report import SECTIONS, report_from_run_dir, write_report

FOCUS = ("2020-05-01", "2020-07-31", "Summer 2020")
N_BOOT = 200
PNG = b"\x89PNG\r\n\x1a\n"
POLICIES = ("network", "optimizer_daily", "equal_weight", "network_outcome")


def _result(n: int = 300, seed: int = 0, policies=POLICIES) -> BacktestResult:
    """A synthetic run: a smooth reference, a noisy network, 1/N and a long/short network."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n)
    assets = ["AAA", "BBB", "CCC", "DDD"]
    next_returns = pd.DataFrame(rng.normal(4e-4, 0.01, (n, 4)), dates, assets)
    ref = np.exp(np.cumsum(rng.normal(0.0, 0.05, (n, 4)), axis=0))
    ref /= ref.sum(axis=1, keepdims=True)
    noisy = np.clip(ref + rng.normal(0.0, 0.03, ref.shape), 0.0, None)
    noisy /= noisy.sum(axis=1, keepdims=True)
    long_short = ref.copy()
    long_short[:, 0] += 0.4
    long_short[:, -1] -= 0.4
    assert (long_short < 0).any()
    all_weights = {"network": noisy, "optimizer_daily": ref,
                   "equal_weight": np.full_like(ref, 0.25), "network_outcome": long_short}
    weights = {name: pd.DataFrame(all_weights[name], dates, assets) for name in policies}
    retrain = list(dates[::63])
    fit = {name: (rng.uniform(0.5, 2.0, len(retrain)).tolist() if name.startswith("network")
                  else [1e-4] * len(retrain)) for name in policies}
    return BacktestResult(
        weights=weights, next_returns=next_returns, reference=pd.DataFrame(ref, dates, assets),
        retrain_dates=retrain, fit_seconds=fit,
        update_seconds={name: [1e-4, 2e-4] for name in policies},
        config={"data": "synthetic", "retrain_every": 63, "benchmark": "optimizer_daily",
                "baselines": ["optimizer_daily", "equal_weight"]},
        execution={name: Execution(cost_bps=5) for name in policies},
    )


def _section(text: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', text, flags=re.DOTALL)
    assert match, f"no section {sid!r}"
    return match.group(1)


def _images(text: str) -> list[bytes]:
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', text)
    assert len(sources) == text.count("<img")
    out = []
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:60]
        out.append(base64.b64decode(src.split(",", 1)[1], validate=True))
    return out


@pytest.fixture(scope="module")
def result():
    return _result()


@pytest.fixture(scope="module")
def report(result, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    path = write_report(result, run, focus=FOCUS, n_boot=N_BOOT)
    return path, path.read_text(encoding="utf-8")


def test_report_has_every_section_and_embedded_figures(report):
    path, text = report
    assert path.name == "report.html"
    for sid in SECTIONS:
        assert "<h2>" in _section(text, sid)
    images = _images(text)
    assert len(images) >= 8
    assert all(data.startswith(PNG) for data in images)
    on_disk = {p.read_bytes() for p in (path.parent / "report").glob("*.png")}
    assert len(on_disk) == len(images)
    assert set(images) == on_disk
    lowered = text.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert "<script" not in lowered and "<link" not in lowered


def test_statistics_and_paired_tables(report, result):
    _, text = report
    stats = _section(text, "statistics")
    assert "<table" in stats
    summary = result.summary()
    for name in POLICIES:
        assert name in stats
        assert f"{summary.loc[name, 'volatility']:.1%}" in stats
    paired = _section(text, "paired")
    assert "Against optimizer_daily" in paired and "Against equal_weight" in paired
    assert re.search(r"pts \[[−+]\d+\.\d\d, [−+]\d+\.\d\d\]", paired)
    assert "Excludes 0" in paired and "Deflated Sharpe" in paired
    summary_text = _section(text, "summary")
    assert "Lowest volatility" in summary_text and "5 bps" in summary_text


def test_focus_section(report):
    path, text = report
    focus = _section(text, "focus")
    assert "Weights through Summer 2020" in focus
    assert "2020-05-01" in focus and "2020-07-31" in focus  # first and last of the table
    assert "<img" in focus and (path.parent / "report" / "focus_weights.png").exists()


def test_focus_without_test_dates_raises(result, tmp_path):
    with pytest.raises(ConfigError, match=r"'Y2K'.*no test date.*2020-01-01 to"):
        write_report(result, tmp_path, focus=("1999-12-01", "2000-01-31", "Y2K"))
    with pytest.raises(ConfigError, match="focus is"):
        write_report(result, tmp_path, focus=("2020-05-01", "2020-06-01"))
    with pytest.raises(ConfigError, match="ends"):
        write_report(result, tmp_path, focus=("2020-06-01", "2020-05-01", "Backwards"))
    assert not (tmp_path / "report.html").exists()


def test_names_missing_from_the_run_are_skipped(tmp_path):
    partial = _result(policies=("network_outcome", "equal_weight"))
    path = write_report(partial, tmp_path / "a", benchmark="optimizer_daily",
                        baselines=("optimizer_daily", "equal_weight"), network="network",
                        optimizer="optimizer_daily", n_boot=N_BOOT)
    text = path.read_text(encoding="utf-8")
    for sid in SECTIONS:
        if sid != "focus":
            _section(text, sid)
    assert "showing &#x27;network_outcome&#x27; instead" in text
    assert "Against equal_weight" in text and "Against optimizer_daily" not in text
    # No network, no optimizer, no baseline, no benchmark at all, a short run.
    bare = _result(n=80, policies=("equal_weight",))
    path = write_report(bare, tmp_path / "b", benchmark="nope", baselines=("nope",),
                        network="nope", optimizer="nope", n_boot=N_BOOT)
    text = path.read_text(encoding="utf-8")
    assert "No network policy in this run" in _section(text, "l1_gap")
    assert "No baseline" in _section(text, "paired")


def test_report_from_saved_run(tmp_path):
    res = _result()
    res.config = {**res.config, "baselines": ["equal_weight"],
                  "report_focus": ["2020-03-02", "2020-04-30", "Spring 2020"]}
    res.save(tmp_path)
    path = report_from_run_dir(tmp_path, n_boot=N_BOOT)
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    assert "Weights through Spring 2020" in _section(text, "focus")
    paired = _section(text, "paired")
    assert "Against equal_weight" in paired and "Against optimizer_daily" not in paired
    assert '"report_focus"' in html.unescape(_section(text, "config"))


def _chromium(*args: str, user_dir) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={user_dir}", "--host-resolver-rules=MAP * ~NOTFOUND",
         *args],
        capture_output=True, text=True, timeout=120, check=False)


_PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.from(document.images);
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({
    images: imgs.length,
    loaded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    external: performance.getEntriesByType("resource").map(function (e) { return e.name; })
      .filter(function (u) { return !u.startsWith("data:"); })
  });
  document.body.appendChild(pre);
});
</script>"""


def test_report_renders_offline_in_a_browser(report, tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("chromium not installed (make test installs it)")
    path, text = report
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    done = _chromium("--virtual-time-budget=10000", "--dump-dom", probe_page.as_uri(),
                     user_dir=tmp_path / "profile1")
    match = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, flags=re.DOTALL)
    assert match, f"no probe in the dumped page; chromium said: {done.stderr[-2000:]}"
    probe = json.loads(html.unescape(match.group(1)))
    assert probe["images"] >= 8
    assert probe["loaded"] == probe["images"]
    assert probe["external"] == []

    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,4000", path.as_uri(),
              user_dir=tmp_path / "profile2")
    assert shot.exists(), "chromium wrote no screenshot"
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.std() > 0
