"""DeepSpeech character logits as speech features (kind "deepspeech"): FACIAL's recipe on our port.

From audio to the network's input, as each release ran it:
- v0.9.3 (the native client's streaming path, native_client/deepspeech.cc): samples in [-1, 1];
  TfMfcc on every whole 512-sample window every 320 samples, plus one last window at the end of
  input holding what is left (192 to 511 samples) zero-padded; each MFCC step gets 9 past and 9
  future steps, zeros beyond the ends; the LSTM runs on with its state carried.
- v0.1.0 (VOCA / FACIAL's audio_handler.py, DeepSpeech util/audio.py): samples as int16 values;
  PsfMfcc at 100 steps per second, every second step kept; zero context beyond the ends; the whole
  utterance's inputs whitened by their global mean and standard deviation; the bidirectional LSTM.
Logit j covers the audio from sample j * 320 on (50 per second). FACIAL's resampling to video
frames (VOCA's interpolate_features): frame i at time i / FPS, logit j at j / 50 s, linear
interpolation, the last logit held past the end.

Streaming: v0.9.3 streams with a look-ahead of 6 frames (200 ms: 9 future MFCC steps, the 32 ms
window, and the next logit for interpolation). v0.1.0 cannot: its inputs are whitened with the whole
utterance's statistics and its LSTM also runs backwards from the end, so its stream returns every
frame at flush (lookahead_frames = None).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.audio.deepspeech_import import ImportedDeepSpeech, load_deepspeech
from engine.audio.features import FeatureError, FeatureExtractor, FeatureStream, num_frames, register
from engine.audio.mfcc import PsfMfcc, TfMfcc, tf_frames
from engine.types import FPS, SAMPLE_RATE, frame_pts
from models.deepspeech import LstmState

INT16_SCALE = 32768  # v0.1.0's front end saw int16 sample values (VOCA also truncated them to integers)


def logit_frames(logits: np.ndarray, frames: np.ndarray, step: int, first_logit: int = 0) -> np.ndarray:
    """logits [M, C] (logit j at sample j * step; logits[0] is logit `first_logit`) -> [len(frames), C]
    at video frames `frames` (frame i at sample i * SAMPLE_RATE / FPS): linear interpolation, the
    last logit held past the end."""
    position = np.asarray(frames, np.int64) * SAMPLE_RATE  # in units of 1 / (FPS * step) logits
    low, rest = np.divmod(position, FPS * step)
    weight = (rest / (FPS * step)).astype(np.float32)[:, None]
    last = first_logit + len(logits) - 1
    below, above = np.minimum(low, last) - first_logit, np.minimum(low + 1, last) - first_logit
    return (1 - weight) * logits[below] + weight * logits[above]


def upper_logit(frame: int, step: int) -> int:
    """The last logit that video frame `frame` interpolates from: ceil(frame * SAMPLE_RATE / (FPS * step))."""
    return -(-frame * SAMPLE_RATE // (FPS * step))


def with_context(mfcc: np.ndarray, context: int) -> np.ndarray:
    """mfcc [M + 2 context, F] (already padded) -> windows [M, (2 context + 1) F], step by step."""
    windows = np.lib.stride_tricks.sliding_window_view(mfcc, (2 * context + 1, mfcc.shape[1]))[:, 0]
    return windows.reshape(len(windows), -1)


class DeepSpeechExtractor(FeatureExtractor):
    kind = "deepspeech"

    def __init__(self, model: str | Path | ImportedDeepSpeech, device: str = "cpu") -> None:
        imported = model if isinstance(model, ImportedDeepSpeech) else load_deepspeech(model)
        self.network = imported.network.to(device).eval()
        self.config = imported.network.config
        self.device = device
        self.dim = self.config.n_classes
        if self.config.bidirectional:
            self.psf_mfcc = PsfMfcc()
            self.step = 2 * self.psf_mfcc.config.step  # every second MFCC step
            self.lookahead_frames = None
        else:
            if imported.mfcc is None:
                raise FeatureError("a unidirectional DeepSpeech model needs its MFCC front end")
            self.mfcc = TfMfcc(imported.mfcc)
            self.step = imported.mfcc.step
            self.lookahead_frames = self._streaming_lookahead()

    @torch.no_grad()
    def logits(self, inputs: np.ndarray, state: LstmState | None = None) -> tuple[np.ndarray, LstmState]:
        """Network inputs [M, 494] -> logits [M, C] and the LSTM state after them."""
        x = torch.tensor(inputs, dtype=torch.float32, device=self.device)[None]
        logits, state = self.network(x, state)
        return logits[0].float().cpu().numpy(), state

    def _offline(self, audio: np.ndarray) -> np.ndarray:
        n = num_frames(len(audio))
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        inputs = self._inputs_v010(audio) if self.config.bidirectional else self._inputs_v093(audio)
        logits, _ = self.logits(inputs)
        return logit_frames(logits, np.arange(n), self.step)

    def stream(self) -> FeatureStream:
        return _WholeInputStream(self) if self.config.bidirectional else _DeepSpeechStream(self)

    def _inputs_v093(self, audio: np.ndarray) -> np.ndarray:
        c, window = self.config, self.mfcc.config.window
        whole = tf_frames(audio, window, self.step)
        rest = audio[len(whole) * self.step :]
        last = np.pad(rest, (0, window - len(rest)))[None]  # the native client's final window
        mfcc = self.mfcc(np.concatenate([whole, last]))
        return with_context(np.pad(mfcc, ((c.n_context, c.n_context), (0, 0))), c.n_context)

    def _inputs_v010(self, audio: np.ndarray) -> np.ndarray:
        c = self.config
        mfcc = self.psf_mfcc(audio * INT16_SCALE)[::2]
        inputs = with_context(np.pad(mfcc, ((c.n_context, c.n_context), (0, 0))), c.n_context)
        return (inputs - inputs.mean()) / (inputs.std() or 1.0)

    def _streaming_lookahead(self) -> int:
        """Frames past frame i whose audio the stream needs before frame i is final: the next
        logit's 9 future windows must be whole. Checked over one period of the frame grid."""
        needs = 0
        window = self.mfcc.config.window
        for i in range(FPS):
            audio_end = (upper_logit(i, self.step) + self.config.n_context) * self.step + window
            while frame_pts(i + 1 + needs) < audio_end:
                needs += 1
        return needs


