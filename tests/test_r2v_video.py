"""R2V on a video's frames (engine/train/r2v/data.py VideoSource, engine/train/r2v/train.py): a synthetic
"video" made by the direct compositor under sampled parameters, so the truth is known, with some
frames marked lost and a time split into training and held-out frames."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.render.renderer import AvatarRenderer
from engine.train.r2v.data import (
    TrainingDataError,
    VideoSource,
    fit_frames,
    render_segment,
    sample_params,
    usable_runs,
    video_segment,
)
from engine.train.r2v.quality import GRID_ROWS, evaluate_video, mouth_boxes, psnr, run_segment
from engine.train.r2v.train import R2VTrainConfig, R2VTrainer
from models.discriminators import PatchGANConfig
from models.losses import ssim
from models.r2v import R2V, R2VConfig

SIZE = 64
FRAMES, SPLIT = 48, 36
LOST = [10, 11, 25, 42]  # training runs 0-9, 12-24, 26-35; held-out runs 36-41, 43-47
MODEL = R2VConfig(size=SIZE, widths=(8, 16), past=2, future=1)
CONFIG = R2VTrainConfig(
    model=MODEL,
    steps=30,
    batch=2,
    lr=1e-3,
    gan_start=25,
    discriminator=PatchGANConfig(in_channels=7, width=8, layers=2, scales=2),
    pool_segments=3,
    segment_frames=12,
    refresh_every=10,
    val_frames=8,
    val_every=1000,
    checkpoint_every=1000,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def video(avatar):
    """frames [N, S, S, 3] uint8 (pixel 0,0 red = the frame's index), params, usable, renderer."""
    renderer = AvatarRenderer(avatar, SIZE)
    params = sample_params(avatar, FRAMES, np.random.default_rng(3))
    frames = (renderer.composite(params).frames * 255 + 0.5).to(torch.uint8).numpy()
    frames[:, 0, 0, 0] = np.arange(FRAMES)
    usable = np.ones(FRAMES, bool)
    usable[LOST] = False
    return frames, params, usable, renderer


def test_usable_runs():
    usable = np.array([1, 1, 0, 1, 1, 1, 0, 0, 1], bool)
    assert usable_runs(usable, range(0, 9)) == [(0, 2), (3, 6), (8, 9)]
    assert usable_runs(usable, range(1, 5)) == [(1, 2), (3, 5)]  # cut at the range's ends
    assert usable_runs(usable, range(6, 8)) == []


def test_segments_never_include_lost_frames_nor_cross_the_split(video):
    frames, params, usable, renderer = video
    source = VideoSource(renderer, frames, params, usable, (0, SPLIT))
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(12):
        segment = source.segment(12, MODEL.frames, rng)
        index = segment.target[:, 0, 0, 0].long().numpy()
        assert (np.diff(index) == 1).all() and usable[index].all() and index[-1] < SPLIT
        assert torch.equal(segment.target, torch.from_numpy(frames[index]))  # the real frames are the targets
        lengths.append(len(segment))
    assert min(lengths) == 10 and max(lengths) == 12  # the 10-frame run is used whole
    inputs = render_segment(
        renderer, params[index[0] : index[-1] + 1]
    )  # rendered from the tracked parameters
    assert (
        torch.equal(segment.face, inputs.face)
        and torch.equal(segment.attention, inputs.attention)
        and torch.equal(segment.mouth, inputs.mouth)
    )
    with pytest.raises(TrainingDataError, match="no run of 14 consecutive usable frames"):
        source.segment(16, 14, rng)
    held_out = video_segment(renderer, frames, params, usable, (SPLIT, FRAMES), 4)
    assert held_out.target[:, 0, 0, 0].tolist() == [37, 38, 39, 40]  # the middle of the longest run


def test_a_memmap_video_is_read_a_segment_at_a_time(video, tmp_path):
    frames, params, usable, renderer = video
    on_disk = np.lib.format.open_memmap(
        tmp_path / "frames.npy", mode="w+", dtype=np.uint8, shape=frames.shape
    )
    on_disk[:] = frames
    on_disk.flush()
    read_only = np.load(tmp_path / "frames.npy", mmap_mode="r")
    segment = VideoSource(renderer, read_only, params, usable, (0, SPLIT)).render(12, 20)
    assert torch.equal(segment.target, torch.from_numpy(frames[12:20]))


def test_bad_video_input(video):
    frames, params, usable, renderer = video
    with pytest.raises(TrainingDataError, match="do not match"):
        VideoSource(renderer, frames[:-1], params, usable, (0, SPLIT))
    with pytest.raises(TrainingDataError, match="uint8"):
        VideoSource(renderer, frames.astype(np.float32), params, usable, (0, SPLIT))
    with pytest.raises(TrainingDataError, match="inside the video"):
        VideoSource(renderer, frames, params, usable, (0, FRAMES + 1))


def test_frames_of_another_size_are_resized():
    flat = np.full((2, 96, 96, 3), 200, np.uint8)
    assert fit_frames(flat, SIZE).shape == (2, SIZE, SIZE, 3) and (fit_frames(flat, SIZE) == 200).all()


def test_training_on_a_video_lowers_the_loss_and_resumes(avatar, video, tmp_path):
    frames, params, usable, renderer = video
    source = VideoSource(renderer, frames, params, usable, (0, SPLIT))
    validation = video_segment(renderer, frames, params, usable, (SPLIT, FRAMES), CONFIG.val_frames)
    trainer = R2VTrainer(avatar, CONFIG, tmp_path, source=source, validation=validation)
    before = trainer.validate()
    losses = [trainer.train_step() for _ in range(CONFIG.steps)]
    first, last = (np.mean([step["l1"] for step in part]) for part in (losses[:5], losses[-5:]))
    assert last < first and "gan" in losses[-1]
    assert trainer.validate().psnr > before.psnr + 1  # on held-out frames (+2 dB when measured)
    assert (tmp_path / "val" / "step_000030.png").is_file()
    trainer.save_checkpoint()
    resumed = R2VTrainer(
        avatar,
        R2VTrainConfig(**{**CONFIG.__dict__, "steps": 32}),
        tmp_path,
        source=source,
        validation=validation,
    )
    assert resumed.step == 30
    for mine, theirs in zip(
        trainer.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(mine, theirs)
    resumed.train(progress=False)
    assert resumed.step == 32
    with pytest.raises(TrainingDataError, match="renders 32x32"):
        R2VTrainer(
            avatar,
            CONFIG,
            tmp_path / "other",
            source=VideoSource(AvatarRenderer(avatar, 32), frames, params, usable, (0, SPLIT)),
        )


def test_evaluation_over_the_held_out_frames_matches_a_direct_computation(video, tmp_path):
    frames, params, usable, renderer = video
    torch.manual_seed(0)
    model = R2V(MODEL).eval()
    for p in model.parameters():  # an output that depends on the whole input stack
        p.data.add_(0.05 * torch.randn_like(p))
    result = evaluate_video(
        model,
        VideoSource(renderer, frames, params, usable, (SPLIT, FRAMES)),
        batch=4,
        grid_path=tmp_path / "grid.png",
    )

    per_frame, flicker = [], []
    for a, b in [(36, 42), (43, 48)]:  # each held-out run whole, as its own clip
        clip = render_segment(renderer, params[a:b], frames[a:b])
        outputs = run_segment(model.generate, clip, MODEL)
        truth = clip.target.permute(0, 3, 1, 2).float() / 255
        out_mouth, gt_mouth = mouth_boxes(outputs, clip.mouth.bool()), mouth_boxes(truth, clip.mouth.bool())
        per_frame.append(
            torch.stack(
                [
                    psnr(outputs, truth),
                    ssim(outputs, truth),
                    psnr(out_mouth, gt_mouth),
                    ssim(out_mouth, gt_mouth),
                ],
                1,
            )
        )
        flicker.append((outputs.diff(dim=0) - truth.diff(dim=0)).abs().flatten() * 255)
    expected = torch.cat(per_frame).mean(0).tolist() + [torch.cat(flicker).mean().item()]
    assert [result.psnr, result.ssim, result.mouth_psnr, result.mouth_ssim, result.flicker] == pytest.approx(
        expected, rel=1e-4
    )
    assert np.asarray(Image.open(tmp_path / "grid.png")).shape == (GRID_ROWS * SIZE, 4 * SIZE, 3)
