"""The avatar bundle: a directory `avatars/NAME/` that holds everything one person needs.

    avatar.json            format name + version, resolution, feature kind, rig version, camera,
                           the file list, where the person came from
    identity.npz           vertices [478, 3] (model space), home [3], uv [478, 2] (texture coords
                           of each vertex in reference.png, 0..1, origin top-left)
    reference.png          the reference frame [R, R, 3]: the photo or a frame of the video
    reference_params.npz   its FaceParams (one frame)
    rest_params.npz        the face every animation starts from (one frame): the reference with
                           the lips together (engine/face/rest.py), computed when the avatar is built
    motion.json            the person's pose/blink statistics (idle motion, personal style)
    r2v_lite.pt, ...       extra files listed in avatar.json's `files`: weights added by later
                           stages (`add_files`), e.g. R2V weights per variant

Loading validates every file and raises AvatarError with one clear sentence. Saving is atomic:
the bundle is written into a temporary sibling directory which then replaces the target.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.errors import EngineError
from engine.face.model import Camera, Identity
from engine.face.rest import closed_rest
from engine.face.topology import NUM_LANDMARKS
from engine.types import RIG_VERSION, FaceParams, FaceParamsError

FORMAT = "facial-avatar"
FORMAT_VERSION = 2  # 2: rest_params.npz; version 1 bundles are read with their rest computed on load
AVATARS_DIR = Path(__file__).resolve().parents[2] / "avatars"
REQUIRED_FILES = {
    "identity": "identity.npz",
    "reference": "reference.png",
    "reference_params": "reference_params.npz",
    "rest_params": "rest_params.npz",
    "motion": "motion.json",
}
V1_FILES = ("identity", "reference", "reference_params", "motion")


class AvatarError(EngineError):
    """An avatar that cannot be found or whose bundle is invalid."""


@dataclass(frozen=True)
class MotionStats:
    """How a person moves when nobody drives them: head-pose spread and blinking."""

    pose_std: tuple[float, ...] = (0.035, 0.045, 0.02, 0.15, 0.12, 0.1)  # rad x3, model units x3
    blinks_per_minute: float = 17.0
    blink_seconds: float = 0.25


@dataclass(frozen=True)
class Avatar:
    name: str
    path: Path
    resolution: int
    feature_kind: str
    identity: Identity
    uv: np.ndarray  # [478, 2]
    reference: np.ndarray  # [R, R, 3] uint8
    reference_params: FaceParams  # one frame: the reference image's face
    rest_params: FaceParams  # one frame: the reference with the lips together; speech and idle start here
    motion: MotionStats
    source: str = ""
    extra_files: dict[str, str] = field(default_factory=dict)  # weights added by later stages


def resolve(avatar: str | os.PathLike) -> Path:
    """An avatar name under avatars/ or a path to a bundle directory -> its directory."""
    path = Path(avatar)
    if (path / "avatar.json").is_file():
        return path
    named = AVATARS_DIR / str(avatar)
    if os.sep not in str(avatar) and (named / "avatar.json").is_file():
        return named
    known = sorted(p.parent.name for p in AVATARS_DIR.glob("*/avatar.json"))
    raise AvatarError(
        f"unknown avatar '{avatar}': not a bundle directory, and not one of {known} under {AVATARS_DIR.name}/"
    )


def load(avatar: str | os.PathLike) -> Avatar:
    path = resolve(avatar)
    meta = _read_json(path / "avatar.json")
    if meta.get("format") != FORMAT:
        raise AvatarError(f"{path}: avatar.json is not a {FORMAT} bundle")
    version = meta.get("version")
    if version not in (1, FORMAT_VERSION):
        raise AvatarError(
            f"{path}: bundle format version {version} is not supported "
            f"(this engine reads 1 and {FORMAT_VERSION})"
        )
    if meta.get("rig_version") != RIG_VERSION:
        raise AvatarError(
            f"{path}: made for rig version {meta.get('rig_version')}, this engine has {RIG_VERSION}; rebuild "
            "the avatar"
        )
    try:
        files = {key: path / meta["files"][key] for key in (V1_FILES if version == 1 else REQUIRED_FILES)}
        resolution = int(meta["resolution"])
        camera = Camera(**meta["camera"])
    except (KeyError, TypeError, ValueError) as e:
        raise AvatarError(f"{path}: avatar.json lacks or garbles a field ({e})") from None
    for key, file in files.items():
        if not file.is_file():
            raise AvatarError(f"{path}: missing {key} file {file.name}")
    arrays = _read_npz(
        files["identity"], {"vertices": (NUM_LANDMARKS, 3), "home": (3,), "uv": (NUM_LANDMARKS, 2)}
    )
    try:
        reference = np.array(Image.open(files["reference"]).convert("RGB"))
        reference_params = FaceParams.load(str(files["reference_params"]))
        rest_params = FaceParams.load(str(files["rest_params"])) if "rest_params" in files else None
    except (OSError, FaceParamsError) as e:
        raise AvatarError(f"{path}: {e}") from None
    if reference.shape[:2] != (camera.height, camera.width) or len(reference_params) != 1:
        raise AvatarError(f"{path}: reference image or parameters do not match the camera in avatar.json")
    identity = Identity(arrays["vertices"], arrays["home"], camera)
    if rest_params is None:
        rest_params = closed_rest(identity, reference_params)
    elif len(rest_params) != 1:
        raise AvatarError(f"{path}: rest_params must hold one frame, not {len(rest_params)}")
    try:
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in _read_json(files["motion"]).items()
        }
        motion = MotionStats(**fields)
    except TypeError as e:
        raise AvatarError(f"{path}: motion.json is malformed ({e})") from None
    return Avatar(
        name=meta.get("name", path.name),
        path=path,
        resolution=resolution,
        feature_kind=meta.get("feature_kind", "builtin"),
        identity=identity,
        uv=arrays["uv"],
        reference=reference,
        reference_params=reference_params,
        rest_params=rest_params,
        motion=motion,
        source=meta.get("source", ""),
        extra_files={k: v for k, v in meta["files"].items() if k not in REQUIRED_FILES},
    )


def save(avatar: Avatar, out: str | os.PathLike) -> Path:
    """Writes the bundle to `out` atomically (a failure leaves any previous bundle untouched)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is an ordinary shared directory
    try:
        identity = avatar.identity
        np.savez(
            tmp / REQUIRED_FILES["identity"], vertices=identity.vertices, home=identity.home, uv=avatar.uv
        )
        Image.fromarray(avatar.reference).save(tmp / REQUIRED_FILES["reference"])
        avatar.reference_params.save(str(tmp / REQUIRED_FILES["reference_params"]))
        avatar.rest_params.save(str(tmp / REQUIRED_FILES["rest_params"]))
        (tmp / REQUIRED_FILES["motion"]).write_text(json.dumps(asdict(avatar.motion), indent=2) + "\n")
        for name in avatar.extra_files.values():
            shutil.copy2(avatar.path / name, tmp / name)
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": avatar.name,
            "resolution": avatar.resolution,
            "feature_kind": avatar.feature_kind,
            "rig_version": RIG_VERSION,
            "camera": asdict(identity.camera),
            "files": {**REQUIRED_FILES, **avatar.extra_files},
            "source": avatar.source,
        }
        (tmp / "avatar.json").write_text(json.dumps(meta, indent=2) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def add_files(avatar: str | os.PathLike, files: dict[str, str | os.PathLike]) -> Avatar:
    """Adds or replaces extra files of a bundle, e.g. weights {"r2v_lite": "out/run/model.pt"},
    each stored as KEY + its suffix (r2v_lite.pt) and listed in avatar.json. Atomic: the bundle is
    copied aside (other files byte for byte), changed, validated, then swapped in."""
    path = resolve(avatar)
    reserved = sorted(set(files) & set(REQUIRED_FILES))
    if reserved:
        raise AvatarError(f"{path}: {reserved} are the bundle's own files, not extra files")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        shutil.copytree(path, tmp, dirs_exist_ok=True)
        tmp.chmod(0o755)
        meta = _read_json(tmp / "avatar.json")
        for key, source in files.items():
            name = key + Path(source).suffix
            shutil.copyfile(source, tmp / name)
            meta["files"][key] = name
        (tmp / "avatar.json").write_text(json.dumps(meta, indent=2) + "\n")
        load(tmp)
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load(path)


def _replace_dir(new: Path, target: Path) -> None:
    """Swap a finished directory into place; the old one is removed only after the swap."""
    if not target.exists():
        os.rename(new, target)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AvatarError(f"{path.parent}: missing {path.name}") from None
    except (OSError, ValueError) as e:
        raise AvatarError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise AvatarError(f"{path}: expected a JSON object")
    return data


def _read_npz(path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: np.asarray(f[key], np.float64) for key in shapes}
    except (OSError, ValueError, KeyError) as e:
        raise AvatarError(f"{path}: unreadable or incomplete ({e})") from None
    for key, shape in shapes.items():
        if arrays[key].shape != shape or not np.isfinite(arrays[key]).all():
            raise AvatarError(
                f"{path}: '{key}' must be a finite array of shape {list(shape)}, got "
                f"{list(arrays[key].shape)}"
            )
    return arrays
