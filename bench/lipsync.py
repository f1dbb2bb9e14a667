"""Lip sync where the user sees it: held-out speech rendered through `speak` (offline and
streaming, with its default renderer: the built-in avatar's R2V), and streaming through the direct
compositor, which is what a live session on a CPU shows ("live compositor"); each video frame
measured by MediaPipe.

    python -m bench lipsync [--quick]

Speech never trained on: espeak-ng's held-out voices (engine/train/speech_data.HELD_OUT_VARIANTS)
saying held-out sentences and sentences dense in bilabials, and the real recorded Asterisk prompts
of the held-out split (5 languages, force-aligned by the shipped phonetic aligner). Each clip's
utterances are joined with pauses. The lip gap of a frame is MediaPipe's inner-lip distance
(landmarks 13-14) over the face height (10-152), tracked frame by frame from the decoded MP4.
Figures per source (synthetic, real) and mode:
- lip gap vs the audio's loudness envelope (frame RMS): Pearson r of each clip, their mean at the
  best lag within +-MAX_LAG frames (lag > 0: the lips trail the sound), r >= 0.6 with |lag| <= 2;
  also reported at that lag within speech only (the frames of the phones, pauses left out): how
  far the mouth follows louder and softer syllables, not only speech against pause;
- lips closed at p/b/m centres: gap < 10% of the clip's speech p90 at the centre frame or one
  either side (>= 90%);
- vowel nuclei between two bilabials open: gap >= 40% of the p90 at the centre or one either side
  (>= 90%);
- silence / speech: median gap in pauses (>= 0.3 s, 3 frames in from each end) over the speech
  p90 (<= 0.2).
The plot: one clip's lip gap and envelope with its bilabials marked, and strips of mouth crops.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bench.report import torch_threads, write_report
from engine.avatar.bundle import load
from engine.face.topology import CHIN, FOREHEAD, LOWER_LIP_MID_INNER, UPPER_LIP_MID_INNER
from engine.face.track import track_frames
from engine.pipeline.speak import Speaker, speak
from engine.types import FPS, SAMPLE_RATE
from engine.video import read_frames

MAX_LAG = 3
# (row label, speak's mode, renderer)
RUNS = (
    ("offline", "offline", "auto"),
    ("streaming", "streaming", "auto"),
    ("live compositor", "streaming", "composite"),
)
CLOSED, OPEN = 0.1, 0.4  # of the clip's speech p90
BILABIALS = frozenset(("P", "B", "M"))
SILENCE = "SIL"
BILABIAL_SENTENCES = (
    "Maybe baby puppies bob by the pool.",
    "Bob made my mom a bumpy apple pie.",
    "My Pam bought a map of Bombay by the bay.",
    "Buy me a bib, Bobby, maybe a pop-up bumper.",
)


@dataclass
class Clip:
    name: str
    source: str  # "synthetic" | "real"
    audio: np.ndarray  # [S] float32 at SAMPLE_RATE
    segments: list  # (phone, start s, end s)


@dataclass
class Measured:
    clip: Clip
    mode: str
    gap: np.ndarray  # [N] inner-lip gap / face height, NaN where no face was found
    envelope: np.ndarray  # [N] frame RMS
    frames: np.ndarray  # [N, H, W, 3] the decoded video (kept for the plot's strip)


def _join(pieces: list[tuple[np.ndarray, list]], pause_s: float = 0.6) -> tuple[np.ndarray, list]:
    """Utterances -> one clip with a pause before, between and after them."""
    pause = np.zeros(round(pause_s * SAMPLE_RATE), np.float32)
    audio, segments, t = [pause], [(SILENCE, 0.0, pause_s)], pause_s
    for pcm, segs in pieces:
        audio += [pcm.astype(np.float32), pause]
        segments += [(p, t + s, t + e) for p, s, e in segs]
        t += len(pcm) / SAMPLE_RATE
        segments.append((SILENCE, t, t + pause_s))
        t += pause_s
    return np.concatenate(audio), segments


def synthetic_clips(quick: bool) -> list[Clip]:
    from scipy import signal

    from engine.audio.tts import Espeak, Voice
    from engine.train.gan import data as gan_data
    from engine.train.speech.data import HELD_OUT_VARIANTS
    from engine.train.speech.sentences import sentences

    espeak = Espeak.get()
    texts = sentences(4, gan_data.HELD_OUT_SEED)
    out = []
    for variant in HELD_OUT_VARIANTS[: 1 if quick else None]:
        voice = Voice(f"en-us+{variant}")
        pieces = []
        for text in (*BILABIAL_SENTENCES, *texts)[: 3 if quick else None]:
            synthesis = espeak.synthesize(text, voice)
            pcm = signal.resample_poly(synthesis.audio, SAMPLE_RATE // 50, synthesis.sample_rate // 50)
            pieces.append((pcm, gan_data.espeak_segments(synthesis)))
        out.append(Clip(f"espeak en-us+{variant}", "synthetic", *_join(pieces)))
    return out


def real_clips(quick: bool) -> list[Clip]:
    from engine.audio.decode import load_audio
    from engine.train.gan import data as gan_data
    from engine.train.gan.cli import WEIGHTS
    from engine.train.speech import asterisk
    from models.phonetic import load_phonetic

    aligner = load_phonetic(str(WEIGHTS / "phonetic_builtin.aligner.pt"))
    out = []
    for language in asterisk.installed_languages()[: 2 if quick else None]:
        pieces: list[tuple[np.ndarray, list]] = []
        seconds = 0.0
        for prompt in sorted((p for p in asterisk.prompts(language) if p.held_out), key=lambda p: p.name):
            audio = load_audio(str(prompt.path))
            segments = gan_data.aligned_segments(aligner, audio, asterisk.phone_words(prompt))
            if segments is None or len(audio) < SAMPLE_RATE:
                continue
            pieces.append((audio, segments))
            seconds += len(audio) / SAMPLE_RATE
            if seconds >= (8 if quick else 30):
                break
        if pieces:
            out.append(Clip(f"real {language}", "real", *_join(pieces)))
    return out


def lip_gaps(frames: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N] inner-lip gap over face height (NaN without a face)."""
    lm = track_frames(frames, video=False)
    gap = np.linalg.norm(lm[:, LOWER_LIP_MID_INNER, :2] - lm[:, UPPER_LIP_MID_INNER, :2], axis=-1)
    return gap / np.linalg.norm(lm[:, CHIN, :2] - lm[:, FOREHEAD, :2], axis=-1)


