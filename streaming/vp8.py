"""The server's VP8 encoder: aiortc's, with a bitrate that stays put while the receiver's estimate
ramps up.

aiortc's Vp8Encoder makes a new libvpx context (a keyframe) whenever the receiver's bandwidth
estimate (REMB) moves by 10%. The estimate starts low whatever the link and climbs ~12% every
1.5 s, so each session remade its encoder ten times in its first 15 s, and on 2 cores each remake
stalled the server's event loop 27-38 ms (measured: `python -m bench latency` with a stall watchdog),
long enough to make the speech input late and widen every later utterance's latency.

This encoder starts at the most aiortc sends (1.5 Mbps) and follows the estimate down only when it
falls (congestion), and back up once it has recovered by half again (or to the top), so a good link
never remakes it and a congested one still gets a lower rate.
"""

from __future__ import annotations

from aiortc import rtcrtpsender
from aiortc.codecs import get_encoder
from aiortc.codecs.base import Encoder
from aiortc.codecs.vpx import MAX_BITRATE, MIN_BITRATE, Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

FALL = 0.9  # a falling estimate below this share of the rate lowers it
RECOVER = 1.5  # an estimate this many times the rate (or the top rate) raises it again


class SteadyVp8Encoder(Vp8Encoder):
    def __init__(self) -> None:
        super().__init__()
        self._rate = MAX_BITRATE  # bits/s
        self._estimate = 0  # the receiver's last estimate, bits/s

    @property
    def target_bitrate(self) -> int:
        return self._rate

    @target_bitrate.setter
    def target_bitrate(self, estimate: int) -> None:
        estimate = max(MIN_BITRATE, min(estimate, MAX_BITRATE))
        falling = estimate < self._estimate
        self._estimate = estimate
        if falling and estimate < FALL * self._rate:
            self._rate = estimate
        elif estimate > self._rate and estimate >= min(RECOVER * self._rate, MAX_BITRATE):
            self._rate = estimate


def _server_encoder(codec: RTCRtpCodecParameters) -> Encoder:
    return SteadyVp8Encoder() if codec.mimeType.lower() == "video/vp8" else get_encoder(codec)


def use_steady_vp8() -> None:
    """Makes aiortc's senders in this process encode VP8 with SteadyVp8Encoder (they look the
    encoder up in their module when their first frame is sent)."""
    rtcrtpsender.get_encoder = _server_encoder
