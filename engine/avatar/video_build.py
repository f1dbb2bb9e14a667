"""Your own avatar from a 2-3 minute video: one command, resumable stages, an atomic bundle.

    python -m engine build-avatar --video IN --out avatars/NAME [--preset quick|full] [--device cpu|cuda]

Each stage writes its result into the work directory (default `out/build-avatar/NAME/`), each file
atomically, so an interrupted build starts again at the stage it was in (the training stages from
their checkpoints). A work directory made from another video or preset is started afresh.

  probe     length, size, sound: refuses clips under 5 s, warns under 20 s
  track     MediaPipe face mesh on every 30-fps frame (engine/face/video_track.py)
  crop      one square head-and-shoulders crop for the whole clip; the frames, cropped and resized,
            go to frames.u8 (a memory map: memory stays bounded whatever the clip's length)
  fit       the identity from the clip's most neutral frame; FaceParams for every frame
  features  the speech features of the clip's own sound
  gan       FACIAL-GAN fine-tuned from the general weights on the first 85% of the clip (by time)
  r2v       R2V trained on the same part (lite on the CPU, full on CUDA)
  report    held-out metrics on the last 15% (engine.avatar.build_report.py)
  bundle    everything written to --out in one atomic swap
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from engine.avatar.bundle import Avatar, save
from engine.avatar.video_crop import Crop, crop_frames, motion_stats, stable_crop, write_npy
from engine.avatar.work_dir import Work
from engine.errors import EngineError
from engine.face.model import Camera
from engine.progress import progress_bar
from engine.types import FPS, FaceParams

REPO = Path(__file__).resolve().parents[2]
MIN_SECONDS, SHORT_SECONDS = 5.0, 20.0
TRAIN_SHARE = 0.85  # the first 85% trains, the last 15% is held out
MIN_CONFIDENCE = 0.2  # frames the fitted face model misses by more than ~6% of the face's size are left out


class BuildError(EngineError):
    """A video that cannot become an avatar, or an output that must not be overwritten."""


@dataclass(frozen=True)
class Preset:
    resolution: int  # avatar and R2V frame size
    r2v_steps: int
    r2v_batch: int
    r2v_gan_start: int  # R2V's adversarial terms from this step
    gan_epochs: int  # FACIAL-GAN fine-tuning passes over the training windows (paper: 10)
    gan_steps: int | None = None  # or exactly this many steps (the tiny test preset)
    segment_frames: int = 96  # R2V training segments of consecutive frames
    pool_segments: int = 24  # ... kept at once
    val_frames: int = 90  # R2V validation frames while training


PRESETS = {
    "quick": Preset(resolution=256, r2v_steps=1500, r2v_batch=4, r2v_gan_start=1000, gan_epochs=10),
    "full": Preset(resolution=512, r2v_steps=8000, r2v_batch=4, r2v_gan_start=4000, gan_epochs=10),
    "tiny": Preset(
        resolution=128,
        r2v_steps=6,
        r2v_batch=2,
        r2v_gan_start=3,
        gan_epochs=1,
        gan_steps=4,
        segment_frames=16,
        pool_segments=2,
        val_frames=8,
    ),  # tests
}


@dataclass
class BuildOptions:
    video: Path
    out: Path
    name: str
    preset: str = "quick"
    device: str = "cpu"
    force: bool = False
    work: Path | None = None
    features: str = "builtin"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build(options: BuildOptions, log: Callable[[str], None] = say) -> Avatar:
    """Runs (or resumes) every stage and writes the bundle to `options.out`; returns it."""
    from engine.video import probe_video

    out = Path(options.out)
    if (out / "avatar.json").exists() and not options.force:
        raise BuildError(f"{out} already holds an avatar; pass --force to replace it")
    if out.exists() and not (out / "avatar.json").exists() and any(out.iterdir()):
        raise BuildError(f"{out} exists and is not an avatar bundle; choose another --out")
    if options.preset not in PRESETS:
        raise BuildError(f"unknown preset '{options.preset}', expected one of {sorted(PRESETS)}")
    preset = PRESETS[options.preset]
    info = probe_video(options.video)
    if info.seconds < MIN_SECONDS:
        raise BuildError(
            f"{options.video}: {info.seconds:.1f} s of video; an avatar needs at least {MIN_SECONDS:.0f} s "
            "(2-3 minutes is best)"
        )
    if info.seconds < SHORT_SECONDS:
        log(
            f"warning: {info.seconds:.1f} s of video is short; 2-3 minutes of talking gives a far better "
            "avatar"
        )
    stat = Path(options.video).stat()
    manifest = {"video": str(Path(options.video).resolve()), "bytes": stat.st_size, "mtime": stat.st_mtime,
                "preset": options.preset, "device": options.device, "features": options.features}
    work = Work(Path(options.work or REPO / "out" / "build-avatar" / options.name), manifest)
    log(
        f"building '{options.name}' from {options.video} ({info.width}x{info.height}, {info.seconds:.1f} s, "
        f"{'with' if info.has_audio else 'WITHOUT'} sound), preset {options.preset}; work directory "
        f"{work.path}"
    )

    stages = Stages(options, preset, work, info, log)
    for stage in ("track", "crop", "fit", "features", "gan", "r2v", "report"):
        if work.done(stage):
            log(f"[{stage}] done before, reused")
            continue
        log(f"[{stage}]")
        start = time.monotonic()
        getattr(stages, stage)()
        work.finish(stage, time.monotonic() - start)
    return stages.bundle(out)


class Stages:
    """The stages of one build; each reads the earlier stages' files from the work directory."""

    def __init__(self, options: BuildOptions, preset: Preset, work: Work, info, log: Callable[[str], None]):  # noqa: ANN001
        self.options, self.preset, self.work, self.info, self.log = options, preset, work, info, log

    # -- track, crop, fit ------------------------------------------------------------------------
    def track(self) -> None:
        from engine.face.video_track import track_video

        with progress_bar("track", self.info.frames, "frame") as bar:
            track = track_video(self.options.video, progress=bar)
        lost = int((~track.valid).sum())
        if (track.faces > 1).any():
            self.log(
                f"warning: several faces in {int((track.faces > 1).sum())} frames; the largest one is used"
            )
        if lost:
            self.log(
                f"the face was lost in {lost} of {len(track.valid)} frames ({lost / len(track.valid):.0%}); "
                "those frames are left out of training"
            )
        track.save(self.work / "track.npz")

    def crop(self) -> None:
        from engine.face.video_track import VideoTrack

        track = VideoTrack.load(self.work / "track.npz")
        crop = stable_crop(track.landmarks, track.valid, track.width, track.height)
        with progress_bar("crop", len(track.valid), "frame") as bar:
            crop_frames(
                self.options.video,
                crop,
                len(track.valid),
                self.preset.resolution,
                self.work / "frames.npy",
                bar,
            )
        self.work.write_json("crop.json", asdict(crop))

    def frames(self) -> np.ndarray:
        """[N, R, R, 3] uint8, memory-mapped."""
        return np.load(self.work / "frames.npy", mmap_mode="r")

    def fit(self) -> None:
        from engine.face.video_track import VideoTrack, fit_clip, write_npz

        track = VideoTrack.load(self.work / "track.npz")
        crop = Crop(**self.work.read_json("crop.json"))
        r = self.preset.resolution
        with progress_bar("fit", len(track.valid), "frame") as bar:
            clip = fit_clip(
                crop.landmarks(track.landmarks, r), track.valid, Camera.with_fov(r, r), progress=bar
            )
        write_npz(
            self.work / "fit.npz",
            params=clip.params.array,
            valid=clip.valid,
            confidence=clip.confidence,
            reference=clip.reference,
            vertices=clip.identity.vertices,
            home=clip.identity.home,
            landmarks=crop.landmarks(track.landmarks[clip.reference], r),
        )
        poor = int((clip.valid & (clip.confidence < MIN_CONFIDENCE)).sum())
        if poor:
            self.log(
                f"{poor} tracked frames fit the face model poorly (confidence < {MIN_CONFIDENCE}); they are "
                "left out of R2V training"
            )

    @cached_property
    def draft(self) -> Avatar:
        """The avatar as far as tracking makes it (no trained weights): what training renders.
        Read from fit.npz once, when a stage after `fit` first needs it."""
        from engine.face.model import Identity
        from engine.face.rest import closed_rest

        r = self.preset.resolution
        with np.load(self.work / "fit.npz") as f:
            params, valid, ref = FaceParams(f["params"]), f["valid"], int(f["reference"])
            identity = Identity(f["vertices"], f["home"], Camera.with_fov(r, r))
            uv = f["landmarks"][:, :2] / r
        return Avatar(
            name=self.options.name,
            path=self.work.path,
            resolution=r,
            feature_kind=self.options.features,
            identity=identity,
            uv=uv,
            reference=np.array(self.frames()[ref]),
            reference_params=params[ref : ref + 1],
            rest_params=closed_rest(identity, params[ref : ref + 1]),
            motion=motion_stats(params, valid),
            source=f"video {Path(self.options.video).name}",
        )

    @cached_property
    def fitted(self) -> tuple[FaceParams, np.ndarray]:
        """Every frame's FaceParams [N] and whether it is usable [N]: tracked, and fitted well
        (read once, after the `fit` stage)."""
        with np.load(self.work / "fit.npz") as f:
            return FaceParams(f["params"]), f["valid"] & (f["confidence"] >= MIN_CONFIDENCE)

    @property
    def split(self) -> int:
        return int(round(TRAIN_SHARE * len(self.fitted[1])))

    # -- speech ----------------------------------------------------------------------------------
    def features(self) -> None:
        from engine.audio.decode import load_audio
        from engine.audio.features import extractor

        if not self.info.has_audio:
            self.log("no sound in the video: the avatar speaks with the general FACIAL-GAN")
            return
        audio = load_audio(self.options.video)
        features = extractor(self.options.features).offline(audio)
        write_npy(self.work / "features.npy", features.astype(np.float32))

    def gan(self) -> None:
        from engine.pipeline.animator import WEIGHTS_DIR
        from engine.train.gan import train as gan

        if not (self.work / "features.npy").is_file():
            return
        features = np.load(self.work / "features.npy")
        params, _ = self.fitted
        avatar = self.draft
        general = gan.load(WEIGHTS_DIR / f"facial_gan_{self.options.features}.pt")
        window = general["config"]["window"]
        n = min(len(features), self.split)
        if n < window:
            self.log(
                f"only {n / FPS:.1f} s to train on, FACIAL-GAN needs {window / FPS:.1f} s: the avatar speaks "
                "with the general FACIAL-GAN"
            )
            return
        # Lost frames carry interpolated parameters; they are kept so the windows stay continuous.
        offsets = params.array[:n] - avatar.rest_params.array[0]  # the GAN's outputs are added to the rest
        info = {**general["meta"], "avatar": self.options.name, "frames": n}
        state = gan.fine_tune(
            general,
            features[:n],
            offsets,
            self.work / "gan.ckpt",
            info,
            self.preset.gan_steps,
            epochs=self.preset.gan_epochs,
            resume=True,
            log=self.log,
        )
        gan.save_atomic(gan.shipped(state), self.work / f"facial_gan_{self.options.features}.pt")

    # -- rendering-to-video ----------------------------------------------------------------------
    @property
    def variant(self) -> str:
        return variant_for(self.options.device)

    def r2v(self) -> None:
        from engine.render.renderer import AvatarRenderer
        from engine.train.r2v.data import VideoSource, video_segment
        from engine.train.r2v.train import R2VTrainer

        avatar, (params, usable), frames = self.draft, self.fitted, self.frames()
        config = r2v_config(self.preset, self.variant)
        renderer = AvatarRenderer(avatar, config.model.size, self.options.device)
        source = VideoSource(renderer, frames, params, usable, (0, self.split))
        validation = video_segment(
            renderer, frames, params, usable, (self.split, len(usable)), config.val_frames
        )
        trainer = R2VTrainer(
            avatar, config, self.work / "r2v", self.options.device, source=source, validation=validation
        )
        trainer.train()
        trainer.export(self.work / f"r2v_{self.variant}.pt")

    # -- report and bundle -----------------------------------------------------------------------
    def report(self) -> None:
        from engine.avatar.build_report import write_report

        write_report(self)

    def trained(self) -> Avatar:
        """The draft avatar with whatever the training stages made, files in the work directory."""
        kind, variant = self.options.features, self.variant
        made = {
            f"facial_gan_{kind}": f"facial_gan_{kind}.pt",
            f"r2v_{variant}": f"r2v_{variant}.pt",
            "report": "report.md",
            "report_curves": "report_curves.png",
            "report_frames": "report_frames.png",
        }
        files = {key: name for key, name in made.items() if (self.work / name).is_file()}
        return replace(self.draft, extra_files=files)

    def bundle(self, out: Path) -> Avatar:
        from engine.avatar.bundle import load

        save(self.trained(), out)  # one atomic swap: a crash never leaves half an avatar
        self.log(f"wrote avatar '{self.options.name}' to {out}")
        return load(out)


