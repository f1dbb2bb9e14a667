"""Training the built-in phonetic model: the aligner, forced alignment of the real recordings,
the final model (`python -m engine train-features`, engine/train/speech/cli.py, runs it).

1. Build the corpus (engine/train/speech/data.py).
2. Train an *aligner* (the same network with a long look-ahead) on the synthetic speech, align the
   real recordings' transcripts with it (Viterbi), retrain it on synthetic + real, realign.
3. Train the shipped model (short look-ahead) on synthetic + aligned real speech; save it with its
   config, normaliser statistics and held-out scores.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.audio.phones import IS_VOICED, PHONE_INDEX, PHONES, SILENCE, VISEME_OF_PHONE, VISEMES
from engine.train.speech import data as speech_data
from engine.train.speech.align import align
from engine.train.speech.evaluate import decode, edit_distance, summary, viseme_confusion
from models.phonetic import PhoneticConfig, PhoneticNet, RunningCMVN, save_phonetic

IGNORE = -100


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    aligner_lookahead_steps: int = 20  # 400 ms: alignment may look far ahead, it is offline
    aligner_batches: tuple[int, ...] = (800, 800, 800)  # synthetic only, then twice with real speech
    final_batches: int = 4000
    batch: int = 32
    crop_steps: int = 200  # 4 s
    real_fraction: float = 0.5  # of each batch, once real speech is aligned
    lr: float = 2e-3
    lip_weight: float = 1.5  # loss weight of bilabial and labiodental phones: short, and what lips show
    seed: int = 0


def normalise(
    utterances: list[speech_data.Utterance], config: PhoneticConfig
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Global log-mel statistics (the running normaliser's starting point) and every utterance's
    normalised frames, each run from that start as the live extractor would."""
    sample = np.concatenate([u.mels[::7] for u in utterances]).astype(np.float64)
    mean, var = sample.mean(0), sample.var(0)
    decay = float(np.exp(-config.hop / (config.sample_rate * config.cmvn_seconds)))
    return (
        mean,
        var,
        [
            RunningCMVN(mean, var, decay).push(u.mels.astype(np.float32)).astype(np.float16)
            for u in utterances
        ],
    )


class Stream:
    """Utterances concatenated into one long frame/label stream to crop batches from."""

    def __init__(self, feats: list[np.ndarray], labels: list[np.ndarray], stride: int) -> None:
        self.feats = np.concatenate(feats)
        self.labels = np.concatenate(labels)
        self.stride = stride

    def __len__(self) -> int:
        return len(self.labels)

    def crops(self, count: int, steps: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        starts = rng.integers(0, len(self.labels) - steps, count)
        x = np.stack([self.feats[s * self.stride : (s + steps) * self.stride] for s in starts])
        y = np.stack([self.labels[s : s + steps] for s in starts])
        return torch.from_numpy(x.astype(np.float32)).transpose(1, 2), torch.from_numpy(y)


def train(
    model: PhoneticNet, streams: list[tuple[Stream, float]], batches: int, tc: TrainConfig, log
) -> None:  # noqa: ANN001
    """AdamW with a one-cycle schedule; each batch mixes the streams by their fractions."""
    rng = np.random.default_rng(tc.seed + batches)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, tc.lr, total_steps=batches, pct_start=0.1)
    shift = model.config.lookahead_steps
    voiced = torch.from_numpy(IS_VOICED)
    lip_phones = np.isin(VISEME_OF_PHONE, [VISEMES.index("bilabial"), VISEMES.index("labiodental")])
    class_weights = torch.from_numpy(np.where(lip_phones, tc.lip_weight, 1.0).astype(np.float32))
    model.train()
    start, running = time.time(), []
    for step in range(batches):
        parts = [s.crops(max(1, round(tc.batch * f)), tc.crop_steps + shift, rng) for s, f in streams]
        x = torch.cat([p[0] for p in parts])
        y = torch.cat([p[1] for p in parts])
        out = model(x)[:, :, shift:]  # output j + shift describes step j
        target = y[:, : y.shape[1] - shift]
        phones = nn.functional.cross_entropy(out[:, :-1], target, weight=class_weights, ignore_index=IGNORE)
        valid = target != IGNORE
        voicing = nn.functional.binary_cross_entropy_with_logits(out[:, -1][valid], voiced[target[valid]])
        loss = phones + 0.2 * voicing
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        running.append(phones.item())
        if (step + 1) % 200 == 0:
            log(
                f"    batch {step + 1}/{batches}  phone loss {np.mean(running):.3f}  "
                f"{time.time() - start:.0f} s"
            )
            running = []
    model.eval()


