"""The speech chain of a session with small real components: a loudness feature, an animator
that opens the jaw with it (and FACIAL-GAN with random weights), on the real clock.

Correctness on the media clock, not timing: the face drawn at frame pts p is made from the audio
played at p; an interruption leaves nothing queued and idle frames from 200 ms on; queues stay
bounded; a failing stage reports its error and leaves other sessions alone."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from engine.audio.features import num_frames
from engine.avatar.bundle import MotionStats
from engine.pipeline.animator import Gan, StreamConfig
from engine.pipeline.idle import IdleMotion
from engine.types import EXP_START, FPS, NUM_PARAMS, SAMPLE_RATE, FaceParams, frame_pts
from models.facial_gan import FacialGAN, FacialGANConfig
from streaming.clock import MediaClock
from streaming.pipeline import Pipeline, PipelineConfig
from streaming.probe import JAW, JAW_GAIN, LoudnessExtractor, loudness_speech
from streaming.speech import SpeechModel
from streaming.speech_audio import ScheduledAudio
from streaming.timeline import FADE_FRAMES, ParamsTimeline
from streaming.tracks import frame_at

pytestmark = pytest.mark.usefixtures("one_torch_thread")

INPUT_RATE = 48_000
BLOCK = INPUT_RATE // 50  # 20 ms blocks, as a client sends them
WAIT_S = 10


def tone_with_pauses(pause_s: float = 0.3, tone_s: float = 0.4) -> np.ndarray:
    """int16 at INPUT_RATE: silence, a 220 Hz tone at amplitude 0.3, silence."""
    t = np.arange(int(tone_s * INPUT_RATE)) / INPUT_RATE
    pause = np.zeros(int(pause_s * INPUT_RATE))
    return (np.concatenate([pause, 0.3 * np.sin(2 * np.pi * 220 * t), pause]) * 32767).astype(np.int16)


class Chain:
    """A pipeline with its sinks, and what it was told."""

    def __init__(self, speech: SpeechModel = None, config: PipelineConfig = PipelineConfig()) -> None:
        self.clock = MediaClock()
        self.idle = IdleMotion(FaceParams.neutral(), MotionStats(), seed=0)
        self.timeline = ParamsTimeline(self.idle)
        self.audio = ScheduledAudio()
        self.errors: list[BaseException] = []
        self.pipeline = Pipeline(
            speech or loudness_speech(), self.clock, self.timeline, self.audio, config, self.errors.append
        )

    async def say(self, pcm: np.ndarray, rate: int = INPUT_RATE, block: int = BLOCK):
        speech = self.pipeline.open_input(rate)
        for start in range(0, len(pcm), block):
            await speech.push(pcm[start : start + block])
        await speech.end()
        return speech


async def until(condition, what: str) -> None:
    try:
        async with asyncio.timeout(WAIT_S):
            while not condition():  # noqa: ASYNC110 (waits on state of the pipeline under test, which has no event for it)
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"no {what} after {WAIT_S} s")


async def test_the_face_at_each_frame_is_made_from_the_audio_played_then():
    chain = Chain()
    before = chain.clock.now_samples()
    pcm = tone_with_pauses()
    await chain.say(pcm)
    played = round(len(pcm) * SAMPLE_RATE / INPUT_RATE)  # what the resampler makes of it
    await until(lambda: chain.audio.end_pts > 0, "audio")
    after = chain.clock.now_samples()  # the utterance was stamped by now
    await until(lambda: chain.timeline.speech_until() >= frame_at(chain.audio.end_pts - 1), "speech rows")

    start = chain.audio.end_pts - played  # the utterance's first sample on the clock
    latency = chain.pipeline.latency
    assert before + latency <= start <= after + latency

    frames = np.arange(frame_at(start) - 3, frame_at(start + played) + FADE_FRAMES + 2)
    jaw = chain.timeline.params(frames).array[:, JAW]
    audio = chain.audio.read(frame_pts(frames[0]), frame_pts(frames[-1] + 1) - frame_pts(frames[0]))
    expected = []
    for i in frames:  # the jaw the animator makes from the audio of frame i, where it is played
        a, b = frame_pts(i) - frame_pts(frames[0]), frame_pts(i + 1) - frame_pts(frames[0])
        expected.append(min(1.0, JAW_GAIN * np.sqrt(np.mean(np.square(audio[a:b], dtype=np.float64)))))
    speech_frames = frames <= chain.timeline.speech_until()
    assert np.allclose(jaw[speech_frames], np.array(expected)[speech_frames], atol=1e-4)
    assert jaw.max() > 0.8 and jaw[0] == 0 and jaw[-1] == 0  # it spoke, and it is closed around
    assert all(chain.timeline.final(i) for i in frames)
    assert chain.audio.late_samples == 0 and chain.timeline.late_frames == 0 and not chain.errors
    await chain.pipeline.close()


async def test_an_interruption_flushes_every_stage_and_is_idle_within_200_ms():
    chain = Chain(config=PipelineConfig(max_ahead_s=0.5, inbox_frames=8))
    pcm = (0.3 * np.sin(np.arange(5 * INPUT_RATE) * 0.03) * 32767).astype(np.int16)
    speaking = asyncio.create_task(chain.say(pcm))
    await until(lambda: chain.audio.ahead(chain.clock.now_samples()) > 0.3 * SAMPLE_RATE, "speech under way")
    assert chain.pipeline.queued() > 0  # the chain is full: max_ahead holds it back
    assert not chain.timeline.final(frame_at(chain.audio.end_pts - 1))  # its rows are still coming

    now = chain.clock.now_samples()
    chain.timeline.params([frame_at(now) + 1])  # the renderer is one frame ahead, as the video track
    chain.pipeline.interrupt()
    assert chain.pipeline.queued() == 0 and chain.audio.ahead(now) == 0
    back = frame_pts(frame_at(now) + 2 + FADE_FRAMES)  # the first idle frame after the interruption
    assert back - now <= 0.2 * SAMPLE_RATE
    async with asyncio.timeout(WAIT_S):
        old = await speaking  # the interrupted input's remaining audio is dropped, not queued
    assert old.superseded

    await asyncio.sleep(0.2)  # in-flight work of the old utterance had time to land, and must not
    assert chain.audio.ahead(0) == 0 and chain.timeline.speech_until() <= frame_at(now) + 1
    assert chain.timeline.final(frame_at(now) + 2)  # nothing more is expected: frames draw at once
    frames = np.arange(frame_at(back), frame_at(back) + 2 * FPS)
    assert np.array_equal(chain.timeline.params(frames).array, chain.idle.params(frames).array)

    await chain.say(tone_with_pauses())  # and it speaks again
    await until(
        lambda: chain.audio.ahead(0) and chain.timeline.speech_until() >= frame_at(chain.audio.end_pts - 1),
        "new speech",
    )
    await chain.pipeline.close()


async def test_audio_faster_than_real_time_is_scheduled_ahead_at_most_max_ahead():
    config = PipelineConfig(max_ahead_s=0.3, inbox_frames=4)
    chain = Chain(config=config)
    pcm = (0.3 * np.sin(np.arange(3 * INPUT_RATE) * 0.03) * 32767).astype(np.int16)
    speaking = asyncio.create_task(chain.say(pcm))
    ahead = config.max_ahead_s * SAMPLE_RATE + SAMPLE_RATE * config.chunk_ms / 1000
    for _ in range(20):
        await asyncio.sleep(0.05)
        # the latency is read each time: a loaded machine makes input late, which widens it (jitter.py)
        limit = chain.pipeline.latency + ahead
        assert chain.audio.ahead(chain.clock.now_samples()) <= limit
        assert chain.pipeline.queued() <= 3 * config.inbox_frames
    assert not speaking.done()  # the input waits for room
    chain.pipeline.interrupt()
    await speaking
    await chain.pipeline.close()


async def test_input_later_than_the_widest_margin_starts_again_at_now_plus_the_latency():
    chain = Chain(config=PipelineConfig(margin_ms=10, max_margin_ms=50))
    speech = chain.pipeline.open_input(INPUT_RATE)
    await speech.push(tone_with_pauses(0, 0.1))
    latency = chain.pipeline.latency
    await asyncio.sleep(latency / SAMPLE_RATE + 0.15)  # the client stalls
    resumed = chain.clock.now_samples()
    await speech.push(tone_with_pauses(0, 0.1))  # its next sample was due 0.1 s after the first
    await speech.end()
    # late by latency + 0.05 s, more than the widest margin: the rest starts at now + the wider latency
    await until(lambda: chain.pipeline.late_inputs == 1, "a late input")
    assert chain.pipeline.margin == 0.05 * SAMPLE_RATE
    await until(
        lambda: chain.audio.end_pts >= resumed + chain.pipeline.latency + 0.09 * SAMPLE_RATE, "second part"
    )
    assert chain.audio.late_samples == 0  # nothing was scheduled in the past
    await chain.pipeline.close()


async def test_input_a_little_late_keeps_its_schedule_later_only_by_what_the_margin_grew():
    chain = Chain(config=PipelineConfig(margin_ms=10, max_margin_ms=200))
    written = []  # (pts, samples) of each scheduled chunk
    write = chain.audio.write
    chain.audio.write = lambda chunk: (written.append((chunk.pts, len(chunk.pcm))), write(chunk))
    part = tone_with_pauses(0, 0.1)
    speech = chain.pipeline.open_input(INPUT_RATE)
    await speech.push(part)
    margin = chain.pipeline.margin
    await asyncio.sleep(0.1 + 0.06)  # its next sample was due 0.1 s after the first: 60 ms late
    await speech.push(part)
    await speech.end()
    await until(lambda: chain.pipeline.late_inputs == 1, "a late input")
    grown = chain.pipeline.margin - margin
    assert 0.06 * SAMPLE_RATE < grown < 0.2 * SAMPLE_RATE
    both = 2 * len(part) * SAMPLE_RATE // INPUT_RATE
    await until(lambda: sum(n for _, n in written) >= both, "second part")
    ends = [pts + n for pts, n in written]
    gaps = [pts - end for (pts, _), end in zip(written[1:], ends, strict=False) if pts != end]
    # one gap, where the second part starts: the lateness is not added again on top of the margin
    assert gaps == [grown]
    assert chain.audio.late_samples == 0
    await chain.pipeline.close()


async def test_a_widened_margin_relaxes_after_a_quiet_spell():
    chain = Chain(config=PipelineConfig(margin_ms=10, max_margin_ms=200, relax_after_s=0.3))
    base = chain.pipeline.margin
    speech = chain.pipeline.open_input(INPUT_RATE)
    await speech.push(tone_with_pauses(0, 0.1))
    await asyncio.sleep(chain.pipeline.latency / SAMPLE_RATE + 0.15)
    await speech.push(tone_with_pauses(0, 0.1))  # late: the margin widens
    await until(lambda: chain.pipeline.late_inputs == 1, "a late input")
    wide = chain.pipeline.margin
    chain.pipeline.open_input(INPUT_RATE)  # a new utterance too soon: no change
    assert chain.pipeline.margin == wide
    await asyncio.sleep(0.35)
    chain.pipeline.open_input(INPUT_RATE)  # after the quiet spell: halfway back
    assert chain.pipeline.margin == (wide + base) // 2
    await chain.pipeline.close()


async def test_late_input_widens_the_margin_no_further_than_max_margin():
    chain = Chain(config=PipelineConfig(margin_ms=10, max_margin_ms=50))
    speech = chain.pipeline.open_input(INPUT_RATE)
    await speech.push(tone_with_pauses(0, 0.1))
    await asyncio.sleep(chain.pipeline.latency / SAMPLE_RATE + 0.15)
    await speech.push(tone_with_pauses(0, 0.1))
    await speech.end()
    await until(lambda: chain.pipeline.late_inputs == 1, "a late input")
    assert chain.pipeline.margin == 50 * SAMPLE_RATE // 1000
    await chain.pipeline.close()


class FailingAnimator:
    def push(self, features):
        raise RuntimeError("animator broke")

    def flush(self):
        return FaceParams.neutral(0)


async def test_a_failing_stage_reports_once_and_leaves_other_pipelines_alone():
    failing = Chain(SpeechModel(LoudnessExtractor(), lambda first, idle: FailingAnimator(), 0))
    healthy = Chain()
    await asyncio.gather(failing.say(tone_with_pauses()), healthy.say(tone_with_pauses()))
    await until(lambda: failing.errors, "the error")
    await until(lambda: healthy.timeline.speech_until() > 0, "healthy speech")
    assert len(failing.errors) == 1 and "animator broke" in str(failing.errors[0])
    assert not healthy.errors
    await asyncio.gather(failing.pipeline.close(), healthy.pipeline.close())


def random_gan_speech(rest: FaceParams) -> SpeechModel:
    """The real StreamingAnimator around a small FACIAL-GAN with random weights, on loudness."""
    torch.manual_seed(0)
    config = FacialGANConfig(
        feature_dim=1, num_params=NUM_PARAMS, window=32, width=4, unet_channels=(1, 2, 2)
    )
    gan = Gan(FacialGAN(config).eval(), "loudness", np.zeros(1, np.float32))
    return SpeechModel.facial(LoudnessExtractor(), gan, rest, StreamConfig(lookahead=1, stride=1))


async def test_facial_gan_streams_a_row_for_every_frame_of_the_utterance():
    chain = Chain(random_gan_speech(FaceParams.neutral()))
    pcm = tone_with_pauses(0.1, 0.5)
    await chain.say(pcm)
    played = round(len(pcm) * SAMPLE_RATE / INPUT_RATE)
    await until(
        lambda: (
            chain.audio.end_pts > 0 and chain.timeline.speech_until() >= frame_at(chain.audio.end_pts - 1)
        ),
        "rows",
    )
    start = chain.audio.end_pts - played
    origin = start - start % 1600  # the feature stream's origin: its frame grid repeats every 3 frames
    first, last = frame_at(origin), chain.timeline.speech_until()
    assert last - first + 1 == num_frames(start + played - origin)
    rows = chain.timeline.params(range(first, last + 1)).array
    assert np.isfinite(rows).all() and rows[:, EXP_START:].std(0).max() > 0
    assert chain.pipeline.latency == frame_pts(0 + 1 + 1) + SAMPLE_RATE // 50 + chain.pipeline.margin
    assert not chain.errors
    await chain.pipeline.close()
