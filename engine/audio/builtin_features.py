"""The built-in feature kind: phone posteriors and articulatory cues from the shipped phonetic model.

Feature row per video frame (dim = NUM_PHONES + 2 = 42):
  [0:40]  phone *probabilities* (PHONES order, SIL first; they sum to 1),
  [40]    voicing probability (vocal folds vibrating),
  [41]    loudness in the 80-3800 Hz speech band against the speaker's running level
          (engine/audio/loudness.py, from the voiced frames): 1 at that level or above, 0 at
          LOUDNESS_RANGE_DB below it or before the first voiced frame. A microphone's gain does not
          change it; a louder syllable than the voice's others does.
The network runs at 50 steps/s; a frame averages the steps it overlaps, weighted by the overlap.
Look-ahead: the network's delay (lookahead_steps, 80 ms by default) plus the rounding of a frame's
end up to a step: lookahead_frames = 3 (100 ms) for the shipped model.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from threading import Lock

import numpy as np
import torch

from engine.audio.features import FeatureError, FeatureExtractor, FeatureStream, num_frames, register
from engine.audio.loudness import RunningLevel
from engine.audio.phones import NUM_PHONES
from engine.onnx_cpu import OnnxFunction
from engine.types import SAMPLE_RATE, frame_pts
from models.phonetic import LogMel, PhoneticNet, load_phonetic

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights" / "phonetic_builtin.pt"
LOUDNESS_RANGE_DB = 40.0


class BuiltinExtractor(FeatureExtractor):
    kind = "builtin"

    def __init__(self, model: str | Path | None = None) -> None:
        path = Path(model) if model is not None else DEFAULT_WEIGHTS
        if not path.is_file():
            raise FeatureError(f"{path}: no such built-in feature model file")
        try:
            self.model: PhoneticNet = load_phonetic(str(path))
        except Exception as e:  # a torch pickle error, a missing key or a wrong shape: all one problem
            raise FeatureError(f"{path}: not a built-in phonetic model ({type(e).__name__}: {e})") from None
        config = self.model.config
        if config.sample_rate != SAMPLE_RATE or config.num_phones != NUM_PHONES:
            raise FeatureError(f"{path}: model made for {config.sample_rate} Hz / {config.num_phones} phones")
        self.dim = NUM_PHONES + 2
        self.lookahead_frames = _lookahead_frames(config.step_samples, config.lookahead_samples)
        self._live_step: OnnxFunction | None = None
        self._live_step_lock = Lock()

    def _offline(self, audio: np.ndarray) -> np.ndarray:
        stream = _StepStream(self, _TorchSteps(self.model))
        return np.concatenate([stream.process(audio), stream.finish()])

    def stream(self) -> FeatureStream:
        return _BuiltinStream(self.dim, _StepStream(self, _OnnxSteps(self.live_step(), self.model)))

    def prepare_streaming(self) -> None:
        self.live_step()

    def live_step(self) -> OnnxFunction:
        """One network step through ONNX Runtime (engine/onnx_cpu.py): (mels [1, n_mels, stride],
        *state) -> (logits [1, NUM_PHONES + 1, 1], *state), made once and shared by the streams."""
        with self._live_step_lock:
            if self._live_step is None:
                c, state = self.model.config, self.model.initial_state()
                names = ["mels"] + [f"state{i}" for i in range(len(state))]
                example = (torch.zeros(1, c.n_mels, c.stride), *state)
                self._live_step = OnnxFunction(_Step(self.model), example, names)
            return self._live_step


def _band_power(log_mels: np.ndarray) -> np.ndarray:
    """[T, n_mels] log-mels -> [T] power summed over the bands (the log floor removed)."""
    return np.maximum(np.exp(log_mels.astype(np.float64)) - 1e-5, 0).sum(axis=1)


def _last_step(frame: int, step_samples: int) -> int:
    """Index of the last network step that overlaps video frame `frame`."""
    return -(-frame_pts(frame + 1) // step_samples) - 1


def _lookahead_frames(step_samples: int, lookahead_samples: int) -> int:
    """Fewest whole frames after a frame's end that cover the audio its features wait for."""
    worst = max(
        (_last_step(i, step_samples) + 1) * step_samples + lookahead_samples - frame_pts(i + 1)
        for i in range(SAMPLE_RATE)
    )
    frames = 0
    while frame_pts(frames) < worst:
        frames += 1
    return frames


