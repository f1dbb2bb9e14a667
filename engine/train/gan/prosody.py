"""The implicit attributes of FACIAL-GAN's targets: head motion and blinks, driven by prosody.

Measurements (per video frame): energy (RMS in dB) and pitch (F0 from the normalised
autocorrelation of a 40 ms window, voiced when its peak is clear and the frame is loud enough).

Prosodic structure from the phone timings + those measurements:
- phrases: speech between pauses (silences of at least PAUSE_S);
- pitch accents: vowels whose F0, energy and duration stand out from their phrase (z-scores,
  F0 at a quarter weight); at most one per MIN_ACCENT_GAP_S, the strongest first.

Head motion (Graf, Cosatto, Strom & Huang 2002, "Visual prosody: facial movements accompanying
speech": nods and brow raises align with pitch accents; the head returns to rest at phrase
boundaries; Hadar et al. 1983, "Head movement during listening and speaking": movement grows with
speech and falls in pauses):
- each accent gives a nod: the chin dips (pitch) and the head drops a little (ty), an
  alpha-function pulse starting just before the accented vowel, amplitude by accent strength;
  strong accents also raise the brows;
- during each phrase the head turns to the favoured side as far as the voice is loud (Yehia,
  Kuratate & Vatikiotis-Bateson 2002, "Linking facial animation, head motion and speech
  acoustics": head motion follows the voice's amplitude and F0), and settles most of the way back
  in the pause after;
- a small slow drift (sum of sines, 3-12 s periods) under everything, the part speech does not explain.
All of it goes through a critically damped second-order filter, so the head has mass.

Blinks (Bentivoglio et al. 1997, "Analysis of blink rate patterns in normal subjects": ~17 per
minute in conversation; Nakano & Kitazawa 2010: blinks cluster at pauses and breaks in speech):
one at each pause when the last blink is at least PAUSE_BLINK_GAP_S old, one at the next accent
(or anywhere) once MAX_BLINK_GAP_S has passed without one; durations 150-350 ms drawn per blink;
the eyelid follows the idle motion's blink curve (quick close, slower opening).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from engine.audio.phones import SILENCE, VISEME_GROUPS
from engine.pipeline.idle import blink_curve
from engine.types import FPS, SAMPLE_RATE, frame_pts

PAUSE_S = 0.15
MIN_ACCENT_GAP_S = 0.35
ACCENT_THRESHOLD = 1.0  # weighted z-score sum above which a vowel is accented
ACCENT_WEIGHTS = np.array(
    [0.25, 1.0, 1.0]
)  # F0, energy, duration: F0 counts less, speech features do not carry it
PITCH_RANGE_HZ = (70.0, 400.0)
VOWELS = frozenset(VISEME_GROUPS["open"] + ("IH", "IY", "UW", "UH", "OW", "OY", "AO", "ER"))
PAUSE_BLINK_GAP_S = 1.6
MAX_BLINK_GAP_S = 4.5
BLINK_SECONDS = (0.15, 0.35)
# A phrase's head turn in units of the person's pose spread (pitch, yaw, roll, tx, ty, tz): towards
# one side (yaw, roll and tx together; the general model's speaker favours one side, as people do,
# and fine-tuning learns a person's own), chin a little up, leaning in.
PHRASE_TURN = np.array([-0.6, 2.0, 1.0, 1.2, 0.0, -0.8])
SETTLE = 0.3  # share of a phrase's turn kept through the pause after it
DRIFT = 0.06  # the slow drift's size, in units of the pose spread

Segment = tuple[str, float, float]  # phone, start and end in seconds


@dataclass(frozen=True)
class Prosody:
    energy_db: np.ndarray  # [N] RMS level per frame, dB re full scale
    f0: np.ndarray  # [N] Hz, 0 where unvoiced
    phrases: list[tuple[float, float]]  # (start, end) seconds of speech between pauses
    accents: list[tuple[float, float]]  # (time of the accented vowel's centre, strength)


def measure(audio: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """audio [S] at SAMPLE_RATE -> energy_db [N], f0 [N] (0 when unvoiced), one per video frame."""
    width = SAMPLE_RATE // 25  # 40 ms: two periods of a 50 Hz voice
    centres = np.array([(frame_pts(i) + frame_pts(i + 1)) // 2 for i in range(num_frames)])
    padded = np.pad(audio.astype(np.float64), (width, width))
    frames = padded[centres[:, None] + np.arange(width)[None] + width // 2]  # [N, width] centred
    energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    frames = (frames - frames.mean(1, keepdims=True)) * np.hanning(width)
    spectrum = np.fft.rfft(frames, 2 * width)
    acf = np.fft.irfft(np.abs(spectrum) ** 2)[:, :width]
    acf /= acf[:, :1] + 1e-12
    lo, hi = (int(SAMPLE_RATE / f) for f in PITCH_RANGE_HZ[::-1])
    lag = lo + np.argmax(acf[:, lo:hi], axis=1)
    clear = acf[np.arange(num_frames), lag] > 0.45
    loud = energy_db > energy_db.max(initial=-100) - 35
    return energy_db, np.where(clear & loud, SAMPLE_RATE / lag, 0.0)


def analyse(segments: list[Segment], audio: np.ndarray, num_frames: int) -> Prosody:
    energy_db, f0 = measure(audio, num_frames)
    phrases: list[tuple[float, float]] = []
    for phone, start, end in segments:
        if phone == SILENCE and end - start >= PAUSE_S:
            continue
        if phrases and start - phrases[-1][1] < PAUSE_S:
            phrases[-1] = (phrases[-1][0], end)
        elif phone != SILENCE:
            phrases.append((start, end))
    vowels = [(s, e) for p, s, e in segments if p in VOWELS]
    accents = []
    for p_start, p_end in phrases:
        inside = [(s, e) for s, e in vowels if p_start <= s < p_end]
        if len(inside) < 2:
            continue
        feats = np.array([_vowel_prosody(s, e, energy_db, f0) for s, e in inside])  # [V, 3]
        z = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
        strength = z @ ACCENT_WEIGHTS
        taken: list[float] = []
        for k in np.argsort(-strength):
            centre = (inside[k][0] + inside[k][1]) / 2
            if strength[k] > ACCENT_THRESHOLD and all(abs(centre - t) >= MIN_ACCENT_GAP_S for t in taken):
                taken.append(centre)
                accents.append((centre, float(min(strength[k], 3.0))))
    return Prosody(energy_db, f0, phrases, sorted(accents))


def _vowel_prosody(
    start: float, end: float, energy_db: np.ndarray, f0: np.ndarray
) -> tuple[float, float, float]:
    """Mean log-F0 (the energy-weighted voiced frames; 0 if none), peak energy, duration."""
    a, b = int(start * FPS), max(int(start * FPS) + 1, int(np.ceil(end * FPS)))
    e, f = energy_db[a:b], f0[a:b]
    voiced = f > 0
    pitch = float(np.log(f[voiced]).mean()) if voiced.any() else 0.0
    return pitch, float(e.max()) if len(e) else -100.0, end - start


def head_motion(
    prosody: Prosody, pose_std: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """-> pose offsets [N, 6] and brow raise [N] (0..1) around the rest pose."""
    n = len(prosody.energy_db)
    t = np.arange(n) / FPS
    pose = np.zeros((n, 6))
    brows = np.zeros(n)
    # Nods on accents: chin down (pitch > 0) and the head a little lower (ty > 0).
    for centre, strength in prosody.accents:
        pulse = _alpha_pulse(t - (centre - 0.12), 0.12)
        pose[:, 0] += 0.9 * pose_std[0] * strength * pulse
        pose[:, 4] += 0.5 * pose_std[4] * strength * pulse
        if strength > 1.5:
            brows += 0.4 * (strength - 1.0) / 2.0 * _alpha_pulse(t - (centre - 0.2), 0.2)
    # Phrase gestures: the head turns to the speaker's favoured side as far as the voice is loud and
    # settles most of the way back in the pause after the phrase.
    voice = _damped(np.clip(1 + (prosody.energy_db - prosody.energy_db.max(initial=0)) / 40, 0, 1), 0.15)
    gesture = np.zeros(n)
    for k, (start, end) in enumerate(prosody.phrases):
        inside = (t >= start) & (t < end)
        following = prosody.phrases[k + 1][0] if k + 1 < len(prosody.phrases) else np.inf
        gesture[inside] = voice[inside]
        gesture[(t >= end) & (t < following)] = SETTLE * (voice[inside].mean() if inside.any() else 0.0)
    pose += gesture[:, None] * PHRASE_TURN * pose_std
    # A slow drift that speech does not explain.
    periods = rng.uniform(3.0, 12.0, (3, 6))
    phases = rng.uniform(0, 2 * np.pi, (3, 6))
    pose += DRIFT * pose_std * np.sin(2 * np.pi * t[:, None, None] / periods + phases).sum(1) / np.sqrt(1.5)
    return _damped(pose, 0.25), np.clip(_damped(brows, 0.08), 0, 1)


def _alpha_pulse(dt: np.ndarray, tau: float) -> np.ndarray:
    """0 before dt = 0, rises to 1 at dt = tau, decays after: (dt / tau) exp(1 - dt / tau)."""
    x = np.maximum(dt, 0) / tau
    return x * np.exp(1 - x)


def _damped(x: np.ndarray, seconds: float) -> np.ndarray:
    """A critically damped second-order low-pass (two one-pole stages), forwards in time."""
    a = np.exp(-1.0 / (FPS * seconds / 2))
    return _one_pole(_one_pole(x, a), a)


def _one_pole(x: np.ndarray, a: float) -> np.ndarray:
    """y[t] = a y[t-1] + (1 - a) x[t], starting from y = x[0] (no jump at the start)."""
    zi = signal.lfilter_zi([1 - a], [1, -a])
    zi = zi[:, None] * x[:1] if x.ndim == 2 else zi * x[0]
    return signal.lfilter([1 - a], [1, -a], x, axis=0, zi=zi)[0]


def blinks(prosody: Prosody, rng: np.random.Generator) -> np.ndarray:
    """Eyelid closure [N] (0 open, 1 closed): at pauses, and at accents when none came for long."""
    n = len(prosody.energy_db)
    times: list[float] = []
    last = -PAUSE_BLINK_GAP_S * rng.uniform(0.3, 1.0)  # as if one came a little before the clip
    events = [(end + 0.05, "pause") for _, end in prosody.phrases] + [
        (c, "accent") for c, _ in prosody.accents
    ]
    for time, kind in sorted(events):
        while time - last > MAX_BLINK_GAP_S:  # a long stretch: blink within it
            last = last + rng.uniform(0.75, 1.0) * MAX_BLINK_GAP_S
            times.append(last)
        if (kind == "pause" and time - last >= PAUSE_BLINK_GAP_S) or time - last >= 0.8 * MAX_BLINK_GAP_S:
            times.append(time)
            last = time
    clip_end = n / FPS
    while clip_end - last > MAX_BLINK_GAP_S:  # trailing silence: the idle rate
        last += rng.uniform(0.75, 1.0) * MAX_BLINK_GAP_S
        times.append(last)
    t = np.arange(n) / FPS
    closure = np.zeros(n)
    for start in times:
        closure = np.maximum(closure, blink_curve((t - start) / rng.uniform(*BLINK_SECONDS)))
    return closure