def variant_for(device: str) -> str:
    """R2V variant by device: full (pix2pixHD) on CUDA, lite on the CPU."""
    return "full" if device.startswith("cuda") else "lite"


def r2v_config(preset: Preset, variant: str):  # noqa: ANN201 (engine.train.r2v.train.R2VTrainConfig)
    from engine.train.r2v.train import VARIANT_DEFAULTS, R2VTrainConfig
    from models.discriminators import PatchGANConfig
    from models.r2v import R2VConfig

    width, layers, scales = VARIANT_DEFAULTS[variant].discriminator
    return R2VTrainConfig(
        model=R2VConfig(variant=variant, size=preset.resolution, future=0),  # live: the server's stack
        steps=preset.r2v_steps,
        batch=preset.r2v_batch,
        lr=1e-3 if variant == "lite" else 2e-4,
        gan_start=preset.r2v_gan_start,
        segment_frames=preset.segment_frames,
        pool_segments=preset.pool_segments,
        val_frames=preset.val_frames,
        discriminator=PatchGANConfig(in_channels=7, width=width, layers=layers, scales=scales),
        val_every=max(1, preset.r2v_steps // 4),
        refresh_every=10,
    )


def train_photo_r2v(
    avatar: Avatar, preset: str, device: str = "cpu", work: str | os.PathLike | None = None
) -> Avatar:
    """A photo avatar's R2V, trained on the direct compositor's frames under sampled parameters
    (engine/train/r2v/data.py), added to its bundle. Resumes from `work` (default out/r2v/NAME-photo)."""
    from engine.avatar.bundle import add_files
    from engine.train.r2v.train import R2VTrainer

    variant = variant_for(device)
    config = r2v_config(replace(PRESETS[preset], resolution=avatar.resolution), variant)
    run_dir = Path(work or REPO / "out" / "r2v" / f"{avatar.name}-photo")
    trainer = R2VTrainer(avatar, config, run_dir, device)
    trainer.train()
    weights = trainer.export(run_dir / f"r2v_{variant}.pt")
    say(f"added R2V ({variant}, {trainer.step} steps) to avatar '{avatar.name}'")
    return add_files(avatar.path, {f"r2v_{variant}": weights})
