"""FaceParams -> an avatar's final uint8 frames: through R2V when the avatar has weights for the
requested variant, through the direct compositor otherwise. Either way only the face region of
each frame is new: it is pasted into the still background of the output frame, whatever its size
(engine/render/framing.py).

R2V's input for frame t is a stack of rendered faces t - past .. t + future (models/r2v.py).
`FrameSource` builds those stacks two ways:
- `render(params)`: a stream. Calls continue one sequence: the last `past` frames' parameters are
  kept as history across calls (`reset()` starts a new sequence). Future slots take the frames
  after t in the same call, then `lookahead` (frames the caller knows but will pass next time), and
  are clamped to the newest frame known. With `live=True` no future frame is ever used: the slots
  hold the current frame, as at the end of a sequence (a network trained with future=0 has none).
- `windows(params)`: stateless, for callers who know the parameters of any frame (idle motion):
  each item is the whole window of past + 1 + future frames.
Rendered faces are cached by their parameters (an LRU of uint8 frames, as in training), so a
stream renders each face once however many stacks it appears in. Everything is thread-safe.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from engine.avatar.bundle import Avatar
from engine.errors import EngineError
from engine.render.framing import DEFAULT_SIZE, Framing, PasteBack
from engine.render.renderer import AvatarRenderer
from engine.types import NUM_PARAMS, FaceParams
from models.r2v import R2V, R2VConfig, R2VError

RENDERERS = ("auto", "r2v", "composite")
CACHE_FRAMES = 256  # rendered faces kept: a few sessions' windows


class FramesError(EngineError):
    """A renderer that cannot be used for this avatar as asked."""


def r2v_weights(avatar: Avatar, variant: str = "lite") -> Path | None:
    """The avatar's R2V weights file for `variant`, or None when its bundle has none."""
    name = avatar.extra_files.get(f"r2v_{variant}")
    return avatar.path / name if name and (avatar.path / name).is_file() else None


