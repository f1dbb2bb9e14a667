"""Opens a session of a running server, makes the avatar say a WAV file or a text, and writes what
is received over WebRTC (video and voice) to an MP4.

    python examples/client.py http://127.0.0.1:8080 (--wav speech.wav | --text "Hello") --out said.mp4
"""
from __future__ import annotations

import argparse
import asyncio
import fractions
import sys

import av

from streaming.client import AvatarClient, ServerError

FPS = 30


async def record(url: str, wav: str | None, text: str | None, out: str, seconds: float) -> int:
    """Returns the number of video frames written."""
    async with await AvatarClient.connect(url) as avatar:
        if wav:
            speech = await avatar.open_speech()
            await speech.send_wav(wav)
        else:
            await avatar.say(text or "")
        with av.open(out, "w") as container:
            video = container.add_stream("libx264", rate=FPS)
            video.pix_fmt = "yuv420p"
            audio = container.add_stream("aac", rate=48_000)
            frames = 0

            async def write_video() -> None:
                nonlocal frames
                async for frame in avatar.video():
                    if frames == 0:
                        video.width, video.height = frame.width, frame.height
                    frame.pts = frames  # the container's own 30 fps grid
                    frame.time_base = fractions.Fraction(1, FPS)
                    container.mux(video.encode(frame))
                    frames += 1
                    if frames >= seconds * FPS:
                        return

            async def write_audio() -> None:
                async for frame in avatar.audio():
                    frame.pts = None  # the encoder counts samples itself
                    container.mux(audio.encode(frame))
                    if frames >= seconds * FPS:
                        return

            await asyncio.gather(write_video(), write_audio())
            container.mux(video.encode())
            container.mux(audio.encode())
    return frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8080")
    said = parser.add_mutually_exclusive_group(required=True)
    said.add_argument("--wav", help="a 16-bit PCM WAV file to speak")
    said.add_argument("--text", help="text for the server's voice to speak")
    parser.add_argument("--out", required=True, help="the MP4 to write")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to record")
    args = parser.parse_args()
    try:
        frames = asyncio.run(record(args.url, args.wav, args.text, args.out, args.seconds))
    except (ServerError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {frames} frames to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
