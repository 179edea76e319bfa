"""The HTML view in a real headless browser: loads cleanly, draws the roll, seeks on a click.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium chromium-driver``) and
the ``selenium`` package; where one is missing the browser tests are skipped, naming it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from activity.constants import CLASSES, CLIP_SECONDS, FRAME_RATE, NUM_CLASSES, SAMPLE_RATE
from activity.fileio import write_text
from activity.html_view import encode_ogg, render_html

SECONDS = 20.0


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    chromium = _binary("chromium", "chromium-browser", "google-chrome")
    driver_path = _binary("chromedriver")
    if chromium is None:
        pytest.skip("browser test: no chromium binary on PATH (apt-get install chromium chromium-driver)")
    if driver_path is None:
        pytest.skip("browser test: no chromedriver binary on PATH (apt-get install chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("browser test: the selenium package is not installed (pip install -r requirements.txt)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--mute-audio"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def _page(tmp_path: Path, with_truth: bool = True) -> tuple[Path, np.ndarray]:
    """A 20 s page: Piano certain in the first half, Synth in the second, everything else silent."""
    frames = int(SECONDS * FRAME_RATE)
    probs = np.zeros((frames, NUM_CLASSES), np.float32)
    probs[: frames // 2, CLASSES.index("Piano")] = 1.0
    probs[frames // 2 :, CLASSES.index("Synth")] = 1.0
    segments = probs.reshape(-1, CLIP_SECONDS * FRAME_RATE, NUM_CLASSES).max(1)
    t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    ogg = encode_ogg((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    truth = (probs > 0.5).astype(np.uint8) if with_truth else None
    seg_truth = (segments > 0.5).astype(np.uint8) if with_truth else None
    page = render_html("Test song", probs, segments, np.full(NUM_CLASSES, 0.5), SECONDS, ogg, truth, seg_truth)
    path = tmp_path / "song.html"
    write_text(path, page)
    return path, probs


def _severe(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _wait(predicate, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.05)


def test_page_loads_draws_and_seeks(browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    path, _ = _page(tmp_path)
    browser.get(path.as_uri())
    assert _wait(lambda: browser.execute_script("return !!(window.activityView && window.activityView.ready)"))
    assert _severe(browser) == []
    # The console check is live: an error logged now is seen.
    browser.execute_script("console.error('probe from the test')")
    assert any("probe from the test" in m for m in _severe(browser))

    # The roll is drawn where the data say: Piano's row lit in the first half only, Synth's in the second.
    def lit(x_frac: float, row: int) -> int:
        return browser.execute_script(
            "const c = document.getElementById('frame-roll'), x = Math.floor(arguments[0] * c.width);"
            "const y = arguments[1] * 22 + 11; const d = c.getContext('2d').getImageData(x, y, 1, 1).data;"
            "return d[0] + d[1] + d[2];", x_frac, row)

    piano, synth = CLASSES.index("Piano"), CLASSES.index("Synth")
    assert lit(0.25, piano) > 500 and lit(0.75, piano) < 30
    assert lit(0.75, synth) > 500 and lit(0.25, synth) < 30
    assert browser.execute_script("return window.activityView.drawnPixels('frame-roll')") > 0

    # The audio element is there and loads; clicking the roll at 25 % seeks to 5 s and moves the cursor.
    assert _wait(lambda: browser.execute_script("return document.getElementById('player').readyState >= 1"))
    assert browser.execute_script("return window.activityView.cursorFraction('frame-wrap')") == 0
    canvas = browser.find_element(By.ID, "frame-roll")
    width = canvas.size["width"]
    # Selenium 4 offsets are from the element's centre.
    ActionChains(browser).move_to_element_with_offset(canvas, int(-0.25 * width), 0).click().perform()
    fraction = _wait(lambda: browser.execute_script("return window.activityView.cursorFraction('frame-wrap')") or None)
    assert fraction == pytest.approx(0.25, abs=0.02)
    now = browser.execute_script("return document.getElementById('player').currentTime")
    assert now == pytest.approx(0.25 * SECONDS, abs=0.5)
    # The 5 s view's cursor follows the same clock.
    assert browser.execute_script("return window.activityView.cursorFraction('segment-wrap')") == pytest.approx(
        now / SECONDS, abs=0.02)
    browser.get_log("browser")  # drop the probe
    assert _severe(browser) == []


def test_pages_of_infer_and_plot_pianoroll_load(browser, synth_root: Path, tmp_path: Path) -> None:
    """The pages the two commands write for a synthetic test song (tiny random model) load cleanly."""

    import torch

    from activity import infer
    from activity.model import ActivityModel

    from activity import pianoroll as plot_pianoroll  # what plot_pianoroll.py runs

    torch.manual_seed(0)
    ckpt = ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1).save_pretrained(tmp_path / "ckpt")
    songs = synth_root / "test_track"
    assert infer.main(["--ckpt", str(ckpt), "--audio", str(songs / "Track01950.flac"), "--midi",
                       str(songs / "Track01950.mid"), "--out", str(tmp_path / "pred"), "--formats", "html"]) == 0
    assert plot_pianoroll.main(["--track", "Track01950", "--test-track-dir", str(songs), "--ckpt", str(ckpt),
                                "--save-dir", str(tmp_path / "plots"), "--html"]) == 0
    assert infer.main(["--ckpt", str(ckpt), "--audio", str(songs / "Track01951.flac"), "--out", str(tmp_path / "pred"),
                       "--formats", "html"]) == 0  # no MIDI: no truth in the page
    for page in (tmp_path / "pred" / "Track01950.html", tmp_path / "plots" / "Track01950.html",
                 tmp_path / "pred" / "Track01951.html"):
        browser.get(page.as_uri())
        assert _wait(lambda: browser.execute_script("return !!(window.activityView && window.activityView.ready)"))
        assert _severe(browser) == [], page
        assert browser.execute_script("return window.activityView.drawnPixels('frame-roll')") > 0
        duration = browser.execute_script("return document.getElementById('player').duration")
        assert _wait(lambda: browser.execute_script("return document.getElementById('player').duration > 15")), duration
