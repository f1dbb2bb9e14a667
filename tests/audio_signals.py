"""Test signals and audio files written the way other tools write them."""
import struct
import wave

import av
import numpy as np

from engine.types import SAMPLE_RATE


def tone(seconds, rate, hz=440.0, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def write_wav_int(path, samples, rate, width=2):
    """samples [S] or [S, C] in [-1, 1] as 8-bit (offset binary) or 16-bit PCM."""
    x = np.asarray(samples).reshape(len(samples), -1)
    data = (x * 127 + 128).astype(np.uint8) if width == 1 else (x * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1]), w.setsampwidth(width), w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path


def write_wav_float(path, samples, rate, declared_bytes=None):
    data = np.asarray(samples, "<f4").tobytes()
    size = len(data) if declared_bytes is None else declared_bytes
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 3, 1, rate, rate * 4, 4, 32)
    )
    path.write_bytes(header + b"data" + struct.pack("<I", size) + data)
    return path


def write_encoded(path, samples, rate, codec):
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
        frame.sample_rate = rate
        for converted in av.AudioResampler(
            format=stream.codec_context.format.name, layout="mono", rate=rate
        ).resample(frame):
            container.mux(stream.encode(converted))
        container.mux(stream.encode(None))
    return path


def speech_like(seconds=2.3, seed=0):
    """Voiced segments (a 110-160 Hz harmonic series) with pauses and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 110 + 50 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = (np.sin(2 * np.pi * 1.9 * t) > -0.3).astype(float)
    return (0.2 * voiced * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def espeak_in_a_fresh_process(text: str) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """espeak-ng's speech of `text` at SAMPLE_RATE [S] and its phone segments, made in a new
    process as `python -m engine speak` makes it: within one process espeak-ng's timing drifts from
    call to call by a few samples, enough to move a phone's centre frame."""
    import json
    import subprocess
    import sys

    script = (
        "import json, sys\n"
        "from engine.audio.pcm import to_sample_rate\n"
        "from engine.audio.tts import Espeak\n"
        "from engine.train.gan.data import espeak_segments\n"
        "s = Espeak.get().synthesize(sys.argv[1])\n"
        "pcm = to_sample_rate(s.audio, s.sample_rate)\n"
        "print(json.dumps({'pcm': pcm.tolist(), 'segments': espeak_segments(s)}))\n"
    )
    command = [sys.executable, "-c", script, text]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    data = json.loads(done.stdout)
    return np.asarray(data["pcm"], np.float32), [tuple(s) for s in data["segments"]]
