"""Drawing an avatar: FaceParams -> frames, on CPU or CUDA.

Three outputs from one rasterization of the avatar's mesh (engine/render/mesh.py):
- `composite`: the direct compositor. A full frame made from the reference photo: inside the face
  each pixel samples the photo where its surface point was at rest (the interior shows its own
  colours where the photo has nothing); outside, the face boundary's displacement is extended
  smoothly and fades with distance, so hair and neck follow the head and the background stays.
- `face`: the textured, shaded face alone on black, the R2V network's input.
- `attention`: the eye attention map, each eye's region carrying that eye's closure (FACIAL's AU45).
Each draws the whole reference frame; `composite` can also draw, per frame, a square window of
it (`windows`: the face region that engine/render/framing.py pastes into a larger frame). A
window's edges stay still, so what is pasted meets the still background around it without a seam.
On CPU the compositor's per-pixel work runs in compiled kernels (kernels.py), with the same result.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn.functional import interpolate as resize

from engine.avatar.bundle import Avatar
from engine.face import topology
from engine.render.mesh import RenderMesh
from engine.render.raster import Fragments, interpolate, rasterize, sample_texture
from engine.types import FaceParams

WARP_GRID = 32  # the smooth outside displacement is solved on a coarse grid, then upsampled
WARP_BLEND = 0.04  # how far along the face boundary its motion is averaged (fraction of the frame)
WARP_REACH = 0.16  # distance over which that motion fades to a still background (fraction)
WINDOW_STILL = 0.2  # a window's outer band, as a fraction of its side, over which motion fades to 0
EYE_REGION_SCALE = 1.8  # attention region: the eye contour scaled about its centre
UV, PHOTO, COLOR, INNER, SHADE = (
    slice(0, 2),
    slice(2, 3),
    slice(3, 6),
    slice(6, 7),
    slice(7, 8),
)  # attribute columns
LIGHT = (0.0, -0.3, -1.0)  # toward the light from the face: in front, a little above
AMBIENT = 0.45


@dataclass
class Drawn:
    """One batch of frames: [N, S, S, 3] float in 0..1 and the rasterized fragments."""

    frames: Tensor
    frags: Fragments


class AvatarRenderer:
    """One avatar drawn at `size` x `size` on `device`: the reference frame, or per frame a window
    of it (composite). windows: [N, 3] (x0, y0, side) in the reference frame's units (0..1)."""

    def __init__(self, avatar: Avatar, size: int = 256, device: str | torch.device = "cpu"):
        self.avatar = avatar
        self.size = size
        self.device = torch.device(device)
        self.mesh = RenderMesh(avatar)
        self.camera = avatar.identity.camera.resized(size, size)
        self.faces = torch.as_tensor(self.mesh.faces, device=self.device)
        self.photo = self._tensor(avatar.reference).permute(2, 0, 1) / 255.0  # [3, R, R]
        self.uv = self._tensor(self.mesh.uv)
        # Per-vertex attributes interpolated in one pass, in the order of UV, PHOTO, COLOR, INNER.
        self.attrs = self._tensor(
            np.concatenate(
                [self.mesh.uv, self.mesh.photo[:, None], self.mesh.color, self.mesh.inner[:, None]], 1
            )
        )
        self.oval = torch.as_tensor(topology.regions().face_oval, device=self.device)
        grid = (torch.arange(WARP_GRID, device=self.device) + 0.5) / WARP_GRID
        self.grid = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).reshape(
            -1, 2
        )  # [G*G, 2] (u, v)
        edge = (torch.minimum(self.grid, 1 - self.grid) / WINDOW_STILL).clamp(0, 1)  # 0 at the edge
        self._window_still = (edge**2 * (3 - 2 * edge)).prod(-1)[:, None]  # [G*G, 1] smoothstep
        # [S, G] bilinear resizing's weights (align_corners=False), from resizing the identity:
        # the coarse field is upsampled by two small matrix products.
        eye = torch.eye(WARP_GRID, device=self.device)[None]
        self._upsample = resize(eye, size=size, mode="linear", align_corners=False)[0].T.contiguous()
        pixel = (torch.arange(size, device=self.device) + 0.5) / size
        self.pixels = torch.stack(torch.meshgrid(pixel, pixel, indexing="xy"), -1)  # [S, S, 2]
        self._eye_regions = _eye_regions(self.mesh)
        self._centre = self.mesh.model.identity.vertices.mean(0)
        if self.device.type == "cpu":  # the compiled kernels (kernels.py) ready before the first frame:
            self.composite(avatar.reference_params)  # the rasterizer's and the compositor's
            self.attention(avatar.reference_params)  # interpolate's

    def screen(self, params: FaceParams) -> Tensor:
        """[N, V, 3]: pixel x, y and camera depth of every mesh vertex (the whole frame)."""
        return self._tensor(self.camera.project(self.mesh.vertices(params)))

    def head_centre(self, params: FaceParams) -> np.ndarray:
        """[N, 2] where the centre of the face at rest is, moved by the head (not by the jaw or
        other expressions), in the reference frame's units."""
        r, t = self.mesh.model.head_transform(params)
        return self.camera.project(r @ self._centre + t)[:, :2] / self.size

    def _in_windows(self, screen: Tensor, windows: Tensor | None) -> Tensor:
        """Whole-frame screen coordinates [N, V, 3] -> the windows' pixels."""
        if windows is None:
            return screen
        xy = (screen[..., :2] - windows[:, None, :2] * self.size) / windows[:, None, 2:]
        return torch.cat([xy, screen[..., 2:]], -1)

    def _tensor(self, array: np.ndarray) -> Tensor:
        return torch.as_tensor(array, dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def composite(self, params: FaceParams, windows: Tensor | None = None) -> Drawn:
        """Frames of the person from the reference photo: [N, S, S, 3]."""
        whole = self.screen(params)
        frags = rasterize(self._in_windows(whole, windows), self.faces, self.size, self.size)
        pixels = self.pixels  # [S, S, 2] or, in windows, [N, S, S, 2]
        if windows is not None:
            pixels = windows[:, None, None, :2] + self.pixels * windows[:, None, None, 2:]
        outside = pixels + self._outside_motion(whole, windows)  # [N, S, S, 2]
        if self.device.type == "cpu":
            return Drawn(self._composite_compiled(frags, outside), frags)
        return Drawn(self._composite_tensors(frags, outside), frags)

    def _composite_tensors(self, frags: Fragments, outside: Tensor) -> Tensor:
        """The photo sampled at the face's uv inside the mesh and at `outside` [N, S, S, 2] beyond
        it, blended with the mesh's own colours where the photo has nothing: frames [N, S, S, 3]."""
        inside = interpolate(self.attrs, frags, self.faces)  # [N, S, S, 7], zero outside the mesh
        alpha = inside[..., INNER]
        photo = sample_texture(self.photo, alpha * inside[..., UV] + (1 - alpha) * outside)
        weight = torch.where(frags.mask[..., None], inside[..., PHOTO], 1.0)
        frames = weight * photo + (1 - weight) * inside[..., COLOR]
        return frames.clamp(0, 1)

    def _composite_compiled(self, frags: Fragments, outside: Tensor) -> Tensor:
        """`_composite_tensors` on CPU, the same operations in kernels.py's loops around the
        texture lookup: fewer passes over frame-sized tensors, the same frames."""
        from engine.render import kernels  # here: numba takes a while to import

        n, s = len(outside), self.size
        uv, weight, colour = torch.empty(n, s, s, 2), torch.empty(n, s, s), torch.empty(n, s, s, 3)
        kernels.composite_lookup_into(
            frags.face.numpy(),
            frags.bary.numpy(),
            self.faces.numpy(),
            self.attrs.numpy(),
            outside.contiguous().numpy(),
            uv.numpy(),
            weight.numpy(),
            colour.numpy(),
        )
        photo = sample_texture(self.photo, uv).contiguous()
        frames = torch.empty(n, s, s, 3)
        kernels.composite_blend_into(photo.numpy(), weight.numpy(), colour.numpy(), frames.numpy())
        return frames

    @torch.no_grad()
    def face(self, params: FaceParams) -> Drawn:
        """The textured, Lambert-shaded face (eyes and mouth interior included) on black: [N, S, S, 3]."""
        vertices = self.mesh.vertices(params)
        screen = self._tensor(self.camera.project(vertices))
        frags = rasterize(screen, self.faces, self.size, self.size)
        normals = _vertex_normals(self._tensor(vertices), self.faces)
        light = torch.tensor(LIGHT, device=self.device)
        shade = AMBIENT + (1 - AMBIENT) * (normals @ (light / light.norm())).abs()[..., None]  # [N, V, 1]
        attrs = torch.cat([self.attrs.expand(len(screen), -1, -1), shade], -1)
        inside = interpolate(attrs, frags, self.faces)
        photo = sample_texture(self.photo, inside[..., UV])
        weight = inside[..., PHOTO]
        frames = (weight * photo + (1 - weight) * inside[..., COLOR]) * inside[..., SHADE]
        return Drawn(frames.clamp(0, 1) * frags.mask[..., None], frags)

    @torch.no_grad()
    def attention(self, params: FaceParams) -> Tensor:
        """[N, S, S] eye attention: each eye's region holds its closure (0 open ... 1 closed)."""
        points, faces, which_eye = self._eye_regions
        r, t = self.mesh.model.head_transform(params)
        screen = self.camera.project(np.einsum("nij,vj->nvi", r, points) + t[:, None])
        closure = self.mesh.model.eye_closure(params)  # [N, 2]
        values = self._tensor(closure[:, which_eye][..., None])
        face_index = torch.as_tensor(faces, device=self.device)
        frags = rasterize(self._tensor(screen), face_index, self.size, self.size)
        return interpolate(values, frags, face_index)[..., 0]

    def _outside_motion(self, screen: Tensor, windows: Tensor | None) -> Tensor:
        """[N, S, S, 2] backward displacement in uv outside the face: the motion of the nearest
        part of the face boundary (a Gaussian-weighted average along it), fading with distance,
        and across a window's outer band. screen: [N, V, 3] in whole-frame pixels."""
        now = screen[:, self.oval, :2] / self.size  # [N, B, 2] where the boundary is
        motion = self.uv[self.oval] - now  # where its pixels come from, relative to now
        grid = self.grid[None]  # [1 | N, G*G, 2] in uv
        if windows is not None:
            grid = windows[:, None, :2] + self.grid * windows[:, None, 2:]
        dx = grid[:, :, None, 0] - now[:, None, :, 0]  # [N, G*G, B]
        dy = grid[:, :, None, 1] - now[:, None, :, 1]
        d2 = dx * dx + dy * dy
        nearest = d2.min(-1, keepdim=True).values
        k = torch.exp(-0.5 * (d2 - nearest) / WARP_BLEND**2)  # shifted by the nearest: no underflow
        fade = torch.exp(-0.5 * nearest / WARP_REACH**2)
        if windows is not None:
            fade = fade * self._window_still
        field = fade * (k @ motion) / k.sum(-1, keepdim=True)  # [N, G*G, 2]
        return self._upsampled(field.view(-1, WARP_GRID, WARP_GRID, 2))

    def _upsampled(self, field: Tensor) -> Tensor:
        """[N, G, G, 2] -> [N, S, S, 2]: bilinear resizing as two matrix products, along x then along
        y: [N, G (y), G (x), 2] -> [N, S (x), G (y), 2] -> [N, S (y), S (x), 2]."""
        g, s = WARP_GRID, self.size
        along_x = self._upsample @ field.transpose(1, 2).reshape(-1, g, g * 2)
        along_y = self._upsample @ along_x.view(-1, s, g, 2).transpose(1, 2).reshape(-1, g, s * 2)
        return along_y.view(-1, s, s, 2)


def _eye_regions(mesh: RenderMesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model-space fans around each eye (rest shape, scaled up): points, faces, eye index a point."""
    rest = mesh.model.identity.vertices
    points: list[np.ndarray] = []
    faces: list[np.ndarray] = []
    which: list[int] = []
    for eye, side in enumerate(("left", "right")):  # the order of FaceModel.eye_closure
        ring = rest[topology.regions().eye_hole(side)]
        centre = ring.mean(0)
        n, offset = len(ring), sum(len(p) for p in points)
        points.append(np.concatenate([centre[None], centre + EYE_REGION_SCALE * (ring - centre)]))
        faces.append(offset + np.stack([np.zeros(n, int), 1 + np.arange(n), 1 + (np.arange(n) + 1) % n], 1))
        which += [eye] * (n + 1)
    return np.concatenate(points), np.concatenate(faces), np.array(which)


def _vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """[N, V, 3] unit normals: area-weighted sums of the adjacent faces' normals."""
    a, b, c = (vertices[:, faces[:, i]] for i in range(3))
    face_normals = torch.cross(b - a, c - a, dim=-1)
    normals = torch.zeros_like(vertices).index_add_(
        1, faces.reshape(-1), face_normals.repeat_interleave(3, dim=1)
    )
    return normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-9)
