"""Target face-parameter curves for FACIAL-GAN from phone timings and the audio.

Lips: visemes with coarticulation by the dominance model of Cohen & Massaro (1993, "Modeling
coarticulation in synthetic visual speech", in Models and Techniques in Computer Animation).
Each phone segment s has, for each articulatory channel c, a target T_sc and a dominance function

    D_sc(t) = alpha_sc * exp(-theta_c * tau),   tau = distance of t from the segment's centre,

with separate rates before (anticipation) and after (carry-over) the segment, and the channel's
value is the dominance-weighted mean  F_c(t) = sum_s D_sc(t) T_sc / sum_s D_sc(t).  One extension:
tau is measured from the central half of the segment (a plateau), so long phones hold their shape,
and tucks hold at least MIN_HOLD_S however short the synthesiser made the phone.
The lip tuck of F/V, a gesture that must be reached, dominates its neighbours several times over
with a fast decay, as Cohen & Massaro give labials for lip parameters. Lip closure is not blended:
each P/B/M is a closure gesture of its own (held 60-120 ms as measured for bilabial closures,
shorter only when the next vowel is closer, with ~40 ms raised-cosine onsets and releases), so
the lips meet at every bilabial and part again at the vowel between two of them; blended
closures merged into one long press in "maybe baby". The lips press at closures; rounding
anticipates across consonants because unrounded consonants have weak rounding dominance
(Benguerel & Cowan 1974: anticipatory lip rounding spans several consonants). Diphthongs are two
targets (AY = AA -> IH ...). Jaw opening follows vowel height (low vowels open most: Lindblom &
Sundberg 1971); bilabials and sibilants keep the jaw nearly closed. The jaw opens as far as the voice
is loud against the speaker's own running level (engine/audio/loudness.py): fully at that level, not at
all JAW_SPAN_DB below it, so louder syllables open wider and the jaw rises between syllables, as
the mouth area of real talkers follows the speech envelope (Chandrasekaran et al. 2009, "The
natural statistics of audiovisual speech").

Channels -> rig (engine/types.py EXPRESSION_NAMES):
  jaw (times the loudness gain) -> jawOpen;  closure -> mouthClose = jawOpen * closure (lips stay
  together while the jaw moves) and mouthPress_L/R = LIP_PRESS * closure: every avatar rests with
  its lips together (engine/face/rest.py), so at the centre of each bilabial they press;
  tuck -> mouthLowerLipTuck and funnel -> mouthFunnel, both scaled by (1 - closure) since they part
  the lips;  pucker -> mouthPucker;  spread -> mouthStretch_L/R.
Head motion, brows and blinks: engine/train/gan/prosody.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.audio.features import num_frames
from engine.audio.loudness import RunningLevel
from engine.audio.phones import PHONE_INDEX, SILENCE, VISEME_GROUPS
from engine.avatar.bundle import MotionStats
from engine.train.gan import prosody as gan_prosody
from engine.types import BLINK_COL, EXP_START, EXPRESSION_NAMES, FPS, NUM_PARAMS, FaceParams

Segment = gan_prosody.Segment
CHANNELS = ("jaw", "closure", "tuck", "funnel", "pucker", "spread")
BLENDED = ("jaw", "tuck", "funnel", "pucker", "spread")  # by dominance; closure by gestures
# Rate of each channel's dominance decay, 1/s: (anticipation, carry-over). The jaw anticipates
# more than it lingers: the mouth opens ahead of a vowel's sound.
# The lips are the fast articulators: closure and tuck decay within ~50 ms, so a vowel between two
# bilabials still opens the lips, and a bilabial between vowels still closes them.
THETA = {"jaw": (14, 18), "tuck": (60, 60), "funnel": (8, 12), "pucker": (8, 12), "spread": (12, 14)}
MUST_REACH = 6.0  # dominance of the lip tuck, a gesture that must be reached; vowels' own is 1
# Press at the centre of a closure, beyond the lips meeting at rest. At 1.0 the inner lips crossed
# 0.5-0.9 model cm, and on the rendered frames the lower lip hid the upper one at every p/b/m.
LIP_PRESS = 0.3
MIN_HOLD_S = 0.1  # a lip tuck holds at least this long
CLOSURE_HOLD_S = (0.06, 0.12)  # a bilabial closure lasts 60-120 ms
CLOSURE_RAMP_S = 0.04  # the lips take ~40 ms to close or part
VOWEL_SHARE = 1 / 3  # a closure's hold and ramp each take at most this share of the way to a vowel centre
STRETCH_SCALE = 0.6  # spread 1 -> mouthStretch 0.6 each side
JAW_SPAN_DB = 20.0  # the jaw opens fully at the speaker's level and not at all this far below it

# Jaw opening by vowel height (0 closed ... 1 the rig's widest "ah"). Close vowels still part the lips
# visibly (a third to a half of an open vowel's gap), also between two bilabials.
_JAW = {
    "AA": 0.7, "AE": 0.65, "AH": 0.55, "AO": 0.6, "EH": 0.5, "ER": 0.38, "IH": 0.33, "IY": 0.28,
    "UH": 0.33, "UW": 0.25, "B": 0.05, "P": 0.05, "M": 0.05, "F": 0.08, "V": 0.08, "TH": 0.15,
    "DH": 0.15, "T": 0.15, "D": 0.15, "N": 0.15, "L": 0.18, "S": 0.08, "Z": 0.08, "SH": 0.12,
    "ZH": 0.12, "CH": 0.12, "JH": 0.12, "K": 0.2, "G": 0.2, "NG": 0.2, "R": 0.15, "W": 0.1,
    "Y": 0.12, "HH": 0.3, SILENCE: 0.0,
}
# (funnel, pucker) of rounded phones; spread of spread-lip phones.
_ROUND = {
    "UW": (0.35, 0.85), "UH": (0.35, 0.45), "AO": (0.55, 0.3), "ER": (0.35, 0.2), "R": (0.35, 0.3),
    "W": (0.3, 0.9), "SH": (0.6, 0.25), "ZH": (0.6, 0.25), "CH": (0.6, 0.25), "JH": (0.6, 0.25),
}
_SPREAD = {"IY": 0.7, "IH": 0.4, "EH": 0.4, "AE": 0.3, "S": 0.25, "Z": 0.25, "T": 0.15, "D": 0.15, "N": 0.15}
DIPHTHONGS = {
    "AY": ("AA", "IH"),
    "AW": ("AA", "UH"),
    "EY": ("EH", "IY"),
    "OW": ("AO", "UH"),
    "OY": ("AO", "IY"),
}
BILABIAL = frozenset(VISEME_GROUPS["bilabial"])
LABIODENTAL = frozenset(VISEME_GROUPS["labiodental"])
SIBILANT = frozenset(("S", "Z", "SH", "ZH", "CH", "JH"))


@dataclass(frozen=True)
class TargetConfig:
    articulation: float = 1.0  # scale of every mouth movement (a speaker's style)
    pose_std: tuple[float, ...] = field(default_factory=lambda: MotionStats().pose_std)
    seed: int = 0


def _col(name: str) -> int:
    return EXP_START + EXPRESSION_NAMES.index(name)


def phone_targets(phone: str) -> dict[str, tuple[float, float]]:
    """channel -> (target, dominance) of one (monophthong) phone."""
    vowel = phone in gan_prosody.VOWELS
    # Bilabials hold the jaw only loosely: the lips close the gap, so the vowels around keep their jaw.
    jaw_dominance = (
        1.0 if vowel else 0.5 if phone in BILABIAL else 0.7 if phone in SIBILANT
        else 0.05 if phone == "HH" else 0.6 if phone == SILENCE else 0.4
    )
    funnel, pucker = _ROUND.get(phone, (0.0, 0.0))
    rounded, spread = phone in _ROUND, phone in _SPREAD
    # Rounding: strong for rounded phones, firm 0 for spread ones, weak 0 otherwise (so it spreads).
    round_dominance = 3.0 if rounded else 2.0 if spread and vowel else 0.5 if phone == SILENCE else 0.3
    spread_dominance = 1.0 if spread else 2.0 if rounded else 0.3
    return {
        "jaw": (_JAW[phone], jaw_dominance),
        "tuck": (1.0, MUST_REACH) if phone in LABIODENTAL else (0.0, 1.0 if vowel else 0.5),
        "funnel": (funnel, round_dominance),
        "pucker": (pucker, round_dominance),
        "spread": (_SPREAD.get(phone, 0.0), spread_dominance),
    }


def _split_diphthongs(segments: list[Segment]) -> list[Segment]:
    out = []
    for phone, start, end in segments:
        if phone in DIPHTHONGS:
            middle = (start + end) / 2
            out += [(DIPHTHONGS[phone][0], start, middle), (DIPHTHONGS[phone][1], middle, end)]
        else:
            out.append((phone, start, end))
    return out


def viseme_channels(segments: list[Segment], n: int) -> dict[str, np.ndarray]:
    """channel -> [n] values at the frame times t = i / FPS, by dominance-weighted blending."""
    parts = _split_diphthongs(segments)
    if not parts:
        return {c: np.zeros(n) for c in CHANNELS}
    t = np.arange(n) / FPS
    starts = np.array([s for _, s, _ in parts])
    ends = np.array([e for _, _, e in parts])
    centre, half = (starts + ends) / 2, np.maximum(ends - starts, 1e-3) / 4  # plateau: the central half
    must_reach = np.array([p in LABIODENTAL for p, _, _ in parts])
    half = np.where(must_reach, np.maximum(half, MIN_HOLD_S / 2), half)
    offset = t[None, :] - centre[:, None]  # [S, n], > 0 after the centre
    tau = np.maximum(np.abs(offset) - half[:, None], 0)
    table = [phone_targets(p) for p, _, _ in parts]
    out = {"closure": closures(parts, t)}
    for c in BLENDED:
        target = np.array([row[c][0] for row in table])
        alpha = np.array([row[c][1] for row in table])
        before, after = THETA[c]
        dominance = alpha[:, None] * np.exp(-np.where(offset < 0, before, after) * tau)
        out[c] = (dominance * target[:, None]).sum(0) / dominance.sum(0)
    return out


def closures(parts: list[Segment], t: np.ndarray) -> np.ndarray:
    """Lip closure 0..1 at times t [n]: the strongest of the bilabials' closure gestures. Each is held
    CLOSURE_HOLD_S around its phone's centre and ramps over CLOSURE_RAMP_S, both shortened so
    that they take at most VOWEL_SHARE of the way to the nearest vowel centre either side."""
    out = np.zeros(len(t))
    vowels = np.array([(s + e) / 2 for p, s, e in parts if p in gan_prosody.VOWELS])
    for phone, start, end in parts:
        if phone not in BILABIAL:
            continue
        centre = (start + end) / 2
        room = np.abs(vowels - centre).min() if len(vowels) else np.inf
        half = min(np.clip(end - start, *CLOSURE_HOLD_S) / 2, VOWEL_SHARE * room)
        ramp = min(CLOSURE_RAMP_S, VOWEL_SHARE * room)
        beyond = np.maximum(np.abs(t - centre) - half, 0) / ramp
        out = np.maximum(out, np.where(beyond < 1, 0.5 + 0.5 * np.cos(np.pi * np.minimum(beyond, 1)), 0.0))
    return out


def loudness_gain(segments: list[Segment], energy_db: np.ndarray) -> np.ndarray:
    """[n] factor 0..1 on the jaw opening: the level of each frame (energy_db [n]) against the
    speaker's running level, which follows the vowels' frames."""
    vowels = np.zeros(len(energy_db), bool)
    for phone, start, end in _split_diphthongs(segments):
        if phone in gan_prosody.VOWELS:
            vowels[int(start * FPS) : int(np.ceil(end * FPS))] = True
    relative_db = RunningLevel().push(energy_db, vowels)
    return np.clip(1 + relative_db / JAW_SPAN_DB, 0, 1)


def mouth(channels: dict[str, np.ndarray], config: TargetConfig) -> np.ndarray:
    """Articulatory channels -> rig-weight offsets [n, NUM_PARAMS] (only mouth columns set)."""
    n = len(channels["jaw"])
    out = np.zeros((n, NUM_PARAMS))
    a = config.articulation
    jaw = a * channels["jaw"]
    out[:, _col("jawOpen")] = jaw
    out[:, _col("mouthClose")] = jaw * channels["closure"]
    for side in ("L", "R"):
        out[:, _col(f"mouthPress_{side}")] = LIP_PRESS * channels["closure"]
        out[:, _col(f"mouthStretch_{side}")] = a * STRETCH_SCALE * channels["spread"]
    open_lips = 1 - channels["closure"]  # closed lips cannot funnel or tuck: rounding shows as pucker
    out[:, _col("mouthLowerLipTuck")] = channels["tuck"] * open_lips
    out[:, _col("mouthFunnel")] = a * channels["funnel"] * open_lips
    out[:, _col("mouthPucker")] = a * channels["pucker"]
    return out


def targets(
    segments: list[Segment], audio: np.ndarray, config: TargetConfig, rest: FaceParams | None = None
) -> FaceParams:
    """Phone timings (phone in PHONES, start and end seconds) + the audio [S] at SAMPLE_RATE ->
    FaceParams [num_frames(S), NUM_PARAMS] around `rest` (default neutral)."""
    for phone, start, end in segments:
        if phone not in PHONE_INDEX or not end >= start:
            raise ValueError(f"bad phone segment ({phone!r}, {start}, {end})")
    n = num_frames(len(audio))
    rng = np.random.default_rng(config.seed)
    prosody = gan_prosody.analyse(segments, audio, n)
    channels = viseme_channels(segments, n)
    channels["jaw"] = channels["jaw"] * loudness_gain(segments, prosody.energy_db)
    out = mouth(channels, config)
    pose, brows = gan_prosody.head_motion(prosody, np.asarray(config.pose_std), rng)
    out[:, :6] = pose
    out[:, _col("browInnerUp")] = brows
    out[:, _col("browOuterUp_L")] = out[:, _col("browOuterUp_R")] = 0.6 * brows
    out[:, BLINK_COL] = gan_prosody.blinks(prosody, rng)
    base = np.zeros(NUM_PARAMS) if rest is None else rest.array[0]
    return FaceParams(out + base)
