"""The feature-extractor interface: frame count rule, streaming == offline for every registered kind
and several chunk sizes, declared look-ahead honoured, session-clock pts, registry errors."""
import importlib

import numpy as np
import pytest
import torch
from audio_signals import speech_like
from deepspeech_files import write_pb, write_pbmm

from engine.audio.features import (
    CLOCK_PERIOD,
    PROVIDERS,
    FeatureError,
    FeatureExtractor,
    FeatureStream,
    extractor,
    frame_windows,
    kinds,
    num_frames,
)
from engine.audio.pcm import BadAudioError
from engine.types import FPS, SAMPLE_RATE, AudioChunk, frame_pts

CHUNKS = (160, 320, 533, 1600, 7919)  # 10 ms, 20 ms, one frame, 100 ms, an odd size


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FrameEnergy(FeatureExtractor):
    """A toy extractor for the base class: each frame's mean square and the next frame's."""

    kind, dim, lookahead_frames = "energy", 2, 1

    def _offline(self, audio):
        n = num_frames(len(audio))
        padded = np.pad(audio, (0, frame_pts(n + 1) - len(audio)))
        energy = np.array([np.mean(padded[frame_pts(i) : frame_pts(i + 1)] ** 2) for i in range(n + 1)])
        return np.stack([energy[:n], energy[1 : n + 1]], 1)

    def stream(self):
        return _FrameEnergyStream(self)


class _FrameEnergyStream(FeatureStream):
    def __init__(self, extractor):
        super().__init__(2)
        self.extractor, self.audio = extractor, np.zeros(0, np.float32)

    def _process(self, pcm):
        self.audio = np.concatenate([self.audio, pcm])
        ready = max(
            self.frames_emitted, num_frames(len(self.audio) + 1) - 2
        )  # frames whose next frame is whole
        return self.extractor._offline(self.audio[: frame_pts(ready + 1)])[self.frames_emitted : ready]

    def _finish(self):
        return self.extractor._offline(self.audio)[self.frames_emitted :]


def run_stream(ex, audio, chunk, start_pts=0):
    """Push `audio` in chunks from `start_pts`; the frames and, per frame, the samples pushed when it came."""
    stream, frames, seen_at = ex.stream(), [], []
    for start in range(0, len(audio), chunk):
        new = stream.push(AudioChunk(audio[start : start + chunk], start_pts + start))
        frames += new
        seen_at += [min(start + chunk, len(audio))] * len(new)
    tail = stream.flush()
    return frames + tail, seen_at + [None] * len(tail)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Random-weight models in each kind's file format, so every kind is tested without training."""
    folder = tmp_path_factory.mktemp("models")
    write_pbmm(folder / "v093.pbmm", n_hidden=48)
    write_pb(folder / "v010.pb", "0.1.0", n_hidden=48)
    files = {("deepspeech", "0.9.3"): folder / "v093.pbmm", ("deepspeech", "0.1.0"): folder / "v010.pb"}
    if importlib.util.find_spec(PROVIDERS["builtin"]) is not None:
        from models.phonetic import PhoneticConfig, PhoneticNet, save_phonetic

        torch.manual_seed(0)
        save_phonetic(PhoneticNet(PhoneticConfig()).eval(), str(folder / "phonetic.pt"))
        files["builtin", "random"] = folder / "phonetic.pt"
    return files


# Each kind with random weights; "builtin default" is the shipped model.
VARIANTS = {"deepspeech": ("0.9.3", "0.1.0"), "builtin": ("random", "default")}
EXTRACTORS = [("energy (base class)", None)] + [
    (kind, variant) for kind in kinds() for variant in VARIANTS.get(kind, ("default",))
]


@pytest.fixture(params=EXTRACTORS, ids=lambda p: p[0] + (f" {p[1]}" if p[1] else ""))
def any_extractor(request, model_files):
    kind, variant = request.param
    if kind.startswith("energy"):
        return FrameEnergy()
    if importlib.util.find_spec(PROVIDERS.get(kind, "engine")) is None:
        pytest.skip(f"kind {kind} is not installed (no module {PROVIDERS[kind]})")
    if variant == "default":
        try:
            return extractor(kind)
        except FeatureError as e:  # e.g. weights not trained yet: the random-weight variant still runs
            pytest.skip(f"{kind}'s default model is not available: {e}")
    return extractor(kind, str(model_files[kind, variant]))


def test_num_frames_rule():
    assert [num_frames(s) for s in (0, 1, 533, 534, 1600, 1601, SAMPLE_RATE)] == [0, 1, 1, 2, 3, 4, FPS]
    for s in range(0, 5000, 7):  # the smallest N with frame_pts(N) >= S
        n = num_frames(s)
        assert frame_pts(n) >= s and (n == 0 or frame_pts(n - 1) < s)
    assert CLOCK_PERIOD == 1600 and frame_pts(3) == CLOCK_PERIOD