@torch.no_grad()
def log_posteriors(model: PhoneticNet, feats: np.ndarray) -> np.ndarray:
    """Normalised frames [2T, n_mels] -> phone log posteriors [T, NUM_PHONES] per step (delay removed)."""
    shift = model.config.lookahead_steps
    x = torch.from_numpy(feats.astype(np.float32)).T[None]
    x = nn.functional.pad(x, (0, shift * model.config.stride))
    out = model(x)[0, :-1, shift:]
    return torch.log_softmax(out, dim=0).T.numpy()


def align_real(model: PhoneticNet, utterances: list, feats: list[np.ndarray], log) -> None:  # noqa: ANN001
    """Fill `labels` of the real utterances by forced alignment (None where it fails)."""
    failed = 0
    for u, f in zip(utterances, feats, strict=True):
        if u.real:
            u.labels = align(log_posteriors(model, f), u.words)
            failed += u.labels is None
    log(f"  aligned real speech ({failed} prompts too short to align)")


def scores(model: PhoneticNet, utterances: list, feats: list[np.ndarray], real: bool) -> dict:
    """Held-out scores per network step (the benchmark scores the extractor's 30 fps output)."""
    errors = total = 0
    confusion: np.ndarray | int = 0  # stays 0 when no utterance is scored
    for u, f in zip(utterances, feats, strict=True):
        if not u.held_out or u.real != real or u.labels is None:
            continue
        lp = log_posteriors(model, f)
        reference = [PHONE_INDEX[p] for w in u.words for p in w]
        errors += edit_distance(decode(lp.argmax(1), min_run=2), reference)
        total += len(reference)
        confusion = confusion + viseme_confusion(u.labels, np.exp(lp))
    return summary(np.asarray(confusion), errors, total)


def streams_for(
    utterances: list, feats: list[np.ndarray], stride: int, with_real: bool, tc: TrainConfig
) -> list:
    def stream(keep) -> Stream:  # noqa: ANN001
        chosen = [
            (f, u.labels)
            for u, f in zip(utterances, feats, strict=True)
            if keep(u) and u.labels is not None and not u.held_out
        ]
        return Stream([f for f, _ in chosen], [lab for _, lab in chosen], stride)

    synthetic = stream(lambda u: not u.real)
    if not with_real:
        return [(synthetic, 1.0)]
    return [(synthetic, 1 - tc.real_fraction), (stream(lambda u: u.real), tc.real_fraction)]


def train_model(
    out: Path, data_path: Path, reuse_data: bool, quick: bool, log: Callable[[str], None]
) -> None:
    """Build (or, with `reuse_data`, load) the corpus at `data_path`, train the aligner and the final
    model; write them to `out` and NAME.aligner.pt beside it. `quick`: tiny data, few batches."""
    torch.manual_seed(0)
    began = time.time()
    config = PhoneticConfig()
    data = (
        speech_data.DataConfig(espeak_sentences=60, festival_sentences=6, real_copies=1)
        if quick
        else speech_data.DataConfig()
    )
    tc = TrainConfig(aligner_batches=(20, 20, 20), final_batches=20, batch=8) if quick else TrainConfig()
    if reuse_data and data_path.exists():
        utterances = speech_data.load(data_path)
    else:
        log("building speech data")
        utterances = speech_data.build(data_path, config, data, log)
    mean, var, feats = normalise(utterances, config)

    aligner = PhoneticNet(dataclasses.replace(config, lookahead_steps=tc.aligner_lookahead_steps))
    for round_, batches in enumerate(tc.aligner_batches):
        log(f"aligner round {round_ + 1}: {batches} batches")
        train(aligner, streams_for(utterances, feats, config.stride, round_ > 0, tc), batches, tc, log)
        align_real(aligner, utterances, feats, log)
        log(f"  aligner held-out real: {scores(aligner, utterances, feats, real=True)}")

    aligner_path = out.with_name(out.stem + ".aligner.pt")
    aligner.cmvn_mean.copy_(torch.from_numpy(mean).float())
    aligner.cmvn_var.copy_(torch.from_numpy(var).float())
    save_phonetic(
        aligner, str(aligner_path), purpose="forced alignment of held-out recordings for the benchmark"
    )
    log(f"final model: {tc.final_batches} batches")
    model = PhoneticNet(config)
    model.cmvn_mean.copy_(torch.from_numpy(mean).float())
    model.cmvn_var.copy_(torch.from_numpy(var).float())
    train(model, streams_for(utterances, feats, config.stride, True, tc), tc.final_batches, tc, log)
    held_out = {
        "real": scores(model, utterances, feats, real=True),
        "synthetic": scores(model, utterances, feats, real=False),
    }
    log(f"  final held-out (per 20 ms step): {held_out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_phonetic(model, str(out), phones=list(PHONES), silence=SILENCE, train_config=dataclasses.asdict(tc),
                  data_config=dataclasses.asdict(data), held_out_step_scores=held_out,
                  train_seconds=round(time.time() - began))
    log(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB)")

