import json
import shutil

import numpy as np
import pytest

from engine.avatar import build
from engine.avatar.bundle import AvatarError, load, resolve, save
from engine.face.track import NoFaceError


def copy_default(tmp_path):
    return shutil.copytree(resolve("default"), tmp_path / "copy")


def test_default_avatar_loads(avatar):
    assert avatar.name == "default" and avatar.resolution == 256
    assert avatar.reference.shape == (256, 256, 3) and avatar.reference.dtype == np.uint8
    assert len(avatar.reference_params) == 1 and avatar.identity.vertices.shape == (478, 3)


def test_load_by_path_and_name_agree(avatar):
    assert np.array_equal(load(resolve("default")).identity.vertices, avatar.identity.vertices)


def test_unknown_avatar_names_the_known_ones():
    with pytest.raises(AvatarError, match="unknown avatar 'nobody'.*default"):
        load("nobody")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "identity.npz").unlink(), "missing identity"),
        (lambda d: (d / "avatar.json").write_text("{not json"), "not valid JSON"),
        (lambda d: _edit_meta(d, version=99), "version 99"),
        (lambda d: _edit_meta(d, rig_version=0), "rig version"),
        (
            lambda d: np.savez(
                d / "identity.npz", vertices=np.zeros((10, 3)), home=np.zeros(3), uv=np.zeros((478, 2))
            ),
            "vertices",
        ),
        (lambda d: (d / "reference.png").write_bytes(b"garbage"), "reference"),
    ],
)
def test_damaged_bundles_fail_clearly(tmp_path, damage, message):
    bundle = copy_default(tmp_path)
    damage(bundle)
    with pytest.raises(AvatarError, match=message):
        load(bundle)


def _edit_meta(bundle, **changes):
    meta = json.loads((bundle / "avatar.json").read_text())
    meta.update(changes)
    (bundle / "avatar.json").write_text(json.dumps(meta))


def test_save_is_atomic(tmp_path, avatar, monkeypatch):
    out = tmp_path / "mine"
    save(avatar, out)
    before = sorted(p.name for p in out.iterdir())

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("engine.avatar.bundle.Image.Image.save", fail)
    with pytest.raises(OSError):
        save(avatar, out)
    assert sorted(p.name for p in out.iterdir()) == before  # the old bundle is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # and no temporary directory is left
    load(out)


def test_build_from_photo_matches_the_builtin(tmp_path, avatar):
    built = build.builtin(tmp_path / "again")
    assert np.abs(built.identity.vertices - avatar.identity.vertices).max() < 1e-3
    assert load(tmp_path / "again").name == "default"


def test_photo_without_face_is_refused(tmp_path):
    with pytest.raises(NoFaceError):
        build.from_image(np.full((200, 200, 3), 128, np.uint8), tmp_path / "blank", name="blank")
    assert not (tmp_path / "blank").exists()
