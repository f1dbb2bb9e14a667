"""FACIAL-GAN inference with a randomly initialised network: shapes, padding, streaming
causality and chunking, seams, silence, and the errors for mismatched weights or features."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.pipeline.animator import AnimatorError, Gan, StreamConfig, StreamingAnimator, animate_offline
from engine.pipeline.idle import IdleMotion
from engine.types import EXP_START, EXPRESSION_NAMES, NUM_PARAMS, PARAM_NAMES, RIG_VERSION, FaceParams
from models.facial_gan import FacialGAN, FacialGANConfig, checkpoint

DIM = 6
CONFIG = FacialGANConfig(feature_dim=DIM, num_params=NUM_PARAMS, window=32, width=4, unet_channels=(1, 2, 2))
JAW = EXP_START + EXPRESSION_NAMES.index("jawOpen")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _gan(seed: int = 0) -> Gan:
    torch.manual_seed(seed)
    model = FacialGAN(CONFIG)
    model.param_std.fill_(10.0)  # a random network says little: scale its offsets to a visible size
    model.param_mean[EXP_START:] = 0.5  # rig weights away from their lower bound (clipped at 0)
    return Gan(model.eval(), "test", np.zeros(DIM, np.float32))


def _features(n: int, seed: int = 0) -> np.ndarray:
    """Smooth random features, like speech features varying over a few frames."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n + 8, DIM))
    return np.stack([np.convolve(raw[:, k], np.ones(5) / 5, "valid")[:n] for k in range(DIM)], 1).astype(
        np.float32
    )


def _stream(gan: Gan, features: np.ndarray, chunks: list[int], config=StreamConfig()) -> np.ndarray:
    animator = StreamingAnimator(gan, FaceParams.neutral(), config)
    out, start = [], 0
    for size in chunks:
        out.append(animator.push(features[start : start + size]).array)
        start += size
    assert start == len(features)
    out.append(animator.flush().array)
    return np.concatenate(out)


@pytest.mark.parametrize("frames", [1, 5, 31, 32, 33, 100])
def test_offline_any_length_one_row_per_frame(frames):
    out = animate_offline(_gan(), _features(frames), FaceParams.neutral())
    assert out.array.shape == (frames, NUM_PARAMS) and np.isfinite(out.array).all()


def test_offline_adds_the_rest_and_keeps_ranges():
    rest = FaceParams.neutral()
    rest.array[0, :3] = [0.2, -0.1, 0.05]
    gan, features = _gan(), _features(60)
    out = animate_offline(gan, features, rest)
    plain = animate_offline(gan, features, FaceParams.neutral())
    assert np.allclose(out.pose - plain.pose, rest.pose, atol=1e-6)
    assert (out.blink >= 0).all() and (out.blink <= 1).all() and (out.exp >= 0).all()


class _Echo(Gan):
    """A "network" that outputs its features' first column as the pitch and the lip press of each
    frame: what smoothing does to a known curve can be read off exactly."""

    def window(self, padded, initial, last=None):  # noqa: ANN001
        c = self.model.config
        curve = padded[c.local_before : len(padded) - c.local_after, 0]  # each frame's own feature
        out = np.zeros((len(curve), NUM_PARAMS), np.float32)
        out[:, 0] = out[:, PRESS] = curve
        return out[-last:] if last else out

    def tail(self, last):  # noqa: ANN001
        return lambda padded, initial: self.window(padded, initial, last)


PRESS = EXP_START + EXPRESSION_NAMES.index("mouthPress_L")


def test_the_lips_are_not_smoothed_away():
    """A two-frame lip closure (a p/b/m) comes through the offline and the streaming smoothing
    whole, while the head pose's spike of the same shape is smoothed."""
    gan = _Echo(_gan().model, "test", np.zeros(DIM, np.float32))
    features = np.zeros((60, DIM), np.float32)
    features[30:32, 0] = 1.0
    offline = animate_offline(gan, features, FaceParams.neutral()).array
    streamed = _stream(gan, features, [7] * 8 + [4])
    for out in (offline, streamed):
        assert np.allclose(out[:, PRESS], features[:, 0], atol=1e-6)
        assert out[30:32, 0].max() < 0.9  # the pose is smoothed


@pytest.mark.parametrize("last", [1, 3])
def test_the_streaming_update_on_cpu_is_the_torch_window(last):
    """Gan.tail (ONNX Runtime on CPU) = Gan.window (torch) for the window's last frames."""
    gan, c = _gan(), CONFIG
    padded = _features(c.window + c.local_window - 1, seed=1)
    initial = np.random.default_rng(2).normal(size=NUM_PARAMS).astype(np.float32)
    tail = gan.tail(last)
    assert tail is gan.tail(last)  # made once
    assert tail(padded, initial).shape == (last, NUM_PARAMS)
    assert np.allclose(tail(padded, initial), gan.window(padded, initial, last), atol=1e-4)


def test_streaming_is_independent_of_chunking_and_complete():
    gan, features = _gan(), _features(90)
    whole = _stream(gan, features, [90])
    assert whole.shape == (90, NUM_PARAMS)
    assert np.array_equal(whole, _stream(gan, features, [1] * 90))
    assert np.array_equal(whole, _stream(gan, features, [7, 30, 2, 51]))


