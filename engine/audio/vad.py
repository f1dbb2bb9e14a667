"""Voice activity per audio chunk: WebRTC's VAD on short frames, smoothed by an onset and a
hangover so that one voiced frame does not start speech and short pauses do not end it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import webrtcvad

from engine.audio.pcm import check_pcm
from engine.types import SAMPLE_RATE, AudioChunk


@dataclass(frozen=True)
class VadConfig:
    aggressiveness: int = 2  # webrtcvad mode: 0 (keeps most audio as speech) .. 3 (strictest)
    frame_ms: int = 10  # webrtcvad's frame: 10, 20 or 30 ms
    onset_ms: int = 30  # consecutive voiced audio that starts speech
    hangover_ms: int = 300  # speech goes on this long after the last voiced frame

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"VAD aggressiveness must be 0..3, got {self.aggressiveness}")
        if self.frame_ms not in (10, 20, 30):
            raise ValueError(f"VAD frame must be 10, 20 or 30 ms, got {self.frame_ms}")
        if self.onset_ms < self.frame_ms or self.hangover_ms < 0:
            raise ValueError("VAD onset must be at least one frame and hangover non-negative")


class VoiceActivity:
    """push(chunk) -> whether speech is on during the chunk. Samples past the last whole VAD frame
    wait for the next chunk, so a chunk's answer covers its whole frames (and the previous chunk's
    leftover). One per live input; chunks must be contiguous."""

    def __init__(self, config: VadConfig = VadConfig()) -> None:
        self.config = config
        self._vad = webrtcvad.Vad(config.aggressiveness)
        self._frame = SAMPLE_RATE * config.frame_ms // 1000
        self._onset_frames = -(-config.onset_ms // config.frame_ms)
        self._hangover_frames = config.hangover_ms // config.frame_ms
        self._pending = np.zeros(0, np.int16)
        self._voiced_run = 0  # consecutive voiced frames
        self._silent_run = 0  # consecutive unvoiced frames while speech is on
        self.speaking = False

    def push(self, chunk: AudioChunk) -> bool:
        pcm = check_pcm(chunk.pcm, f"audio chunk at pts {chunk.pts}", chunk.pts)
        pcm16 = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
        samples = np.concatenate([self._pending, pcm16])
        whole = len(samples) - len(samples) % self._frame
        active = self.speaking
        for start in range(0, whole, self._frame):
            voiced = self._vad.is_speech(samples[start : start + self._frame].tobytes(), SAMPLE_RATE)
            self._step(voiced)
            active |= self.speaking
        self._pending = samples[whole:]
        return active

    def _step(self, voiced: bool) -> None:
        self._voiced_run = self._voiced_run + 1 if voiced else 0
        if not self.speaking:
            self.speaking = self._voiced_run >= self._onset_frames
            self._silent_run = 0
        elif voiced:
            self._silent_run = 0
        else:
            self._silent_run += 1
            self.speaking = self._silent_run <= self._hangover_frames
