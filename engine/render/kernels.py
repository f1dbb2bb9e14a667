"""The renderer's CPU kernels, compiled with numba: loops that replace frame-sized tensor code,
with the same arithmetic, so their results are the same.

Rasterizer (raster.py): `_rasterize_torch` is the reference; `rasterize_into` and
`interpolate_into` follow it step by step, so they draw the same faces and give bit-identical
barycentrics, depths and attributes:
- vertices snap to the 1/2**subpixel_bits grid (round half to even), edge functions are exact
  int64 with the top-left fill rule, and each triangle's rows are scanned over the exact span of
  pixel centres its three edge functions admit;
- each covered pixel centre's (depth bits, face index) key competes in a z-buffer, the nearest
  winning, with depth from the same float32 operations in the same order as the reference;
- each covered pixel's perspective-correct barycentrics are computed for its winning face only.
Work scales with the covered area, as in the reference, without its tensors of fragments.

Compositor (renderer.py): `composite_lookup_into` and `composite_blend_into` are its tensor
code's per-pixel operations before and after the texture lookup, in the same float32 order.

Paste-back (framing.py): `paste_into` blends face regions into frames only where the feathered
edge is partly transparent, and copies the opaque interior.

The kernels take numpy arrays, release the GIL (frames are drawn in worker threads) and are
cached on disk when the package's directory (or numba's cache directory) is writable.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

_EMPTY = np.iinfo(np.int64).max  # z-buffer key of a pixel that nothing covers
_TINY = np.float32(np.finfo(np.float32).tiny)  # 1 / depth is clamped to this, as in the reference
_F0, _HALF_PX, _ONE_F = np.float32(0), np.float32(0.5), np.float32(1)  # float32 constants


def _compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Compiled without the GIL; division as IEEE floats (inf, nan), as torch divides."""
    try:
        return njit(nogil=True, cache=True, error_model="numpy")(fn)
    except RuntimeError:  # numba found no writable cache directory: compile in each process
        return njit(nogil=True, error_model="numpy")(fn)


