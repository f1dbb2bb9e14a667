"""The triangle rasterizer: compiled loops on CPU, a vectorised PyTorch reference (CUDA, gradients).

Screen space: x right and y down, in pixels; pixel (i, j) has its centre at (j + 0.5, i + 0.5).
z is a vertex's camera-space depth (> 0, larger is farther).

How the tensor code works, in tensor ops only (no Python loop over triangles or pixels):
1. Vertices snap to a 1/256-pixel grid and edge functions are evaluated exactly in int64 with the
   top-left fill rule, so triangles that share an edge cover each pixel centre exactly once.
2. Every triangle's rows are enumerated, each row's exact span of covered pixel centres is solved
   from the three edge functions, and the spans are enumerated into fragments. Work and memory
   scale with the covered area (overdraw included), not with bounding boxes.
3. One scatter_reduce('amin') over keys packing (depth bits, face index) resolves visibility.
4. Perspective-correct barycentrics are computed for each covered pixel's winning face only.

On CPU, `rasterize` and `interpolate` run kernels.py's numba kernels: the same rules and the
same float32 operations in loops (each triangle's rows scanned, one z-buffer test per covered
pixel centre), so the result is bit-identical to this module's tensor code at a fraction of its
cost. The tensor code remains the reference, and runs where the kernels do not apply: on CUDA,
for float64 inputs, and where a gradient is needed. With nvdiffrast installed and the inputs on
CUDA, `rasterize` hands the work to it.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.functional import grid_sample

SUBPIXEL_BITS = 8  # vertices snap to 1/256 px, as in GPU rasterizers
GUARD_PX = 1 << 20  # triangles reaching farther than this from the origin are skipped: int64 stays exact
_ONE = 1 << SUBPIXEL_BITS  # one pixel in fixed point
_HALF = _ONE // 2  # pixel centres sit half a pixel in
_FACE_BITS = 32  # low bits of a z-buffer key hold the face index, high bits the depth
_EMPTY = torch.iinfo(torch.int64).max  # z-buffer key of a pixel that nothing covers


@dataclass
class Fragments:
    """What each pixel sees: the nearest face, and where on it the pixel centre lies."""

    face: Tensor  # [B, H, W] long: index into `faces`, -1 where empty
    bary: Tensor  # [B, H, W, 3] perspective-correct barycentrics of the face's corners, 0 where empty
    depth: Tensor  # [B, H, W] camera-space depth, +inf where empty

    @property
    def mask(self) -> Tensor:
        """[B, H, W] bool: True where a face covers the pixel."""
        return self.face >= 0


def rasterize(
    verts: Tensor, faces: Tensor, height: int, width: int, cull_backfaces: bool = False
) -> Fragments:
    """Rasterize a batch of meshes that share one topology; the device follows `verts`.

    verts: [B, V, 3] screen-space x, y (pixels) and camera depth z. faces: [F, 3] vertex indices.
    Triangles with a vertex at z <= 0 are skipped. Both windings are drawn unless `cull_backfaces`,
    which keeps only the front faces: corners running counter-clockwise as seen in the image.
    """
    if verts.dim() != 3 or verts.shape[-1] != 3:
        raise ValueError(f"verts must be [B, V, 3], got {list(verts.shape)}")
    faces = faces.to(device=verts.device, dtype=torch.long)
    if verts.is_cuda and _nvdiffrast_available():
        return _rasterize_nvdiffrast(verts, faces, height, width, cull_backfaces)
    if _compiled_fits(verts):
        frags = _rasterize_compiled(verts, faces, height, width, cull_backfaces)
        if frags is not None:
            return frags
    return _rasterize_torch(verts, faces, height, width, cull_backfaces)


def interpolate(attrs: Tensor, frags: Fragments, faces: Tensor) -> Tensor:
    """Per-vertex attributes at each pixel: attrs [B, V, C] or [V, C] -> [B, H, W, C], 0 where empty."""
    n_batch, height, width = frags.face.shape
    if _compiled_fits(attrs, frags.bary):
        out = _interpolate_compiled(attrs, frags, faces)
        if out is not None:
            return out
    channels = attrs.shape[-1]
    pixel = frags.mask.flatten().nonzero().squeeze(1)  # [P] covered only: faces rarely fill images
    corners = faces.to(attrs.device)[_gather(frags.face.flatten(), pixel)]  # [P, 3]
    if attrs.dim() == 3:  # one table for the whole batch: offset each pixel's corners by its item
        corners = corners + (pixel // (height * width))[:, None] * attrs.shape[1]
    values = attrs.reshape(-1, channels).index_select(0, corners.flatten()).view(-1, 3, channels)
    bary = frags.bary.reshape(-1, 3).index_select(0, pixel).to(attrs.dtype)
    blended = torch.bmm(bary[:, None, :], values).squeeze(1)  # [P, C]
    out = attrs.new_zeros(n_batch * height * width, channels).index_copy_(0, pixel, blended)
    return out.view(n_batch, height, width, channels)


def sample_texture(texture: Tensor, uv: Tensor) -> Tensor:
    """Bilinear texture lookup: texture [B, C, Ht, Wt] or [C, Ht, Wt], uv [B, H, W, 2] -> [B, H, W, C].

    uv is in [0, 1] with (0, 0) the top-left corner of the texture image (not a texel centre);
    outside that range the border texels repeat.
    """
    if texture.dim() == 3:
        texture = texture.expand(uv.shape[0], -1, -1, -1)
    grid = uv.to(texture.dtype) * 2 - 1  # align_corners=False: -1 and 1 are the image's outer edges
    sampled = grid_sample(texture, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled.permute(0, 2, 3, 1)


# ---- the compiled CPU rasterizer (kernels.py) -----------------------------------------------


def _compiled_fits(*tensors: Tensor) -> bool:
    """True when the compiled kernels can take these tensors: float32 on CPU, no gradient needed."""
    grad = torch.is_grad_enabled()
    return all(
        t.device.type == "cpu" and t.dtype == torch.float32 and not (grad and t.requires_grad)
        for t in tensors
    )


def _rasterize_compiled(
    verts: Tensor, faces: Tensor, height: int, width: int, cull_backfaces: bool
) -> Fragments | None:
    """`_rasterize_torch`'s result from the compiled kernel; None when a face indexes a vertex that
    is not there (the reference then reports it)."""
    from engine.render import kernels  # here: numba takes half a second to import

    n_batch = verts.shape[0]
    face = torch.empty(n_batch, height, width, dtype=torch.long)
    bary = torch.empty(n_batch, height, width, 3)
    depth = torch.empty(n_batch, height, width)
    drawn = kernels.rasterize_into(
        verts.detach().contiguous().numpy(),
        faces.contiguous().numpy(),
        cull_backfaces,
        SUBPIXEL_BITS,
        GUARD_PX,
        _FACE_BITS,
        face.numpy(),
        bary.numpy(),
        depth.numpy(),
    )
    return Fragments(face=face, bary=bary, depth=depth) if drawn else None


def _interpolate_compiled(attrs: Tensor, frags: Fragments, faces: Tensor) -> Tensor | None:
    """`interpolate` by the compiled kernel; None when the inputs do not fit together (the tensor
    code then reports it)."""
    from engine.render import kernels

    n_batch, height, width = frags.face.shape
    table = attrs if attrs.dim() == 3 else attrs[None]
    if table.shape[0] != n_batch and attrs.dim() == 3:
        return None
    out = torch.empty(n_batch, height, width, attrs.shape[-1])
    fits = kernels.interpolate_into(
        table.detach().contiguous().numpy(),
        frags.face.contiguous().numpy(),
        frags.bary.detach().contiguous().numpy(),
        faces.to(dtype=torch.long, device="cpu").contiguous().numpy(),
        out.numpy(),
    )
    return out if fits else None


# ---- the PyTorch rasterizer --------------------------------------------------------------------


@dataclass
class _PerspectivePlanes:
    """Per triangle, q_k = bary_k / z_k is affine in screen space; sum(q) is 1 / depth, and
    q / sum(q) are the perspective-correct barycentrics. Corner-major [3, N] for N triangles."""

    origin_x: Tensor  # [N] corner 0, where q = (1 / z0, 0, 0)
    origin_y: Tensor  # [N]
    q0: Tensor  # [3, N] q at corner 0
    dq_dx: Tensor  # [3, N]
    dq_dy: Tensor  # [3, N]
    solvable: Tensor  # [N] bool: finite slopes (the triangle has an area)

    @classmethod
    def of(cls, x: Tensor, y: Tensor, z: Tensor) -> _PerspectivePlanes:
        """Corner coordinates x, y, z [3, N] -> planes."""
        e1x, e1y, e2x, e2y = x[1] - x[0], y[1] - y[0], x[2] - x[0], y[2] - y[0]
        det = e1x * e2y - e1y * e2x
        # Screen-space barycentrics b1, b2 of corners 1, 2 solve p - corner0 = b1 e1 + b2 e2.
        db_dx = torch.stack([e1y - e2y, e2y, -e1y]) / det
        db_dy = torch.stack([e2x - e1x, -e2x, e1x]) / det
        zero = torch.zeros_like(det)
        return cls(
            origin_x=x[0],
            origin_y=y[0],
            q0=torch.stack([z[0].reciprocal(), zero, zero]),
            dq_dx=db_dx / z,
            dq_dy=db_dy / z,
            solvable=(db_dx.isfinite() & db_dy.isfinite()).all(0),
        )

    def at(self, tri: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """q [3, P] of triangles `tri` [P] at points x, y [P]."""
        dx, dy = x - _gather(self.origin_x, tri), y - _gather(self.origin_y, tri)
        return _gather(self.q0, tri) + _gather(self.dq_dx, tri) * dx + _gather(self.dq_dy, tri) * dy


def _rasterize_torch(
    verts: Tensor, faces: Tensor, height: int, width: int, cull_backfaces: bool
) -> Fragments:
    n_batch, n_faces = verts.shape[0], faces.shape[0]
    # Corner-major [3, N] coordinates of the N = B * F triangles: reductions over corners stay fast.
    x, y, z = verts[:, faces].permute(3, 2, 0, 1).reshape(3, 3, n_batch * n_faces)
    planes = _PerspectivePlanes.of(x, y, z)
    with torch.no_grad():
        face = _visible_faces(x, y, z, planes, n_batch, n_faces, height, width, cull_backfaces)
    pixel = (face >= 0).nonzero().squeeze(1)  # [P] flat index b * H * W + i * W + j
    tri = pixel // (height * width) * n_faces + _gather(face, pixel)
    q = planes.at(tri, pixel % width + 0.5, pixel // width % height + 0.5)  # [3, P]
    inv_depth = q.sum(0)
    n_pixels = n_batch * height * width
    bary = x.new_zeros(n_pixels, 3).index_copy_(0, pixel, (q / inv_depth).T)
    depth = x.new_full((n_pixels,), torch.inf).index_copy_(0, pixel, inv_depth.reciprocal())
    return Fragments(
        face=face.view(n_batch, height, width),
        bary=bary.view(n_batch, height, width, 3),
        depth=depth.view(n_batch, height, width),
    )


def _visible_faces(
    x: Tensor,
    y: Tensor,
    z: Tensor,
    planes: _PerspectivePlanes,
    n_batch: int,
    n_faces: int,
    height: int,
    width: int,
    cull_backfaces: bool,
) -> Tensor:
    """Corners x, y, z [3, N] of N = B * F triangles -> [B * H * W] nearest face, -1 where none."""
    keep = (_min3(z) > 0) & (_max3(torch.maximum(x.abs(), y.abs())) <= GUARD_PX) & planes.solvable
    fx = torch.round(torch.where(keep, x, 0) * _ONE).long()  # [3, N] fixed point; NaN-free
    fy = torch.round(torch.where(keep, y, 0) * _ONE).long()

    # Edge k runs from corner k+1 to corner k+2: E_k(p) = ea * px + eb * py + ec is twice the signed
    # area of (start, end, p), exact in int64. E_0 at corner 0 is > 0 for counter-clockwise corners.
    start_x, start_y, end_x, end_y = fx.roll(-1, 0), fy.roll(-1, 0), fx.roll(-2, 0), fy.roll(-2, 0)
    ea, eb = end_y - start_y, start_x - end_x  # [3, N]
    ec = -(ea * start_x + eb * start_y)
    area = ea[0] * fx[0] + eb[0] * fy[0] + ec[0]
    keep &= area > 0 if cull_backfaces else area != 0
    sign = area.sign()
    ea, eb, ec = ea * sign, eb * sign, ec * sign  # now every E_k >= 0 inside
    # Top-left fill rule: a pixel centre exactly on an edge belongs to the triangle only if that is
    # a top or left edge, so it is drawn by exactly one of the two triangles sharing the edge.
    top_left = (ea > 0) | ((ea == 0) & (eb > 0))
    ec = ec + top_left.long() - 1  # inside <=> every E_k >= 0

    # Rows whose pixel centres lie within the triangle's vertical extent, clipped to the image.
    first_row = _ceil_div(_min3(fy) - _HALF, _ONE).clamp_min(0)
    last_row = ((_max3(fy) - _HALF) // _ONE).clamp_max(height - 1)
    n_rows = torch.where(keep, last_row - first_row + 1, 0).clamp_min(0)
    row_tri, row_y = _enumerate(n_rows, first_row)  # [R]

    # On a row, E_k = a * px + e_row; solve E_k >= 0 for pixel-centre columns px = j * ONE + HALF.
    a, b, c = _gather(torch.stack([ea, eb, ec]), row_tri)  # [3 edges, R] each
    e_row = b * ((row_y << SUBPIXEL_BITS) + _HALF) + c
    step = a.abs().clamp_min(1)
    from_col = _ceil_div(_ceil_div(-e_row, step) - _HALF, _ONE)  # where a > 0: j >= from_col
    to_col = (e_row // step - _HALF) // _ONE  # where a < 0: j <= to_col
    first_col = _max3(torch.where(a > 0, from_col, 0))
    last_col = _min3(torch.where(a < 0, to_col, width - 1))
    row_blocked = ((a == 0) & (e_row < 0)).any(0)  # an edge along the row, with the row outside
    n_cols = torch.where(row_blocked, 0, last_col - first_col + 1).clamp_min(0)
    frag_row, frag_col = _enumerate(n_cols, first_col)  # [M] fragments

    # 1 / depth is affine in screen space: start it at each row's column 0 and step along the row.
    row_inv_depth = planes.at(row_tri, torch.full_like(row_y, 0.5, dtype=x.dtype), row_y + 0.5)
    row_slope = _gather(planes.dq_dx.sum(0), row_tri)
    inv_depth = _gather(row_inv_depth.sum(0), frag_row) + _gather(row_slope, frag_row) * frag_col
    # Positive floats order like their bit patterns, so (depth bits, face) keys order by depth.
    depth = inv_depth.clamp_min(torch.finfo(torch.float32).tiny).reciprocal().float()
    face = _gather(row_tri % n_faces, frag_row)
    key = (depth.view(torch.int32).long() << _FACE_BITS) | face
    row_pixel = row_tri // n_faces * (height * width) + row_y * width
    zbuffer = torch.full((n_batch * height * width,), _EMPTY, dtype=torch.long, device=x.device)
    zbuffer.scatter_reduce_(0, _gather(row_pixel, frag_row) + frag_col, key, "amin")
    return torch.where(zbuffer != _EMPTY, zbuffer & ((1 << _FACE_BITS) - 1), -1)


def _enumerate(counts: Tensor, first: Tensor) -> tuple[Tensor, Tensor]:
    """Owner n has counts[n] items numbered first[n], first[n] + 1, ...: counts, first [N] ->
    ([M] owner of each item, [M] its number), M = counts.sum()."""
    owner = torch.repeat_interleave(counts)
    shift = first - (counts.cumsum(0) - counts)
    return owner, torch.arange(owner.numel(), device=counts.device) + _gather(shift, owner)


def _gather(table: Tensor, index: Tensor) -> Tensor:
    """table[..., index]; index_select is several times faster than advanced indexing on CPU."""
    return table.index_select(-1, index)


def _min3(t: Tensor) -> Tensor:
    """Minimum over the leading dimension of size 3 (amin is slow on small integer dims)."""
    return torch.minimum(torch.minimum(t[0], t[1]), t[2])


def _max3(t: Tensor) -> Tensor:
    return torch.maximum(torch.maximum(t[0], t[1]), t[2])


def _ceil_div(a: Tensor, b: Tensor | int) -> Tensor:
    return -((-a) // b)


# ---- nvdiffrast (optional; CUDA only; not installed in CI, so untested there) ------------------


@functools.cache
def _nvdiffrast_available() -> bool:
    """True when nvdiffrast's PyTorch ops import (it is not on PyPI; users install it themselves)."""
    try:
        import nvdiffrast.torch  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _nvdiffrast_context(device: torch.device):  # -> nvdiffrast.torch.RasterizeCudaContext
    import nvdiffrast.torch as dr

    return dr.RasterizeCudaContext(device=device)


