"""Analytic checks of the rasterizer: coverage, fill rule, visibility, interpolation, textures; and
the compiled CPU rasterizer (what `rasterize` runs on CPU) against the PyTorch reference."""
import math

import pytest
import torch

from engine.pipeline.idle import IdleMotion
from engine.render import raster
from engine.render.raster import Fragments, _rasterize_torch, interpolate, rasterize, sample_texture
from engine.render.renderer import AvatarRenderer

H, W = 48, 64


def pixel_centres(height: int = H, width: int = W) -> tuple[torch.Tensor, torch.Tensor]:
    """x, y [height, width] of the pixel centres, float64."""
    i, j = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return j.double() + 0.5, i.double() + 0.5


def screen(xy: list[tuple[float, float]], z: float | list[float] = 1.0) -> torch.Tensor:
    """[1, V, 3] screen-space vertices from (x, y) pairs and one depth or one per vertex."""
    zs = [z] * len(xy) if isinstance(z, float) else z
    return torch.tensor([[(x, y, d) for (x, y), d in zip(xy, zs, strict=True)]], dtype=torch.float32)


def coverage_count(verts: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, H, W] how many triangles claim each pixel, each triangle rasterized on its own."""
    return sum(rasterize(verts, faces[k : k + 1], height, width).mask.long() for k in range(len(faces)))


def inside_triangle(x, y, corners) -> tuple[torch.Tensor, torch.Tensor]:
    """(strictly inside, within 1e-6 px of an edge) for points x, y against a float64 triangle."""
    signed = []
    for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1], strict=True):
        length = math.hypot(bx - ax, by - ay)
        signed.append(((x - ax) * (by - ay) - (y - ay) * (bx - ax)) / length)
    signed = torch.stack(signed)
    orientation = 1 if signed.sum() > 0 else -1
    signed = signed * orientation
    return (signed > 1e-6).all(0), (signed.abs() <= 1e-6).any(0)


def test_triangle_covers_exactly_the_pixel_centres_inside_it():
    corners = [(10.2, 5.3), (50.7, 12.1), (20.4, 40.9)]
    frags = rasterize(screen(corners), torch.tensor([[0, 1, 2]]), H, W)
    inside, on_edge = inside_triangle(*pixel_centres(), corners)
    assert not on_edge.any()
    assert torch.equal(frags.mask[0], inside)
    (ax, ay), (bx, by), (cx, cy) = corners
    area = abs((bx - ax) * (cy - ay) - (by - ay) * (cx - ax)) / 2
    perimeter = sum(math.dist(p, q) for p, q in zip(corners, corners[1:] + corners[:1], strict=True))
    assert abs(frags.mask.sum().item() - area) < perimeter / 2


def test_square_split_in_two_covers_each_pixel_once():
    # The diagonal passes exactly through pixel centres: only the fill rule decides who draws them.
    verts = screen([(8.0, 8.0), (40.0, 8.0), (40.0, 40.0), (8.0, 40.0)])
    square = torch.zeros(H, W, dtype=torch.long)
    square[8:40, 8:40] = 1
    for faces in ([[0, 1, 2], [0, 2, 3]], [[0, 2, 1], [0, 3, 2]], [[0, 1, 3], [1, 2, 3]]):
        count = coverage_count(verts, torch.tensor(faces), H, W)
        assert torch.equal(count[0], square), faces


def test_fan_around_a_pixel_centre_and_jittered_mesh_leave_no_gaps_or_overlaps():
    # A fan of 7 triangles around a vertex that sits on a pixel centre.
    centre, radius = (30.5, 20.5), 15.0
    angles = [2 * math.pi * k / 7 for k in range(7)]
    rim = [(centre[0] + radius * math.cos(a), centre[1] + radius * math.sin(a)) for a in angles]
    verts = screen([centre] + rim)
    faces = torch.tensor([[0, 1 + k, 1 + (k + 1) % 7] for k in range(7)])
    count = coverage_count(verts, faces, H, W)
    assert count.max() == 1
    assert count[0, 20, 30] == 1 and count[0, 10:31, 20:41].sum() > 0

    # A 6x5 grid of quads with vertices jittered onto quarter pixels, so many centres lie on edges.
    gen = torch.Generator().manual_seed(0)
    gy, gx = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
    x = 4 + gx * 8 + torch.randint(-8, 9, gx.shape, generator=gen) / 4 * (0 < gx) * (gx < 6)
    y = 4 + gy * 8 + torch.randint(-8, 9, gy.shape, generator=gen) / 4 * (0 < gy) * (gy < 5)
    verts = torch.stack([x, y, torch.ones_like(x)], -1).view(1, -1, 3)
    idx = torch.arange(42).view(6, 7)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, b, d], -1).view(-1, 3), torch.stack([a, d, c], -1).view(-1, 3)])
    count = coverage_count(verts, faces, H, W)
    assert torch.equal(count[0, 4:44, 4:52], torch.ones(40, 48, dtype=torch.long))
    assert count.sum() == 40 * 48


def test_near_triangle_hides_far_one_regardless_of_order():
    near = [(5.0, 5.0), (40.0, 5.0), (5.0, 40.0)]
    far = [(10.0, 10.0), (60.0, 10.0), (10.0, 45.0)]
    verts = screen(near + far, [2.0] * 3 + [5.0] * 3)
    for faces, near_id in (([[0, 1, 2], [3, 4, 5]], 0), ([[3, 4, 5], [0, 1, 2]], 1)):
        frags = rasterize(verts, torch.tensor(faces), H, W)
        assert frags.face[0, 15, 15] == near_id and frags.depth[0, 15, 15] == pytest.approx(2.0)
        assert frags.face[0, 12, 50] == 1 - near_id and frags.depth[0, 12, 50] == pytest.approx(5.0)


def test_perspective_correct_interpolation_matches_ray_plane_intersection():
    focal, cx, cy = 60.0, W / 2, H / 2
    # A quad on the plane Z = 4 + 0.8 X + 0.3 Y, seen at a slant.
    corners = torch.tensor([(-1.5, -1.2), (1.4, -1.0), (1.2, 1.3), (-1.3, 1.1)], dtype=torch.float64)
    cam = torch.cat([corners, (4 + 0.8 * corners[:, :1] + 0.3 * corners[:, 1:])], 1)  # [4, 3]
    X, Y, Z = cam.unbind(1)
    verts = torch.stack([focal * X / Z + cx, focal * Y / Z + cy, Z], 1)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    frags = rasterize(verts[None].float(), faces, H, W)
    got = interpolate(cam.float(), frags, faces)[0].double()  # [H, W, 3]

    x, y = pixel_centres()
    ray = torch.stack([(x - cx) / focal, (y - cy) / focal, torch.ones_like(x)], -1)
    normal = torch.tensor([-0.8, -0.3, 1.0], dtype=torch.float64)  # n . P = 4
    expected = ray * (4 / (ray @ normal))[..., None]
    mask = frags.mask[0]
    assert mask.sum() > 500
    rel = (got[mask] - expected[mask]).norm(dim=-1) / expected[mask].norm(dim=-1)
    assert rel.max() < 1e-4
    assert torch.allclose(frags.depth[0][mask].double(), expected[mask][:, 2], rtol=1e-4)
    assert torch.allclose(frags.bary[0][mask].sum(-1), torch.ones(()), atol=1e-5)


def test_screen_coordinates_interpolate_linearly_at_constant_depth():
    verts = screen([(3.3, 2.1), (61.7, 9.9), (30.2, 46.6), (2.0, 40.0)], 3.0)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    frags = rasterize(verts, faces, H, W)
    got = interpolate(verts[0, :, :2], frags, faces)[0]
    x, y = pixel_centres()
    mask = frags.mask[0]
    assert torch.allclose(got[mask], torch.stack([x, y], -1)[mask].float(), atol=1e-4)


def test_texture_sampling_of_gradient_and_checker():
    th, tw = 8, 16
    ti, tj = torch.meshgrid(torch.arange(th), torch.arange(tw), indexing="ij")
    gradient = torch.stack([(tj + 0.5) / tw, (ti + 0.5) / th]).float()  # [2, th, tw]: texel centre uv
    uv = torch.rand(2, 5, 7, 2, generator=torch.Generator().manual_seed(1))
    uv = uv * torch.tensor([1 - 1 / tw, 1 - 1 / th]) + torch.tensor([0.5 / tw, 0.5 / th])
    assert torch.allclose(sample_texture(gradient, uv), uv, atol=1e-6)

    checker = ((ti + tj) % 2).float()[None].expand(3, -1, -1)[None]  # [1, 3, th, tw]
    centres = torch.stack([(tj + 0.5) / tw, (ti + 0.5) / th], -1)[None]  # [1, th, tw, 2]
    assert torch.equal(sample_texture(checker, centres), checker.permute(0, 2, 3, 1))
    corner = sample_texture(checker, torch.zeros(1, 1, 1, 2))  # top-left corner: texel (0, 0) = 0
    assert corner.shape == (1, 1, 1, 3) and torch.equal(corner, torch.zeros(1, 1, 1, 3))


def test_empty_pixels_and_offscreen_triangles():
    verts = screen([(-30.0, -30.0), (-5.0, -30.0), (-30.0, -5.0), (70.0, 10.0), (90.0, 10.0), (80.0, 30.0)])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    frags = rasterize(verts, faces, H, W)
    assert not frags.mask.any()
    assert (frags.face == -1).all() and torch.isinf(frags.depth).all() and (frags.bary == 0).all()
    assert (interpolate(torch.ones(6, 4), frags, faces) == 0).all()
    assert rasterize(verts, torch.zeros(0, 3, dtype=torch.long), H, W).face.shape == (1, H, W)
    for dtype in (torch.float32, torch.float64):  # an empty batch: the compiled kernels, the torch code
        assert rasterize(torch.zeros(0, 3, 3, dtype=dtype), faces[:1], H, W).face.shape == (0, H, W)


def test_triangles_behind_the_camera_are_skipped():
    corners = [(5.0, 5.0), (40.0, 5.0), (5.0, 40.0)]
    for z in ([1.0, 1.0, 0.0], [1.0, -1.0, 1.0]):
        verts = torch.cat([screen(corners, z), screen(corners, 3.0)], 1)
        frags = rasterize(verts, torch.tensor([[0, 1, 2], [3, 4, 5]]), H, W)
        assert frags.mask.any() and (frags.face[frags.mask] == 1).all()


def test_backface_culling_keeps_counter_clockwise_triangles():
    ccw = [(5.0, 5.0), (5.0, 40.0), (40.0, 5.0)]  # down, then up-right: counter-clockwise on screen
    verts = screen(ccw)
    assert rasterize(verts, torch.tensor([[0, 1, 2]]), H, W, cull_backfaces=True).mask.any()
    assert not rasterize(verts, torch.tensor([[0, 2, 1]]), H, W, cull_backfaces=True).mask.any()
    assert rasterize(verts, torch.tensor([[0, 2, 1]]), H, W).mask.any()


def test_huge_triangle_covers_the_whole_image():
    verts = screen([(-1000.0, -1000.0), (5000.0, -800.0), (-900.0, 4000.0)], 2.0)
    frags = rasterize(verts, torch.tensor([[0, 1, 2]]), H, W)
    assert frags.mask.all() and torch.allclose(frags.depth, torch.tensor(2.0))


def test_batch_items_are_rasterized_independently():
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    a = screen([(3.0, 4.0), (50.0, 6.0), (45.0, 40.0), (6.0, 30.0)], [2.0, 3.0, 4.0, 2.5])
    b = screen([(20.0, 2.0), (60.0, 20.0), (30.0, 45.0), (10.0, 25.0)], [1.0, 1.5, 2.0, 1.2])
    both = rasterize(torch.cat([a, b]), faces, H, W)
    for k, single in enumerate((rasterize(a, faces, H, W), rasterize(b, faces, H, W))):
        assert torch.equal(both.face[k], single.face[0])
        assert torch.equal(both.bary[k], single.bary[0])
        assert torch.equal(both.depth[k], single.depth[0])
    assert not torch.equal(both.face[0], both.face[1])
    assert isinstance(both, Fragments) and both.mask.dtype == torch.bool


def reference_interpolate(attrs: torch.Tensor, frags: Fragments, faces: torch.Tensor) -> torch.Tensor:
    """`interpolate` by its tensor code: attributes that need a gradient keep it off the kernels."""
    with torch.enable_grad():
        return interpolate(attrs.clone().requires_grad_(True), frags, faces).detach()


def assert_same_as_reference(verts: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> None:
    """The compiled rasterizer and interpolation equal the PyTorch reference bit for bit."""
    attrs = torch.rand(verts.shape[0], verts.shape[1], 4, generator=torch.Generator().manual_seed(5))
    for cull in (False, True):
        got = raster._rasterize_compiled(verts, faces, height, width, cull)
        expected = _rasterize_torch(verts, faces, height, width, cull)
        assert got is not None
        assert torch.equal(got.face, expected.face), cull
        assert torch.equal(got.bary, expected.bary), cull
        assert torch.equal(got.depth, expected.depth), cull
        for table in (attrs, attrs[0]):  # one table per batch item, or one for all
            compiled = raster._interpolate_compiled(table, got, faces)
            assert compiled is not None
            assert torch.equal(compiled, reference_interpolate(table, expected, faces))
    assert expected.mask.any()


def test_compiled_rasterizer_equals_the_reference_on_random_meshes():
    gen = torch.Generator().manual_seed(3)
    for trial in range(40):
        # Corners spread past every side of the image and behind the camera (z from -0.5).
        verts = torch.rand(2, 40, 3, generator=gen) * torch.tensor([1.6 * W, 1.6 * H, 4.0])
        verts -= torch.tensor([0.3 * W, 0.3 * H, 0.5])
        if trial % 2:  # on a quarter-pixel grid: many pixel centres on edges, many depth ties
            verts[..., :2] = (verts[..., :2] * 4).round() / 4
            verts[..., 2] = (verts[..., 2] * 2).round() / 2 + 1
        faces = torch.randint(0, 40, (60, 3), generator=gen)  # both windings, and some degenerate
        faces[:4, 1] = faces[:4, 0]  # corners repeated: no area
        assert_same_as_reference(verts, faces, H, W)


def test_compiled_rasterizer_equals_the_reference_on_shared_edges_and_odd_triangles():
    # A jittered grid of quads (edges shared, pixel centres on them), a sliver, a huge triangle
    # and one far off screen, in a batch of two with different depths.
    gen = torch.Generator().manual_seed(4)
    gy, gx = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
    x = 4 + gx * 8 + torch.randint(-8, 9, gx.shape, generator=gen) / 4
    y = 4 + gy * 8 + torch.randint(-8, 9, gy.shape, generator=gen) / 4
    grid = torch.stack([x, y, 1 + (gx + gy) / 10], -1).view(-1, 3)
    extra = torch.tensor(
        [[2.0, 2.0, 0.5], [60.0, 2.0, 0.5], [31.0, 2.001, 0.5], [-1e4, -1e4, 3.0], [1e4, 10.0, 3.0],
         [10.0, 1e4, 3.0], [500.0, 500.0, 1.0], [520.0, 500.0, 1.0], [500.0, 530.0, 1.0]]
    )
    verts = torch.cat([grid, extra])
    verts = torch.stack([verts, verts * torch.tensor([1.0, 1.0, 2.0]) + torch.tensor([3.5, -2.25, 0.0])])
    idx = torch.arange(42).view(6, 7)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat(
        [
            torch.stack([a, b, d], -1).view(-1, 3),
            torch.stack([a, c, d], -1).view(-1, 3),  # clockwise: culled when asked
            torch.tensor([[42, 43, 44], [45, 46, 47], [48, 49, 50]]),
        ]
    )
    assert_same_as_reference(verts, faces, H, W)
    count = coverage_count(verts, faces[:60], H, W)
    assert count.max() == 1 and count[0, 8:40, 8:48].min() == 1  # drawn exactly once


def test_compiled_rasterizer_equals_the_reference_on_the_avatar(avatar):
    renderer = AvatarRenderer(avatar, 128)
    params = IdleMotion(avatar.reference_params, avatar.motion, seed=0).params([0, 37])
    screen = renderer.screen(params)  # [2, V, 3]
    assert_same_as_reference(screen, renderer.faces, 128, 128)
    half = screen * torch.tensor([0.5, 0.5, 1.0]) + torch.tensor([40.0, -20.0, 0.0])  # partly off screen
    assert_same_as_reference(half, renderer.faces, 128, 96)


def test_rasterize_on_cpu_runs_the_compiled_kernels(monkeypatch):
    def unexpected(*args):
        raise AssertionError("the tensor code ran")

    monkeypatch.setattr(raster, "_rasterize_torch", unexpected)
    verts = screen([(3.0, 4.0), (50.0, 6.0), (45.0, 40.0)])
    faces = torch.tensor([[0, 1, 2]])
    values = interpolate(torch.ones(3, 2), rasterize(verts, faces, H, W), faces)
    assert values.sum() > 0


def test_inputs_the_kernels_do_not_take_go_to_the_reference():
    verts = screen([(3.0, 4.0), (50.0, 6.0), (45.0, 40.0)], [2.0, 3.0, 4.0])
    faces = torch.tensor([[0, 1, 2]])
    expected = _rasterize_torch(verts, faces, H, W, False)
    for other in (verts.double(), verts.clone().requires_grad_(True)):
        with torch.enable_grad():
            frags = rasterize(other, faces, H, W)
        assert torch.equal(frags.face, expected.face)
        assert torch.allclose(frags.bary.float(), expected.bary, atol=1e-6)
    # A gradient flows to the vertices through the reference.
    with torch.enable_grad():
        grad_verts = verts.clone().requires_grad_(True)
        interpolate(grad_verts[0], rasterize(grad_verts, faces, H, W), faces).sum().backward()
    assert grad_verts.grad is not None and grad_verts.grad.abs().sum() > 0
    with pytest.raises(IndexError):
        rasterize(verts, torch.tensor([[0, 1, 3]]), H, W)
    with pytest.raises(IndexError):
        interpolate(torch.ones(2, 4), rasterize(verts, faces, H, W), faces)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_agrees_with_cpu():
    gen = torch.Generator().manual_seed(2)
    verts = torch.rand(2, 60, 3, generator=gen) * torch.tensor([W, H, 4.0]) + torch.tensor([0, 0, 1.0])
    faces = torch.randint(0, 60, (80, 3), generator=gen)
    attrs = torch.rand(2, 60, 5, generator=gen)
    cpu = rasterize(verts, faces, H, W)
    gpu = rasterize(verts.cuda(), faces.cuda(), H, W)
    # nvdiffrast, when installed, may break exact edge ties differently: allow a sliver of pixels.
    agree = (gpu.face.cpu() == cpu.face).float().mean()
    assert agree > 0.99
    same = (gpu.face.cpu() == cpu.face) & cpu.mask
    assert torch.allclose(gpu.depth.cpu()[same], cpu.depth[same], rtol=1e-4)
    got = interpolate(attrs.cuda(), gpu, faces.cuda()).cpu()
    assert torch.allclose(got[same], interpolate(attrs, cpu, faces)[same], atol=1e-4)