@_compile
def _row_span(a: int, e_row: int, half: int, bits: int, first: int, last: int) -> tuple[int, int]:
    """Narrow the columns [first, last] of a row to those where the edge function
    E = a * px + e_row is >= 0 at the pixel centres px = (j << bits) + half. The reference's
    ceiling and floor divisions; by the pixel's size as shifts (floor division by a power of 2)."""
    if a > 0:  # px >= ceil(-e_row / a), so j >= ceil((that - half) / one)
        first = max(first, -((half + e_row // a) >> bits))
    elif a < 0:  # px <= floor(e_row / -a)
        last = min(last, (e_row // -a - half) >> bits)
    elif e_row < 0:  # an edge along the row, with the row outside
        last = first - 1
    return first, last


@_compile
def _plane_at(plane: np.ndarray, dx: np.float32, dy: np.float32) -> tuple[np.float32, np.float32, np.float32]:
    """q = bary / z of a face's planes (corner 0, q there, dq/dx [3], dq/dy [3]) at dx, dy from its
    corner 0: _PerspectivePlanes.at's float32 operations, in its order."""
    q0 = (plane[2] + plane[3] * dx) + plane[6] * dy
    q1 = (_F0 + plane[4] * dx) + plane[7] * dy
    q2 = (_F0 + plane[5] * dx) + plane[8] * dy
    return q0, q1, q2


@_compile
def _draw_triangle(
    verts: np.ndarray,
    corner: np.ndarray,
    f: int,
    cull_backfaces: bool,
    subpixel_bits: int,
    guard_px: int,
    face_bits: int,
    plane: np.ndarray,
    zbuffer: np.ndarray,
    height: int,
    width: int,
    depth_f32: np.ndarray,
    depth_bits: np.ndarray,
) -> None:
    """Face f (its corners [3] index verts [V, 3]) into the z-buffer [H * W]; its planes into `plane`."""
    x0, y0, z0 = verts[corner[0], 0], verts[corner[0], 1], verts[corner[0], 2]
    x1, y1, z1 = verts[corner[1], 0], verts[corner[1], 1], verts[corner[1], 2]
    x2, y2, z2 = verts[corner[2], 0], verts[corner[2], 1], verts[corner[2], 2]
    # _PerspectivePlanes.of: screen-space barycentric slopes, then q = bary / z.
    e1x, e1y, e2x, e2y = x1 - x0, y1 - y0, x2 - x0, y2 - y0
    det = e1x * e2y - e1y * e2x
    dbx0, dbx1, dbx2 = (e1y - e2y) / det, e2y / det, -e1y / det
    dby0, dby1, dby2 = (e2x - e1x) / det, -e2x / det, e1x / det
    plane[0], plane[1], plane[2] = x0, y0, _ONE_F / z0
    plane[3], plane[4], plane[5] = dbx0 / z0, dbx1 / z1, dbx2 / z2
    plane[6], plane[7], plane[8] = dby0 / z0, dby1 / z1, dby2 / z2
    solvable = (
        np.isfinite(dbx0) and np.isfinite(dbx1) and np.isfinite(dbx2)
        and np.isfinite(dby0) and np.isfinite(dby1) and np.isfinite(dby2)
    )
    in_guard = (
        abs(x0) <= guard_px and abs(y0) <= guard_px and abs(x1) <= guard_px
        and abs(y1) <= guard_px and abs(x2) <= guard_px and abs(y2) <= guard_px
    )
    if not (z0 > 0 and z1 > 0 and z2 > 0 and in_guard and solvable):
        return
    one = 1 << subpixel_bits
    half = one // 2
    fx0, fx1, fx2 = int(np.rint(x0 * one)), int(np.rint(x1 * one)), int(np.rint(x2 * one))
    fy0, fy1, fy2 = int(np.rint(y0 * one)), int(np.rint(y1 * one)), int(np.rint(y2 * one))
    # Edge k runs from corner k+1 to corner k+2; E_k(p) = ea * px + eb * py + ec, exact in int64.
    ea0, eb0 = fy2 - fy1, fx1 - fx2
    ea1, eb1 = fy0 - fy2, fx2 - fx0
    ea2, eb2 = fy1 - fy0, fx0 - fx1
    ec0 = -(ea0 * fx1 + eb0 * fy1)
    ec1 = -(ea1 * fx2 + eb1 * fy2)
    ec2 = -(ea2 * fx0 + eb2 * fy0)
    area = ea0 * fx0 + eb0 * fy0 + ec0
    if area < 0 and not cull_backfaces:  # clockwise: flip, so that every E_k >= 0 inside
        ea0, eb0, ec0, ea1, eb1, ec1 = -ea0, -eb0, -ec0, -ea1, -eb1, -ec1
        ea2, eb2, ec2 = -ea2, -eb2, -ec2
    elif area <= 0:
        return
    # Top-left fill rule: a pixel centre on an edge is drawn only by a top or left edge's triangle.
    if not (ea0 > 0 or (ea0 == 0 and eb0 > 0)):
        ec0 -= 1
    if not (ea1 > 0 or (ea1 == 0 and eb1 > 0)):
        ec1 -= 1
    if not (ea2 > 0 or (ea2 == 0 and eb2 > 0)):
        ec2 -= 1

    first_row = max(-((half - min(fy0, fy1, fy2)) >> subpixel_bits), 0)  # ceil((y - half) / one)
    last_row = min((max(fy0, fy1, fy2) - half) >> subpixel_bits, height - 1)
    slope = (plane[3] + plane[4]) + plane[5]  # d(1 / depth) / dx along a row
    dx = _HALF_PX - plane[0]  # column 0's centre, relative to corner 0
    for row in range(first_row, last_row + 1):
        centre_y = (row << subpixel_bits) + half
        first, last = _row_span(ea0, eb0 * centre_y + ec0, half, subpixel_bits, 0, width - 1)
        first, last = _row_span(ea1, eb1 * centre_y + ec1, half, subpixel_bits, first, last)
        first, last = _row_span(ea2, eb2 * centre_y + ec2, half, subpixel_bits, first, last)
        if first > last:
            continue
        # 1 / depth at the row's column 0, then stepped along the row, as the reference does.
        q0, q1, q2 = _plane_at(plane, dx, (np.float32(row) + _HALF_PX) - plane[1])
        row_inv_depth = (q0 + q1) + q2
        pixel = row * width
        for col in range(first, last + 1):
            inv_depth = row_inv_depth + slope * np.float32(col)
            if inv_depth < _TINY:
                inv_depth = _TINY
            depth_f32[0] = _ONE_F / inv_depth
            key = (np.int64(depth_bits[0]) << face_bits) | f  # positive floats order like their bits
            if key < zbuffer[pixel + col]:
                zbuffer[pixel + col] = key


@_compile
def _resolve(
    zbuffer: np.ndarray,
    planes: np.ndarray,
    face_bits: int,
    face: np.ndarray,
    bary: np.ndarray,
    depth: np.ndarray,
) -> None:
    """One image's z-buffer [H * W] -> its face [H, W], bary [H, W, 3] and depth [H, W]."""
    height, width = face.shape
    face_mask = (1 << face_bits) - 1
    for i in range(height):
        y = np.float32(i) + _HALF_PX
        for j in range(width):
            key = zbuffer[i * width + j]
            if key == _EMPTY:
                face[i, j] = -1
                bary[i, j, 0] = bary[i, j, 1] = bary[i, j, 2] = _F0
                depth[i, j] = np.inf
                continue
            f = key & face_mask
            plane = planes[f]
            q0, q1, q2 = _plane_at(plane, (np.float32(j) + _HALF_PX) - plane[0], y - plane[1])
            inv_depth = (q0 + q1) + q2
            face[i, j] = f
            bary[i, j, 0], bary[i, j, 1], bary[i, j, 2] = q0 / inv_depth, q1 / inv_depth, q2 / inv_depth
            depth[i, j] = _ONE_F / inv_depth


@_compile
def rasterize_into(
    verts: np.ndarray,
    faces: np.ndarray,
    cull_backfaces: bool,
    subpixel_bits: int,
    guard_px: int,
    face_bits: int,
    face: np.ndarray,
    bary: np.ndarray,
    depth: np.ndarray,
) -> bool:
    """verts [B, V, 3] float32 (x, y pixels, camera depth), faces [F, 3] int64 -> fills face [B, H, W]
    int64 (-1 where empty), bary [B, H, W, 3] float32 (0 where empty), depth [B, H, W] float32
    (+inf where empty). False, with nothing drawn, when a face indexes a vertex that is not there."""
    n_batch, height, width = face.shape
    n_faces = faces.shape[0]
    for f in range(n_faces):
        for k in range(3):
            if faces[f, k] < 0 or faces[f, k] >= verts.shape[1]:
                return False
    zbuffer = np.empty(height * width, np.int64)
    planes = np.empty((n_faces, 9), np.float32)  # per face: corner 0, q there, dq/dx [3], dq/dy [3]
    depth_f32 = np.empty(1, np.float32)
    depth_bits = depth_f32.view(np.int32)  # the float's bit pattern, which the keys hold
    for b in range(n_batch):
        zbuffer[:] = _EMPTY
        for f in range(n_faces):
            _draw_triangle(
                verts[b], faces[f], f, cull_backfaces, subpixel_bits, guard_px, face_bits, planes[f],
                zbuffer, height, width, depth_f32, depth_bits,
            )
        _resolve(zbuffer, planes, face_bits, face[b], bary[b], depth[b])
    return True


@_compile
def interpolate_into(
    attrs: np.ndarray, face: np.ndarray, bary: np.ndarray, faces: np.ndarray, out: np.ndarray
) -> bool:
    """attrs [1 | B, V, C] float32 (one table for the whole batch, or one per item), face [B, H, W],
    bary [B, H, W, 3], faces [F, 3] -> out [B, H, W, C]: the corners' attributes blended, 0 where
    empty. False, with `out` unfilled, when a face or a vertex index is out of range."""
    n_batch, height, width = face.shape
    channels = attrs.shape[2]
    if faces.size and (faces.min() < 0 or faces.max() >= attrs.shape[1]):
        return False
    for b in range(n_batch):
        t = 0 if attrs.shape[0] == 1 else b
        for i in range(height):
            for j in range(width):
                f = face[b, i, j]
                if f < 0:
                    for c in range(channels):
                        out[b, i, j, c] = _F0
                    continue
                if f >= faces.shape[0]:
                    return False
                w0, w1, w2 = bary[b, i, j, 0], bary[b, i, j, 1], bary[b, i, j, 2]
                v0, v1, v2 = faces[f, 0], faces[f, 1], faces[f, 2]
                for c in range(channels):  # the reference's order: ((0 + w0 a0) + w1 a1) + w2 a2
                    a0, a1, a2 = attrs[t, v0, c], attrs[t, v1, c], attrs[t, v2, c]
                    out[b, i, j, c] = ((_F0 + w0 * a0) + w1 * a1) + w2 * a2
    return True


@_compile
def paste_into(frames: np.ndarray, regions: np.ndarray, alpha: np.ndarray, boxes: np.ndarray) -> None:
    """Regions [N, B, B, 3] uint8 over frames [N, S, S, 3] uint8, their top-left corners at boxes
    [N, 2] (x, y; parts outside the frame dropped), with opacity alpha [B, B] float32: each value
    under + alpha * (region - under), rounded, as float32 arithmetic gives it."""
    side, size = regions.shape[1], frames.shape[1]
    for n in range(frames.shape[0]):
        x, y = boxes[n, 0], boxes[n, 1]
        for i in range(max(0, -y), min(side, size - y)):
            out, region, opacity = frames[n, y + i], regions[n, i], alpha[i]  # rows: [S, 3], [B, 3], [B]
            for j in range(max(0, -x), min(side, size - x)):
                a = opacity[j]
                if a == _ONE_F:
                    out[x + j, 0], out[x + j, 1], out[x + j, 2] = region[j, 0], region[j, 1], region[j, 2]
                elif a != _F0:
                    for c in range(3):
                        under = np.float32(out[x + j, c])
                        out[x + j, c] = np.uint8(under + a * (np.float32(region[j, c]) - under) + _HALF_PX)


@_compile
def composite_lookup_into(
    face: np.ndarray,
    bary: np.ndarray,
    faces: np.ndarray,
    attrs: np.ndarray,
    outside: np.ndarray,
    uv: np.ndarray,
    weight: np.ndarray,
    colour: np.ndarray,
) -> None:
    """The compositor's per-pixel lookups (renderer.py's `composite`, with its float32 operations):
    face [N, S, S], bary [N, S, S, 3], faces [F, 3], attrs [V, 7] per vertex (uv in the photo,
    the photo's weight, own colour [3], inner), outside [N, S, S, 2] where pixels off the face
    come from -> uv [N, S, S, 2] where each pixel samples the photo (the face's uv blended into
    `outside` by inner), weight [N, S, S] of the photo (1 off the face) and colour [N, S, S, 3]
    (0 off the face). face and bary come from rasterizing `faces`."""
    corner = np.empty(7, np.float32)
    for n in range(face.shape[0]):
        for i in range(face.shape[1]):
            for j in range(face.shape[2]):
                f = face[n, i, j]
                if f < 0:
                    for c in range(7):
                        corner[c] = _F0
                else:
                    w0, w1, w2 = bary[n, i, j, 0], bary[n, i, j, 1], bary[n, i, j, 2]
                    k0, k1, k2 = faces[f, 0], faces[f, 1], faces[f, 2]
                    for c in range(7):  # as interpolate_into
                        corner[c] = ((_F0 + w0 * attrs[k0, c]) + w1 * attrs[k1, c]) + w2 * attrs[k2, c]
                inner = corner[6]
                uv[n, i, j, 0] = inner * corner[0] + (_ONE_F - inner) * outside[n, i, j, 0]
                uv[n, i, j, 1] = inner * corner[1] + (_ONE_F - inner) * outside[n, i, j, 1]
                weight[n, i, j] = corner[2] if f >= 0 else _ONE_F
                colour[n, i, j, 0], colour[n, i, j, 1], colour[n, i, j, 2] = corner[3], corner[4], corner[5]


@_compile
def composite_blend_into(
    photo: np.ndarray, weight: np.ndarray, colour: np.ndarray, frames: np.ndarray
) -> None:
    """photo [N, S, S, 3] sampled, weight [N, S, S], colour [N, S, S, 3] -> frames [N, S, S, 3]:
    weight * photo + (1 - weight) * colour, clamped to 0..1."""
    for n in range(frames.shape[0]):
        for i in range(frames.shape[1]):
            for j in range(frames.shape[2]):
                w = weight[n, i, j]
                for c in range(3):
                    value = w * photo[n, i, j, c] + (_ONE_F - w) * colour[n, i, j, c]
                    frames[n, i, j, c] = min(max(value, _F0), _ONE_F)