def envelope(audio: np.ndarray, n: int) -> np.ndarray:
    """[S] -> [n] RMS of each video frame's audio."""
    edges = np.arange(n + 1) * SAMPLE_RATE // FPS
    pairs = zip(edges, edges[1:], strict=False)
    return np.array([np.sqrt(np.mean(audio[a:b] ** 2)) if b > a else 0.0 for a, b in pairs])


def render(speaker: Speaker, clip: Clip, run: tuple[str, str, str], work: Path) -> Measured:
    label, mode, renderer = run
    path = work / f"{clip.source}_{mode}_{renderer}.mp4"
    speak(speaker, clip.audio, str(path), mode, renderer=renderer)
    frames = np.stack(list(read_frames(path)))
    return Measured(clip, label, lip_gaps(frames), envelope(clip.audio, len(frames)), frames)


def _frames_of(segments: list, keep) -> list[tuple[str, int]]:  # noqa: ANN001
    return [(p, round((s + e) / 2 * FPS)) for p, s, e in segments if keep(p)]


def speech_frames(m: Measured) -> np.ndarray:
    """[N] bool: the frames of the clip's phones (its pauses False)."""
    speech = np.zeros(len(m.gap), bool)
    for p, s, e in m.clip.segments:
        if p != SILENCE:
            speech[int(s * FPS) : int(np.ceil(e * FPS))] = True
    return speech


def speech_p90(m: Measured) -> float:
    return float(np.nanpercentile(m.gap[speech_frames(m)], 90))