def to_uint8_tensor(frames: Tensor) -> Tensor:
    """[N, S, S, 3] float 0..1 -> uint8."""
    return (frames.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


class FrameSource:
    """An avatar's frames at `size` x `size` (default DEFAULT_SIZE), framed by `view` (a portrait
    around the face, or the whole reference frame): the face region is drawn at the working size
    (the R2V network's, else the avatar's resolution) and pasted into the still background
    (engine/render/framing.py). renderer: "auto" (R2V when the avatar has `variant` weights, else
    the compositor), "r2v" (an error without weights) or "composite"."""

    def __init__(
        self,
        avatar: Avatar,
        *,
        renderer: str = "auto",
        variant: str = "lite",
        backend: str = "eager",
        size: int | None = None,
        device: str = "cpu",
        live: bool = False,
        view: str = "portrait",
    ):
        if renderer not in RENDERERS:
            raise FramesError(f"unknown renderer '{renderer}', expected one of {RENDERERS}")
        weights = r2v_weights(avatar, variant) if renderer != "composite" else None
        if renderer == "r2v" and weights is None:
            raise FramesError(
                f"avatar '{avatar.name}' has no r2v_{variant} weights: train them with `python -m engine "
                f"train-r2v --avatar {avatar.name} --variant {variant}`"
            )
        try:
            model = R2V.from_checkpoint(weights) if weights is not None else None
        except R2VError as e:  # models/ knows only torch: its errors become the engine's here
            raise FramesError(str(e)) from None
        self.uses_r2v = model is not None
        self.config = model.config if model is not None else R2VConfig(past=0, future=0)
        # The face region is drawn at the compositor's usual cost (the avatar's resolution), or
        # for R2V at the scale it was trained at: its size across the whole reference frame.
        try:
            self.framing = Framing.for_avatar(avatar, DEFAULT_SIZE if size is None else size, view)
        except ValueError as e:
            raise FramesError(str(e)) from None
        # R2V works on the whole reference frame, as it was trained (its face region is cut from
        # that); the compositor draws the face region only.
        work = self.config.size if model is not None else self.framing.work
        self.renderer = AvatarRenderer(avatar, work, device)
        self._rest_centre = self.renderer.head_centre(avatar.reference_params)
        self.size = self.framing.size
        self._paste = PasteBack(self.framing, avatar.reference, device)
        if model is not None:
            from engine.backends import make_backend  # the backends load only when R2V is used

            self.backend = make_backend(backend, model, device)
        self.live = live or self.config.live
        self.past, self.future = self.config.past, 0 if self.live else self.config.future
        self._faces: OrderedDict[bytes, Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self._history = np.zeros((0, NUM_PARAMS), np.float32)

    def reset(self) -> None:
        """Forget the stream's history: the next `render` starts a new sequence."""
        with self._lock:
            self._history = self._history[:0]

    def render(self, params: FaceParams, lookahead: FaceParams | None = None) -> np.ndarray:
        """The next frames of the stream: [N, S, S, 3] uint8."""
        if len(params) == 0:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        if not self.uses_r2v:
            return self._composite(params)
        ahead = (
            lookahead.array[: self.future] if lookahead is not None else np.zeros((0, NUM_PARAMS), np.float32)
        )
        with self._lock:
            known = np.concatenate([self._history, params.array])
            current = len(self._history) + np.arange(len(params))
            self._history = known[max(0, len(known) - self.past) :]
        return self._generate(np.concatenate([known, ahead]), current)

    def windows(self, params: FaceParams) -> np.ndarray:
        """Stateless: params [B * (past + 1 + future)], B windows oldest first -> [B, S, S, 3] uint8.
        With the compositor, past = future = 0: one frame per window."""
        span = self.past + 1 + self.future
        if len(params) % span:
            raise FramesError(
                f"windows need {span} frames each (past {self.past} + 1 + future {self.future}), got "
                f"{len(params)} frames"
            )
        rows = params.array
        current = np.arange(len(params) // span) * span + self.past
        if not self.uses_r2v:
            return self._composite(FaceParams(rows[current]))
        return self._generate(
            rows, current, window_starts=current - self.past, window_ends=current + self.future
        )

    def boxes(self, params: FaceParams) -> np.ndarray:
        """[N, 2] int: where each frame's face region sits in the output frame (its top-left
        corner, pixels); the region is `framing.box` pixels square."""
        return self.framing.boxes(self.renderer.head_centre(params) - self._rest_centre)

    def _composite(self, params: FaceParams) -> np.ndarray:
        boxes = self.boxes(params)
        regions = self.renderer.composite(params, self.framing.windows(boxes)).frames
        return self._paste(to_uint8_tensor(regions), boxes)

    def _generate(
        self,
        rows: np.ndarray,
        current: np.ndarray,
        window_starts: np.ndarray | None = None,
        window_ends: np.ndarray | None = None,
    ) -> np.ndarray:
        """R2V for frames `current` of the parameter rows [M, NUM_PARAMS]; each stack's indices are
        clamped to its window (default: all rows), and future slots to the current frame in live mode."""
        lo = window_starts if window_starts is not None else np.zeros_like(current)
        hi = (
            current
            if self.live
            else (window_ends if window_ends is not None else np.full_like(current, len(rows) - 1))
        )
        index = np.clip(
            current[:, None] + np.arange(-self.config.past, self.config.future + 1), lo[:, None], hi[:, None]
        )  # [B, F]
        faces = self._rendered_faces(rows, np.unique(index))
        attention = self.renderer.attention(FaceParams(rows[current]))  # [B, W, W]
        attention = (attention * 255 + 0.5).to(torch.uint8)[..., None]  # quantised as in training
        # Channels last end to end: the stack [B, W, W, 3F + 1] is the faces and the attention side
        # by side, and its permuted view is the [B, C, W, W] stack in the backends' layout, uncopied.
        stack = torch.stack(
            [torch.cat([faces[i] for i in window] + [attention[b]], -1) for b, window in enumerate(index)]
        )
        whole = self.backend(stack.permute(0, 3, 1, 2).float() / 255).permute(0, 2, 3, 1)  # [B, W, W, 3]
        boxes = self.boxes(FaceParams(rows[current]))
        return self._paste(self._paste.cut(whole, boxes), boxes)

    def _rendered_faces(self, rows: np.ndarray, needed: np.ndarray) -> dict[int, Tensor]:
        """Row index -> its rendered face [W, W, 3] uint8, from the cache or rendered now."""
        keys = {int(i): rows[i].tobytes() for i in needed}
        with self._lock:
            found = {i: self._faces[k] for i, k in keys.items() if k in self._faces}
            for i in found:
                self._faces.move_to_end(keys[i])
        missing = [i for i in keys if i not in found]
        if missing:  # rendered outside the lock: another thread may render the same face, harmlessly
            drawn = to_uint8_tensor(self.renderer.face(FaceParams(rows[missing])).frames)
            with self._lock:
                for i, face in zip(missing, drawn, strict=True):
                    found[i] = self._faces[keys[i]] = face
                while len(self._faces) > CACHE_FRAMES:
                    self._faces.popitem(last=False)
        return found
