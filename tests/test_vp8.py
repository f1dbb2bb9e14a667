"""The server's VP8 encoder keeps its libvpx context while the receiver's estimate ramps up, and
still lowers its rate when the estimate falls (streaming/vp8.py)."""
from __future__ import annotations

import fractions

import av
import numpy as np
from aiortc import rtcrtpsender
from aiortc.codecs.vpx import MAX_BITRATE
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from streaming.vp8 import SteadyVp8Encoder, use_steady_vp8


def frame(i: int) -> av.VideoFrame:
    out = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 8 * i % 256, np.uint8), format="rgb24")
    out.pts, out.time_base = 3000 * i, fractions.Fraction(1, 90_000)
    return out


def test_a_rising_estimate_never_remakes_the_encoder() -> None:
    encoder = SteadyVp8Encoder()
    encoder.encode(frame(0))
    codec = encoder.codec
    for i, estimate in enumerate(np.geomspace(300_000, 2_000_000, 20).astype(int), 1):
        encoder.target_bitrate = estimate  # aiortc's sender does this on each REMB
        encoder.encode(frame(i))
    assert encoder.codec is codec and encoder.target_bitrate == MAX_BITRATE


def test_a_falling_estimate_lowers_the_rate_and_a_recovered_one_raises_it() -> None:
    encoder = SteadyVp8Encoder()
    for estimate in (400_000, 900_000, 1_400_000):  # ramping up: stays at the top
        encoder.target_bitrate = estimate
    assert encoder.target_bitrate == MAX_BITRATE
    encoder.target_bitrate = 800_000  # congestion
    assert encoder.target_bitrate == 800_000
    encoder.target_bitrate = 760_000  # falls a little further: not worth a new encoder
    assert encoder.target_bitrate == 800_000
    encoder.target_bitrate = 1_000_000  # recovering, not yet by half
    assert encoder.target_bitrate == 800_000
    encoder.target_bitrate = 1_250_000
    assert encoder.target_bitrate == 1_250_000
    encoder.target_bitrate = 50_000_000  # clipped to what aiortc sends at most
    assert encoder.target_bitrate == MAX_BITRATE
    encoder.encode(frame(0))
    assert encoder.codec.bit_rate == MAX_BITRATE


def test_the_server_sends_vp8_with_it_and_other_codecs_as_aiortc_does() -> None:
    use_steady_vp8()
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000)
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2)
    assert isinstance(rtcrtpsender.get_encoder(vp8), SteadyVp8Encoder)
    assert type(rtcrtpsender.get_encoder(opus)).__name__ == "OpusEncoder"