def _rasterize_nvdiffrast(
    verts: Tensor, faces: Tensor, height: int, width: int, cull_backfaces: bool
) -> Fragments:
    """The same contract as `_rasterize_torch`, drawn by nvdiffrast's CUDA rasterizer."""
    import nvdiffrast.torch as dr

    n_batch, n_faces = verts.shape[0], faces.shape[0]
    corners = verts[:, faces]  # [B, F, 3, 3]: unshared, so each batch item can drop its own faces
    x, y, z = corners.unbind(-1)  # [B, F, 3]
    keep = (z > 0).all(-1)
    if cull_backfaces:
        area = (x[..., 0] - x[..., 1]) * (y[..., 2] - y[..., 1]) - (y[..., 0] - y[..., 1]) * (
            x[..., 2] - x[..., 1]
        )
        keep &= area > 0  # counter-clockwise in the image, as in `_visible_faces`
    # Clip space with w = z, so nvdiffrast interpolates perspective-correctly. Its pixel row 0 is
    # clip y = -1, so screen y maps over without a flip. The depth range just encloses the mesh.
    near = z.masked_fill(~keep[..., None], torch.inf).amin() / 2
    far = z.masked_fill(~keep[..., None], 0).amax() * 2
    clip = torch.stack(
        [
            (2 * x / width - 1) * z,
            (2 * y / height - 1) * z,
            (z * (far + near) - 2 * far * near) / (far - near),
            z,
        ],
        -1,
    )
    beyond_right = clip.new_tensor([2.0, 0.0, 0.0, 1.0])  # a dropped face lands off screen
    clip = torch.where(keep[..., None, None], clip, beyond_right)
    tri = torch.arange(3 * n_faces, dtype=torch.int32, device=verts.device).view(n_faces, 3)
    pos = clip.reshape(n_batch, 3 * n_faces, 4).float().contiguous()
    rast, _ = dr.rasterize(_nvdiffrast_context(verts.device), pos, tri, (height, width))
    u, v, _, face_id = rast.unbind(-1)  # [B, H, W]
    face = face_id.long() - 1  # nvdiffrast counts faces from 1; 0 is empty
    covered = (face >= 0)[..., None]
    bary = torch.stack([u, v, 1 - u - v], -1) * covered  # nvdiffrast: a = u a0 + v a1 + (1-u-v) a2
    index = face.clamp_min(0).view(n_batch, -1, 1).expand(-1, -1, 3)
    corner_z = z.gather(1, index).view(n_batch, height, width, 3)
    depth = torch.where(covered[..., 0], (bary * corner_z).sum(-1), torch.inf)
    return Fragments(face=face, bary=bary.to(verts.dtype), depth=depth.to(verts.dtype))
