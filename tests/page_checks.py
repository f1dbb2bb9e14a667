"""What the live page's browser tests check, whichever browser drives the page: `page` is a
cdp.CdpPage (Chromium) or a bidi.BidiPage (Firefox), anything with `await page.evaluate(js)`."""
from __future__ import annotations

import asyncio
import json
from typing import Any

POLL_S = 0.1
CLOCK_WATCH_S = 0.5  # how long to watch the video's currentTime move
VIDEO = "document.getElementById('avatar')"
MIN_FPS = 25
SENTENCE = "Hello there. I am the avatar, and I am speaking to you now."


async def until(page: Any, expression: str) -> Any:
    """Polls a JavaScript expression until it is truthy; returns its value."""
    while not (value := await page.evaluate(expression)):  # noqa: ASYNC110 (polls the page: the browser sends the test no event for it)
        await asyncio.sleep(POLL_S)
    return value


async def check_playing(page: Any, size: int) -> None:
    """The page is connected and plays the avatar's size x size video: its clock moves."""
    assert await page.evaluate("window.avatarStats.state") == "connected"
    assert await page.evaluate(f"[{VIDEO}.videoWidth, {VIDEO}.videoHeight]") == [size, size]
    before = await page.evaluate(f"{VIDEO}.currentTime")
    await asyncio.sleep(CLOCK_WATCH_S)
    assert await page.evaluate(f"{VIDEO}.currentTime") > before


# Installed in the page: on every video frame shown, the mouth (read from the frame drawn to a
# canvas) and the level of the audio playing (the voice sent back), with the time. Mode 'frame'
# keeps each frame itself (a JPEG in window.mouthFrames; the sample holds its index) for
# engine.render.mouth_meter to measure.
WATCH_MOUTH = """
(box, mode) => {
  const video = document.getElementById('avatar');
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  const context = canvas.getContext('2d', {willReadFrequently: true});
  const audio = new AudioContext();
  const analyser = audio.createAnalyser();
  analyser.fftSize = 1024;
  audio.createMediaStreamSource(video.srcObject).connect(analyser);
  const wave = new Float32Array(analyser.fftSize);
  window.mouthSamples = [];
  window.mouthFrames = [];
  const onFrame = () => {
    context.drawImage(video, 0, 0);
    const pixels = context.getImageData(box[0], box[1], box[2] - box[0], box[3] - box[1]).data;
    let sum = 0, dark = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      const luma = (pixels[i] + pixels[i + 1] + pixels[i + 2]) / 3;
      sum += luma; dark += luma < 64;
    }
    const n = pixels.length / 4;
    analyser.getFloatTimeDomainData(wave);
    const level = Math.sqrt(wave.reduce((a, x) => a + x * x, 0) / wave.length);
    let mouth = mode === 'grey' ? sum / n / 255 : dark / n;
    if (mode === 'frame') mouth = window.mouthFrames.push(canvas.toDataURL('image/jpeg', 0.95)) - 1;
    window.mouthSamples.push([performance.now() / 1000, mouth, level]);
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  return audio.state;
}
"""


async def say_and_interrupt(page: Any, box: list[int]) -> None:
    """On a page playing a GradientRenderer avatar (CdpPage or bidi.BidiPage): types SENTENCE and
    presses say, the jaw opens and the server speaks; the interrupt button stops it and the jaw
    closes again."""
    await page.evaluate(
        f"(document.getElementById('say-text').value = {json.dumps(SENTENCE)}, "
        "document.getElementById('say').click())"
    )
    await page.evaluate(f"({WATCH_MOUTH})({box}, 'grey')")
    await until(page, "window.mouthSamples.some(([t, jaw]) => jaw > 0.5)")  # the avatar speaks
    await until(page, "window.avatarStats.server?.speaking")
    await page.evaluate("document.getElementById('interrupt').click()")
    await until(page, "window.avatarStats.server && !window.avatarStats.server.speaking")
    await asyncio.sleep(0.3)
    recent = await page.evaluate("window.mouthSamples.slice(-5).map(([t, jaw]) => jaw)")
    assert max(recent) < 0.1  # closed again