@pytest.mark.parametrize("frames", [1, 2, 3, 10])
def test_streaming_short_input(frames):
    assert _stream(_gan(), _features(frames), [frames]).shape == (frames, NUM_PARAMS)


def test_streaming_is_causal_within_its_look_ahead():
    config = StreamConfig(lookahead=2, stride=3)
    gan, a = _gan(), _features(80)
    b = a.copy()
    b[50:] += 2.0  # different speech from frame 50 on
    out_a, out_b = _stream(gan, a, [80], config), _stream(gan, b, [80], config)
    horizon = 50 - config.lookahead - config.stride + 1  # frames emitted before any of frame 50 was seen
    assert np.array_equal(out_a[:horizon], out_b[:horizon])
    assert not np.allclose(out_a[50:], out_b[50:])


def test_streaming_latency_is_bounded():
    config = StreamConfig(lookahead=2, stride=2)
    animator = StreamingAnimator(_gan(), FaceParams.neutral(), config)
    emitted = 0
    for k, row in enumerate(_features(40)):
        emitted += len(animator.push(row))
        assert emitted >= (k + 1) - config.latency_frames
        assert emitted % config.stride == 0
    assert config.latency_frames == 3  # 100 ms at 30 fps


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("config", [StreamConfig(lookahead=2, stride=2), StreamConfig(lookahead=6, stride=4)])
def test_window_seams_do_not_jump(seed, config):
    """Each update's first frames cross-fade from the previous window's look-ahead: the step from
    one update's last frame to the next one's first is no bigger than steps inside an update."""
    gan, features = _gan(seed), _features(200, seed)
    pose = _stream(gan, features, [200], config)[:, :6]  # unclipped columns
    assert pose[20:].std(0).min() > 1e-3  # something moves
    step = np.abs(np.diff(pose, axis=0)).mean(1)  # step[i]: frame i -> i + 1
    seams = step[config.stride - 1 :: config.stride]
    inside = np.delete(step, np.arange(config.stride - 1, len(step), config.stride))
    assert seams.mean() < 1.1 * inside.mean()


def test_silence_gives_rest_mouth_and_idle_motion(avatar):
    gan = _gan()
    torch.nn.init.zeros_(gan.model.frame.fc2.weight)
    torch.nn.init.zeros_(gan.model.frame.fc2.bias)
    gan.model.param_mean.zero_()  # offsets = 0: a still mouth
    idle = IdleMotion(avatar.reference_params, avatar.motion, seed=0)
    out = animate_offline(gan, _features(30 * 20), avatar.reference_params, idle)
    assert np.allclose(out.exp, avatar.reference_params.exp)  # the mouth at rest
    assert out.pose[:, 1].std() > 0.3 * avatar.motion.pose_std[1]  # the head sways
    blinks = np.sum(np.diff((out.blink > 0.5).astype(int)) == 1)
    assert 2 <= blinks <= 10  # ~17 per minute over 20 s
    gan.model.frame.fc2.bias.data[JAW] = 3.0  # jawOpen 0.3: now the mouth moves: no idle sway while speaking
    speaking = animate_offline(gan, _features(30 * 5), avatar.reference_params, idle)
    assert np.allclose(speaking.pose, avatar.reference_params.pose, atol=1e-6)


def test_features_of_the_wrong_dimension_are_refused():
    gan = _gan()
    with pytest.raises(AnimatorError, match="do not fit"):
        animate_offline(gan, np.zeros((10, DIM + 1), np.float32), FaceParams.neutral())
    with pytest.raises(AnimatorError, match="do not fit"):
        StreamingAnimator(gan, FaceParams.neutral()).push(np.zeros((4, DIM - 1), np.float32))
    with pytest.raises(AnimatorError, match="no feature frames"):
        animate_offline(gan, np.zeros((0, DIM), np.float32), FaceParams.neutral())


def test_weights_files_are_checked(tmp_path):
    gan = _gan()
    good = tmp_path / "good.pt"
    meta = {"feature_kind": "test", "rig_version": RIG_VERSION, "param_names": list(PARAM_NAMES)}
    torch.save(checkpoint(gan.model, meta), good)
    loaded = Gan.load(good)
    assert loaded.feature_kind == "test" and loaded.model.config == CONFIG
    old = tmp_path / "old.pt"
    torch.save(checkpoint(gan.model, {**meta, "rig_version": RIG_VERSION - 1}), old)
    with pytest.raises(AnimatorError, match="rig version"):
        Gan.load(old)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(AnimatorError, match="not FACIAL-GAN weights"):
        Gan.load(junk)
    with pytest.raises(AnimatorError, match="no such"):
        Gan.load(tmp_path / "missing.pt")


def test_stream_config_is_validated():
    with pytest.raises(AnimatorError):
        StreamConfig(stride=0)
    with pytest.raises(AnimatorError, match="exceed the window"):
        StreamingAnimator(_gan(), FaceParams.neutral(), StreamConfig(lookahead=30, stride=5))