class _DeepSpeechStream(FeatureStream):
    """v0.9.3, chunk by chunk, exactly as offline: the same windows, contexts and LSTM state."""

    def __init__(self, extractor: DeepSpeechExtractor) -> None:
        super().__init__(extractor.dim)
        self.extractor = extractor
        self._context = extractor.config.n_context
        self._samples = np.zeros(0, np.float32)  # from the next window's start on
        self._mfcc = np.zeros((self._context, extractor.config.n_input), np.float32)  # zero past context
        self._state: LstmState | None = None
        self._logits = np.zeros((0, extractor.dim), np.float32)  # from logit `_first_logit` on
        self._first_logit = 0

    def _process(self, pcm: np.ndarray) -> np.ndarray:
        self._samples = np.concatenate([self._samples, pcm])
        whole = tf_frames(self._samples, self.extractor.mfcc.config.window, self.extractor.step)
        self._samples = self._samples[len(whole) * self.extractor.step :]
        self._add_mfcc(self.extractor.mfcc(whole))
        return self._ready_frames(final=False)

    def _finish(self) -> np.ndarray:
        last = np.pad(self._samples, (0, self.extractor.mfcc.config.window - len(self._samples)))[None]
        self._add_mfcc(self.extractor.mfcc(last))
        self._add_mfcc(np.zeros((self._context, self._mfcc.shape[1]), np.float32))  # zero future context
        return self._ready_frames(final=True)

    def _add_mfcc(self, mfcc: np.ndarray) -> None:
        self._mfcc = np.concatenate([self._mfcc, mfcc])
        span = 2 * self._context + 1
        if len(self._mfcc) < span:
            return
        logits, self._state = self.extractor.logits(with_context(self._mfcc, self._context), self._state)
        self._logits = np.concatenate([self._logits, logits])
        self._mfcc = self._mfcc[len(self._mfcc) - span + 1 :]

    def _ready_frames(self, final: bool) -> np.ndarray:
        first = end = self.frames_emitted
        known = self._first_logit + len(self._logits)
        if final:
            end = num_frames(self.samples_received)
        else:
            while upper_logit(end, self.extractor.step) < known:
                end += 1
        rows = logit_frames(self._logits, np.arange(first, end), self.extractor.step, self._first_logit)
        keep_from = end * SAMPLE_RATE // (FPS * self.extractor.step)  # the next frame's lower logit
        if keep_from > self._first_logit:
            self._logits = self._logits[keep_from - self._first_logit :]
            self._first_logit = keep_from
        return rows


class _WholeInputStream(FeatureStream):
    """v0.1.0: keeps the audio and returns every frame at flush (offline on the whole input)."""

    def __init__(self, extractor: DeepSpeechExtractor) -> None:
        super().__init__(extractor.dim)
        self.extractor = extractor
        self._chunks: list[np.ndarray] = []

    def _process(self, pcm: np.ndarray) -> np.ndarray:
        self._chunks.append(pcm)
        return np.zeros((0, self.dim), np.float32)

    def _finish(self) -> np.ndarray:
        return self.extractor.offline(np.concatenate(self._chunks))


def _factory(model: str | None) -> DeepSpeechExtractor:
    if model is None:
        raise FeatureError(
            "the deepspeech kind needs a model file (--model): DeepSpeech 0.1.0's output_graph.pb or 0.9.3's "
            ".pbmm"
        )
    return DeepSpeechExtractor(model)


register("deepspeech", _factory)