@pytest.mark.parametrize("chunk", CHUNKS)
def test_streaming_equals_offline(any_extractor, chunk):
    audio = speech_like()
    offline = any_extractor.offline(audio)
    assert offline.shape == (num_frames(len(audio)), any_extractor.dim) and offline.dtype == np.float32
    assert np.isfinite(offline).all() and offline.std() > 0
    frames, _ = run_stream(any_extractor, audio, chunk)
    assert [f.pts for f in frames] == [frame_pts(i) for i in range(len(offline))]
    np.testing.assert_allclose(np.stack([f.values for f in frames]), offline, atol=1e-4, rtol=0)


def test_declared_lookahead_is_honoured(any_extractor):
    audio = speech_like(1.7, seed=3)
    frames, seen_at = run_stream(any_extractor, audio, 320)
    lookahead = any_extractor.lookahead_frames
    for i, pushed in enumerate(seen_at):
        needed = None if lookahead is None else frame_pts(i + 1 + lookahead)
        if needed is not None and needed <= len(audio):  # not a frame that needs the end of input
            assert pushed is not None and pushed <= -(-needed // 320) * 320, f"frame {i} came late"
    if lookahead is None:
        assert all(pushed is None for pushed in seen_at)  # whole-input extractors answer at flush


def test_stream_on_the_session_clock(any_extractor):
    """A stream starting mid-session: frames on the session's grid, silence before the first chunk."""
    audio, start = speech_like(1.1, seed=5), 5 * CLOCK_PERIOD + 777
    origin = start - start % CLOCK_PERIOD
    frames, _ = run_stream(any_extractor, audio, 1000, start_pts=start)
    expected = any_extractor.offline(np.concatenate([np.zeros(start - origin, np.float32), audio]))
    assert [f.pts for f in frames] == [frame_pts(15 + i) for i in range(len(expected))]
    np.testing.assert_allclose(np.stack([f.values for f in frames]), expected, atol=1e-4, rtol=0)


def test_gap_is_silence_and_overlap_is_refused():
    ex, audio = FrameEnergy(), speech_like(0.5)
    stream = ex.stream()
    frames = (
        stream.push(AudioChunk(audio[:3000], 0))
        + stream.push(AudioChunk(audio[3000:], 3500))
        + stream.flush()
    )
    expected = ex.offline(np.concatenate([audio[:3000], np.zeros(500, np.float32), audio[3000:]]))
    np.testing.assert_allclose(np.stack([f.values for f in frames]), expected, atol=1e-6)
    stream = ex.stream()
    stream.push(AudioChunk(audio[:3000], 0))
    with pytest.raises(FeatureError, match="overlaps"):
        stream.push(AudioChunk(audio[3000:], 2999))


def test_stream_misuse_and_bad_samples():
    stream = FrameEnergy().stream()
    assert stream.flush() == []  # nothing pushed, nothing out
    with pytest.raises(FeatureError, match="push after flush"):
        stream.push(AudioChunk(np.zeros(10, np.float32), 0))
    with pytest.raises(BadAudioError, match="NaN or infinite sample at 0.001 s"):
        FrameEnergy().stream().push(AudioChunk(np.array([0.0] * 16 + [np.inf], np.float32), 0))
    with pytest.raises(BadAudioError, match="NaN"):
        FrameEnergy().offline(np.array([0.1, np.nan], np.float32))
    with pytest.raises(BadAudioError, match="mono"):
        FrameEnergy().offline(np.zeros((100, 2), np.float32))


def test_registry():
    assert {"builtin", "deepspeech"} <= set(kinds())
    with pytest.raises(FeatureError, match="unknown feature kind 'nope'"):
        extractor("nope")
    with pytest.raises(FeatureError, match="needs a model file"):
        extractor("deepspeech")


def test_frame_windows_as_facial():
    features = np.arange(5, dtype=np.float32)[:, None] + 1  # frames 1..5
    windows = frame_windows(features)
    assert windows.shape == (5, 16, 1)
    # FACIAL (audio_handler.py): frame t sees t-8..t+7, zeros beyond the ends.
    np.testing.assert_array_equal(windows[0, :, 0], [0] * 8 + [1, 2, 3, 4, 5] + [0] * 3)
    np.testing.assert_array_equal(windows[4, :, 0], [0] * 4 + [1, 2, 3, 4, 5] + [0] * 7)
    edge = frame_windows(features, pad="edge")
    np.testing.assert_array_equal(edge[0, :, 0], [1] * 9 + [2, 3, 4, 5] + [5] * 3)