def correlation(
    group: list[Measured], lags: range = range(-MAX_LAG, MAX_LAG + 1), speech_only: bool = False
) -> tuple[float, int]:
    """(r, lag): the clips' mean Pearson r at the lag in `lags` where it is best (lag > 0: the lips
    trail the sound); speech_only: on the frames of the phones only. Each clip is correlated on its
    own: recordings differ in level, which says nothing about how wide a mouth opens."""
    best = (-np.inf, 0)
    for lag in lags:
        rs = []
        for m in group:
            n = len(m.gap)
            g, e = m.gap[max(0, lag) : n + min(0, lag)], m.envelope[max(0, -lag) : n - max(0, lag)]
            ok = np.isfinite(g)
            if speech_only:
                ok &= speech_frames(m)[max(0, -lag) : n - max(0, lag)]
            rs.append(float(np.corrcoef(g[ok], e[ok])[0, 1]))
        best = max(best, (float(np.mean(rs)), lag))
    return best


def events(m: Measured) -> dict[str, list[float]]:
    """Per bilabial centre and per vowel nucleus between two bilabials: the gap over the p90."""
    p90 = speech_p90(m)
    segs = [s for s in m.clip.segments if s[2] > s[1]]
    near = lambda i: m.gap[max(0, i - 1) : i + 2] / p90  # noqa: E731
    centres = _frames_of(segs, lambda p: p in BILABIALS)
    closures = [float(np.nanmin(near(i))) for _, i in centres if i < len(m.gap)]
    nuclei = []
    for before, (phone, start, end), after in zip(segs, segs[1:], segs[2:], strict=False):
        if before[0] in BILABIALS and after[0] in BILABIALS and phone not in BILABIALS | {SILENCE}:
            i = round((start + end) / 2 * FPS)
            nuclei.append(float(np.nanmax(near(i))))
    return {"closures": closures, "nuclei": nuclei}


def silence_ratio(m: Measured) -> float:
    pauses = [(s, e) for p, s, e in m.clip.segments if p == SILENCE and e - s >= 0.3]
    quiet = [m.gap[int(s * FPS) + 3 : int(e * FPS) - 3] for s, e in pauses]
    return float(np.nanmedian(np.concatenate(quiet)) / speech_p90(m))


def score(group: list[Measured]) -> dict:
    gap = np.concatenate([m.gap for m in group])
    r, lag = correlation(group)
    found = [events(m) for m in group]
    closures = np.concatenate([f["closures"] for f in found])
    nuclei = np.concatenate([f["nuclei"] for f in found])
    return {
        "source": group[0].clip.source,
        "mode": group[0].mode,
        "clips": len(group),
        "seconds": round(len(gap) / FPS, 1),
        "r_gap_envelope": round(r, 3),
        "lag_frames": lag,
        "r_within_speech": round(correlation(group, range(lag, lag + 1), speech_only=True)[0], 3),
        "closed_at_pbm": round(float(np.mean(closures < CLOSED)), 3),
        "pbm_count": len(closures),
        "open_between_bilabials": round(float(np.mean(nuclei >= OPEN)), 3) if len(nuclei) else None,
        "nuclei_count": len(nuclei),
        "silence_over_speech_p90": round(float(np.median([silence_ratio(m) for m in group])), 3),
        "no_face_frames": int(np.isnan(gap).sum()),
    }


def passes(row: dict) -> bool:
    return (
        row["r_gap_envelope"] >= 0.6 and abs(row["lag_frames"]) <= 2 and row["closed_at_pbm"] >= 0.9
        and (row["open_between_bilabials"] is None or row["open_between_bilabials"] >= 0.9)
        and row["silence_over_speech_p90"] <= 0.2
    )  # fmt: skip