class _Step(torch.nn.Module):
    """PhoneticNet.stream as a module of tensors, for export."""

    def __init__(self, model: PhoneticNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, mels: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, new_state = self.model.stream(mels, list(state))
        return (logits, *new_state)


# normalised mels [steps * stride, n_mels] -> network outputs [steps, NUM_PHONES + 1] (float64),
# carrying the network's state from call to call
Steps = Callable[[np.ndarray], np.ndarray]


class _TorchSteps:
    """The network over many steps at once (offline input): one matrix product per layer."""

    def __init__(self, model: PhoneticNet) -> None:
        self.model, self.state = model, model.initial_state()

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits, self.state = self.model.stream(torch.from_numpy(mels).T[None], self.state)
        return logits[0].T.double().numpy()


class _OnnxSteps:
    """The network a step at a time through ONNX Runtime (live input: a step or two per push)."""

    def __init__(self, step: OnnxFunction, model: PhoneticNet) -> None:
        self.step, self.stride = step, model.config.stride
        self.state = [s.numpy() for s in model.initial_state()]

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        out = []
        for step_mels in mels.reshape(-1, self.stride, mels.shape[1]):
            logits, *self.state = self.step(np.ascontiguousarray(step_mels.T[None]), *self.state)
            out.append(logits[0, :, 0])
        return np.array(out, np.float64).reshape(-1, NUM_PHONES + 1)


class _StepStream:
    """Audio -> network steps -> finished video-frame rows, for one contiguous input from sample 0."""

    def __init__(self, extractor: BuiltinExtractor, network: Steps) -> None:
        self.model = extractor.model
        self.config = config = self.model.config
        self.log_mel = LogMel(config)
        self.cmvn = self.model.cmvn()
        self.network = network
        self.pending_mels = np.zeros((0, config.n_mels), np.float32)  # normalised, short of a step
        self.pending_power = np.zeros(0)  # band power of the same mel frames
        self.step_power = np.zeros(0)  # per step not yet described by the (delayed) network
        self.to_skip = config.lookahead_steps  # the first outputs describe steps before the start
        self.steps = np.zeros((0, NUM_PHONES + 2))  # finished step rows from step `first_step` on
        self.first_step = 0
        self.frames_done = 0
        self.samples = 0
        self.frame_limit: int | None = None  # set at the end of input
        self.level = RunningLevel()

    def process(self, pcm: np.ndarray) -> np.ndarray:
        self.samples += len(pcm)
        raw = self.log_mel.push(pcm)
        mels = np.concatenate([self.pending_mels, self.cmvn.push(raw)])
        power = np.concatenate([self.pending_power, _band_power(raw)])
        usable = len(mels) // self.config.stride * self.config.stride
        self.pending_mels, self.pending_power = mels[usable:], power[usable:]
        if usable:
            self.step_power = np.concatenate(
                [self.step_power, power[:usable].reshape(-1, self.config.stride).mean(1)]
            )
            out = self.network(mels[:usable])[self.to_skip :]  # [steps, NUM_PHONES + 1]
            self.to_skip -= min(self.to_skip, usable // self.config.stride)
            self._add_steps(out)
        return self._ready_frames()

    def finish(self) -> np.ndarray:
        """End of input: push silence until every frame covering the received audio is complete."""
        self.frame_limit = num_frames(self.samples)
        if self.frame_limit == self.frames_done:
            return np.zeros((0, NUM_PHONES + 2), np.float32)
        c = self.config
        needed = (_last_step(self.frame_limit - 1, c.step_samples) + 1 + c.lookahead_steps) * c.step_samples
        return self.process(np.zeros(max(0, needed - self.samples), np.float32))

    def _add_steps(self, out: np.ndarray) -> None:
        logits = out[:, :NUM_PHONES]
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        voicing = 1 / (1 + np.exp(-out[:, NUM_PHONES:]))
        power, self.step_power = self.step_power[: len(out)], self.step_power[len(out) :]
        self.steps = np.concatenate([self.steps, np.concatenate([probs, voicing, power[:, None]], 1)])

    def _ready_frames(self) -> np.ndarray:
        step = self.config.step_samples
        available = self.first_step + len(self.steps)  # steps [0, available) are known
        rows = []
        while (self.frame_limit is None or self.frames_done < self.frame_limit) and _last_step(
            self.frames_done, step
        ) < available:
            start, end = frame_pts(self.frames_done), frame_pts(self.frames_done + 1)
            first = start // step
            edges = np.clip(np.arange(first, _last_step(self.frames_done, step) + 2) * step, start, end)
            weights = np.diff(edges) / (end - start)
            rows.append(
                weights @ self.steps[first - self.first_step : first - self.first_step + len(weights)]
            )
            self.frames_done += 1
        if rows:  # steps wholly before the next frame are no longer needed
            drop = frame_pts(self.frames_done) // step - self.first_step
            self.steps, self.first_step = self.steps[drop:], self.first_step + drop
        out = np.array(rows).reshape(-1, NUM_PHONES + 2)
        db = 10 * np.log10(np.maximum(out[:, -1], 1e-12))  # any fixed reference: only differences count
        relative_db = self.level.push(db, out[:, NUM_PHONES] > 0.5)
        out[:, -1] = np.clip(1 + relative_db / LOUDNESS_RANGE_DB, 0, 1)
        return out.astype(np.float32)


class _BuiltinStream(FeatureStream):
    def __init__(self, dim: int, steps: _StepStream) -> None:
        super().__init__(dim)
        self.steps = steps

    def _process(self, pcm: np.ndarray) -> np.ndarray:
        return self.steps.process(pcm)

    def _finish(self) -> np.ndarray:
        return self.steps.finish()


register("builtin", lambda model: BuiltinExtractor(model))
