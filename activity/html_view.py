"""One self-contained HTML page per song: hear it and see what the model heard.

The page has the song in an ``<audio>`` element (embedded as base64 OGG Vorbis, so no file beside it
and no network), the 75 Hz probability roll, the course's 5 s view, and the truth when there is MIDI.
A cursor on both rolls follows playback; clicking a roll seeks there. Everything is drawn by a few
lines of inline JavaScript on ``<canvas>`` elements: no library, no CDN.

Arrays are time first: ``frame_probs`` ``(T, 9)``, ``segment_probs`` ``(S, 9)``, truths likewise.
Probabilities travel as one byte each (0-255), so an hour's roll is 2.4 MB before base64.

For tests and scripts the page sets ``window.activityView = {ready, cursorFraction(), drawnPixels(id)}``.
"""

from __future__ import annotations

import base64
import html
import io
import json

import numpy as np

from .constants import CLASSES, CLIP_SECONDS, FRAME_RATE, NUM_CLASSES, SAMPLE_RATE

# Vorbis at this quality is about 48-64 kbit/s for 24 kHz mono: a 4-minute song is 1.5-2 MB.
OGG_QUALITY = 0.3
# The roll canvas is at most this many pixels wide; wider songs take the max over each pixel's frames.
MAX_CANVAS_WIDTH = 2400


class OggEncoder:
    """Collects 24 kHz mono blocks (float32 ``(n,)``) into OGG Vorbis bytes, in a streaming pass."""

    def __init__(self) -> None:
        import soundfile

        self._buffer = io.BytesIO()
        self._file = soundfile.SoundFile(self._buffer, mode="w", samplerate=SAMPLE_RATE, channels=1,
                                         format="OGG", subtype="VORBIS", compression_level=1.0 - OGG_QUALITY)
        self._closed = False

    def __call__(self, block: np.ndarray) -> None:
        self._file.write(np.clip(block, -1.0, 1.0))

    def finish(self) -> bytes:
        if not self._closed:
            self._file.close()
            self._closed = True
        return self._buffer.getvalue()


def encode_ogg(samples: np.ndarray) -> bytes:
    """OGG Vorbis bytes of ``(N,)`` mono float audio at 24 kHz."""
    encoder = OggEncoder()
    for start in range(0, len(samples), 1 << 16):
        encoder(np.asarray(samples[start : start + (1 << 16)], dtype=np.float32))
    return encoder.finish()


def _bytes_b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).decode("ascii")


def _probs_b64(probs: np.ndarray) -> str:
    return _bytes_b64(np.clip(np.rint(np.asarray(probs, dtype=np.float32) * 255), 0, 255))


def render_html(
    title: str,
    frame_probs: np.ndarray,
    segment_probs: np.ndarray,
    thresholds: np.ndarray,
    duration: float,
    ogg: bytes | None,
    frame_truth: np.ndarray | None = None,
    segment_truth: np.ndarray | None = None,
) -> str:
    """The page as a string. ``frame_probs`` ``(T, 9)``, ``segment_probs`` ``(S, 9)``, ``thresholds`` ``(9,)``,
    ``duration`` seconds, ``ogg`` the audio (None: no player); truths ``(T, 9)`` / ``(S, 9)`` 0/1 or None."""
    frame_probs = np.asarray(frame_probs)
    segment_probs = np.asarray(segment_probs)
    for label, array in (("frame_probs", frame_probs), ("segment_probs", segment_probs)):
        if array.ndim != 2 or array.shape[1] != NUM_CLASSES:
            raise ValueError(f"{label} {array.shape} must be (time, {NUM_CLASSES})")
    data = {
        "title": title, "classes": list(CLASSES), "frameRate": FRAME_RATE, "segmentSeconds": CLIP_SECONDS,
        "duration": float(duration), "thresholds": [float(t) for t in thresholds],
        "frames": int(frame_probs.shape[0]), "segments": int(segment_probs.shape[0]),
        "frameProbs": _probs_b64(frame_probs), "segmentProbs": _probs_b64(segment_probs),
        "frameTruth": None if frame_truth is None else _bytes_b64(frame_truth),
        "segmentTruth": None if segment_truth is None else _bytes_b64(segment_truth),
        "maxWidth": MAX_CANVAS_WIDTH,
    }
    # "</" cannot end the script element early once escaped.
    payload = json.dumps(data).replace("</", "<\\/")
    audio = ("" if ogg is None else
             f'<audio id="player" controls preload="auto" src="data:audio/ogg;base64,{base64.b64encode(ogg).decode("ascii")}"></audio>')
    truth_note = "truth from MIDI: outlined rows (75 Hz) and hit / missed / false alarm colours (5 s)" \
        if frame_truth is not None else "no MIDI given: prediction only"
    return _TEMPLATE.replace("{{TITLE}}", html.escape(title)).replace("{{AUDIO}}", audio) \
        .replace("{{NOTE}}", html.escape(truth_note)).replace("{{DATA}}", payload)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{TITLE}}: instrument activity</title>