def run(args: argparse.Namespace) -> None:
    clips = synthetic_clips(args.quick) + real_clips(args.quick)
    avatar = load("default")
    speaker = Speaker(avatar)
    measured: list[Measured] = []
    with torch_threads(1), tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            for run in RUNS:
                m = render(speaker, clip, run, Path(tmp))
                print(f"  {clip.name} {m.mode}: {len(m.gap)} frames", flush=True)
                if m.clip is not clips[0]:  # only the first clip's frames are plotted
                    m.frames = m.frames[:0]
                measured.append(m)
    rows = []
    for source in ("synthetic", "real"):
        for label, _, _ in RUNS:
            group = [m for m in measured if m.clip.source == source and m.mode == label]
            if group:
                row = score(group)
                row["pass"] = passes(row)
                rows.append(row)
                print("  " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    size = measured[0].frames.shape[1]
    notes = (
        f"Clips: {', '.join(c.name for c in clips)}; avatar default, {size}x{size} frames from `speak` "
        "(offline and streaming: its default renderer, the avatar's R2V; live compositor: streaming "
        "through the direct compositor, as a live session on a CPU); r_within_speech: r at the same lag "
        "on the phones' frames only. "
        f"MediaPipe on the decoded MP4. Targets: r >= 0.6 with |lag| <= 2, closed >= 0.9, open >= 0.9, "
        f"silence/speech <= 0.2. `python -m bench lipsync{' --quick' if args.quick else ''}`"
    )
    first = [m for m in measured if m.clip is clips[0]]
    write_report("lipsync", rows, title="Lip sync on the rendered pixels (MediaPipe)", notes=notes,
                 plot=lambda fig: _plot(fig, first), results_dir=args.results_dir)  # fmt: skip


def _plot(fig: Figure, runs: list[Measured]) -> None:
    """The first clip's first seconds: lip gap (each run) and envelope, bilabial centres marked;
    below, mouth crops of its first bilabial sentence, one every frame: offline, then live."""
    top, bottom = fig.subplots(2, 1, height_ratios=[2, 1])
    m = runs[0]
    n = min(len(m.gap), 6 * FPS)
    t = np.arange(n) / FPS
    p90 = speech_p90(m)
    for each, style in zip(runs, ("-", "--", ":"), strict=True):
        top.plot(t, each.gap[:n] / p90, style, linewidth=1, label=f"lip gap / p90 ({each.mode})")
    top.plot(t, m.envelope[:n] / m.envelope.max(), color="gray", linewidth=0.8, label="envelope (max 1)")
    for _, i in _frames_of(m.clip.segments, lambda p: p in BILABIALS):
        if i < n:
            top.axvline(i / FPS, color="tab:red", linewidth=0.5, alpha=0.5)
    top.axhline(CLOSED, color="tab:red", linestyle=":", linewidth=0.8)
    top.axhline(OPEN, color="tab:green", linestyle=":", linewidth=0.8)
    top.set_xlabel(f"seconds ({m.clip.name}; red lines: p/b/m centres)", fontsize=7)
    top.legend(fontsize=7, loc="upper right")
    top.tick_params(labelsize=7)
    # Mouth crops: a box around the mouth of the rest frame, the same box in every frame.
    first = next(s for p, s, e in m.clip.segments if p != SILENCE)
    start = int(first * FPS)
    size = m.frames.shape[1]
    lm = track_frames(m.frames[:1], video=False)[0]
    cx, cy = lm[[UPPER_LIP_MID_INNER, LOWER_LIP_MID_INNER], :2].mean(0)
    face = np.linalg.norm(lm[CHIN, :2] - lm[FOREHEAD, :2])
    half = int(0.2 * face)
    y0, x0 = int(np.clip(cy - half, 0, size - 2 * half)), int(np.clip(cx - half * 1.5, 0, size - 3 * half))
    rows = []
    for each in (m, runs[-1]):
        shown = range(start, min(start + 24, len(each.frames)))
        crops = [each.frames[i, y0 : y0 + 2 * half, x0 : x0 + 3 * half] for i in shown]
        rows += [np.concatenate(crops[k : k + 12], axis=1) for k in range(0, len(crops) - 11, 12)]
    bottom.imshow(np.concatenate(rows, axis=0))
    bottom.set_axis_off()
    bottom.set_title(
        f"mouth from the first word on, one frame each: {m.mode} (two rows), {runs[-1].mode} (two rows)",
        fontsize=7,
    )
    fig.set_size_inches(10, 8)
