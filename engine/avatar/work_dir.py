"""What a long, resumable job keeps on disk: a work directory whose stages write their outputs
atomically and leave `STAGE.done` markers (with their wall time), under a manifest of what the
job is about.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


class Work:
    """The work directory: each stage's outputs, written atomically; `done(stage)` says whether a
    stage has finished. Its manifest names the video and preset it belongs to."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        if (path / "manifest.json").is_file() and json.loads(
            (path / "manifest.json").read_text()
        ) != manifest:
            shutil.rmtree(path)  # another video or preset: nothing here can be reused
        path.mkdir(parents=True, exist_ok=True)
        self.write_json("manifest.json", manifest)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def done(self, stage: str) -> bool:
        return (self.path / f"{stage}.done").is_file()

    def finish(self, stage: str, seconds: float) -> None:
        self.write_json(f"{stage}.done", {"seconds": round(seconds, 1)})

    def write_json(self, name: str, data: dict) -> None:
        tmp = self.path / f".{name}.partial"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.path / name)

    def read_json(self, name: str) -> dict:
        return json.loads((self.path / name).read_text())

    def stage_seconds(self) -> dict[str, float]:
        return {p.stem: json.loads(p.read_text())["seconds"] for p in sorted(self.path.glob("*.done"))}