<style>
body { font-family: sans-serif; margin: 1em; color: #222; }
.roll { position: relative; margin: 0.3em 0 1.2em 9em; cursor: crosshair; }
.roll canvas { width: 100%; height: 198px; display: block; image-rendering: pixelated; background: #000; }
.roll .cursor { position: absolute; top: 0; bottom: 0; width: 2px; background: #0f0; left: 0; pointer-events: none; }
.labels { position: absolute; left: -9em; top: 0; width: 8.5em; text-align: right; font-size: 12px; }
.labels div { height: 22px; line-height: 22px; }
audio { width: 100%; }
.legend span { display: inline-block; padding: 0 0.5em; margin-right: 0.5em; color: #fff; font-size: 12px; }
</style></head>
<body>
<h2>{{TITLE}}</h2>
{{AUDIO}}
<p class="note">{{NOTE}}. Click a roll to play from there.</p>
<h3>75 Hz frame probability</h3>
<div class="roll" id="frame-wrap"><div class="labels"></div><canvas id="frame-roll" height="198"></canvas><div class="cursor"></div></div>
<h3>5 s segments</h3>
<p class="legend"><span style="background:#4e79a7">predicted (and true)</span><span style="background:#f4a259">missed</span><span style="background:#e15759">false alarm</span></p>
<div class="roll" id="segment-wrap"><div class="labels"></div><canvas id="segment-roll" height="198"></canvas><div class="cursor"></div></div>
<p id="time">0.0 s</p>
<script type="application/json" id="activity-data">{{DATA}}</script>
<script>
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("activity-data").textContent);
  const rows = data.classes.length, rowPx = 22;
  function bytes(b64) {
    if (b64 === null) return null;
    const bin = atob(b64), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  // Stops of a magma-like map, 0 -> black, 1 -> pale yellow.
  const stops = [[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]];
  function colour(v) {
    const x = Math.min(Math.max(v, 0), 1) * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
    return stops[i].map((c, k) => Math.round(c + f * (stops[i + 1][k] - c)));
  }
  function labels(wrap) {
    wrap.querySelector(".labels").innerHTML = data.classes.map(c => "<div>" + c + "</div>").join("");
  }
  function drawFrames() {
    const canvas = document.getElementById("frame-roll"), n = data.frames;
    const width = Math.max(1, Math.min(n, data.maxWidth));
    canvas.width = width; canvas.height = rows * rowPx;
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(width, rows * rowPx);
    const probs = bytes(data.frameProbs), truth = bytes(data.frameTruth);
    for (let x = 0; x < width; x++) {
      const a = Math.floor(x * n / width), b = Math.max(a + 1, Math.floor((x + 1) * n / width));
      for (let c = 0; c < rows; c++) {
        let p = 0, t = 0;
        for (let f = a; f < b && f < n; f++) {
          p = Math.max(p, probs[f * rows + c]);
          if (truth) t = Math.max(t, truth[f * rows + c]);
        }
        const rgb = colour(p / 255);
        for (let y = c * rowPx; y < (c + 1) * rowPx; y++) {
          // True activity: a cyan band along the top and bottom of the row.
          const edge = truth && t && (y - c * rowPx < 3 || (c + 1) * rowPx - y <= 3);
          const k = (y * width + x) * 4;
          img.data[k] = edge ? 0 : rgb[0]; img.data[k + 1] = edge ? 255 : rgb[1];
          img.data[k + 2] = edge ? 255 : rgb[2]; img.data[k + 3] = 255;
        }
      }
    }
    ctx.putImageData(img, 0, 0);
  }
  function drawSegments() {
    const canvas = document.getElementById("segment-roll"), n = data.segments;
    canvas.width = Math.max(1, n); canvas.height = rows * rowPx;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    const probs = bytes(data.segmentProbs), truth = bytes(data.segmentTruth);
    for (let s = 0; s < n; s++) {
      for (let c = 0; c < rows; c++) {
        const pred = probs[s * rows + c] / 255 >= data.thresholds[c], t = truth ? truth[s * rows + c] : 0;
        const fill = pred && (t || !truth) ? "#4e79a7" : pred ? "#e15759" : t ? "#f4a259" : null;
        if (fill) { ctx.fillStyle = fill; ctx.fillRect(s, c * rowPx, 1, rowPx); }
      }
    }
  }
  const player = document.getElementById("player");
  // The 5 s view covers whole segments only; its x axis ends at segments * 5 s, not at the song's end.
  const spans = { "frame-wrap": data.frames / data.frameRate, "segment-wrap": data.segments * data.segmentSeconds };
  function now() { return player ? player.currentTime : 0; }
  function placeCursors() {
    for (const id in spans) {
      const span = spans[id], frac = span > 0 ? Math.min(now() / span, 1) : 0;
      document.querySelector("#" + id + " .cursor").style.left = (100 * frac) + "%";
    }
    document.getElementById("time").textContent = now().toFixed(2) + " s";
  }
  function follow() { placeCursors(); if (player && !player.paused) requestAnimationFrame(follow); }
  for (const id in spans) {
    const wrap = document.getElementById(id);
    labels(wrap);
    wrap.addEventListener("click", function (event) {
      const canvas = wrap.querySelector("canvas"), box = canvas.getBoundingClientRect();
      const frac = Math.min(Math.max((event.clientX - box.left) / box.width, 0), 1);
      if (player) player.currentTime = Math.min(frac * spans[id], data.duration);
    });
  }
  if (player) {
    for (const name of ["timeupdate", "seeked", "seeking", "loadedmetadata"]) player.addEventListener(name, placeCursors);
    player.addEventListener("play", follow);
  }
  drawFrames(); drawSegments(); placeCursors();
  window.activityView = {
    ready: true,
    cursorFraction: function (id) { return parseFloat(document.querySelector("#" + id + " .cursor").style.left) / 100; },
    drawnPixels: function (id) {
      const canvas = document.getElementById(id), d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      let lit = 0;
      for (let k = 0; k < d.length; k += 4) if (d[k] + d[k + 1] + d[k + 2] > 60) lit++;
      return lit;
    },
  };
})();
</script>
</body></html>
"""
