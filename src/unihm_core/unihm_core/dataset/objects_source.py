"""Where an object for synthesis comes from: a library id, an object folder or a mesh file.

``--objects`` accepts all three (docs/dataset.md); this module turns each into the files that
synthesis and the physics check need, with a clear error naming what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unihm_core.assets import AssetNotFoundError, asset_path

MESH_NAME = "textured_simple.obj"
MESH_SUFFIXES = (".obj", ".stl", ".ply", ".off", ".glb")


class ObjectSourceError(ValueError):
    """An object that cannot be found or has no usable mesh."""


@dataclass(frozen=True)
class ObjectSource:
    """The files of one object."""

    object_id: str
    mesh_file: Path
    """Absolute path of the watertight mesh (metres, object frame, +z up when resting)."""
    mesh_path: str
    """How datasets record it: asset-relative for library objects, else absolute."""
    collision_files: tuple[Path, ...] = ()
    """Convex pieces for physics (empty: the physics engine takes the mesh's convex hull)."""


def collision_pieces(folder: Path) -> tuple[Path, ...]:
    """Convex pieces: ``collision/*.stl``, else the first decomposition variant folder
    (``collision/v0/*.stl``, as some library objects ship several)."""
    if not folder.is_dir():
        return ()
    pieces = sorted(folder.glob("*.stl"))
    for variant in sorted(p for p in folder.iterdir() if p.is_dir()):
        if pieces:
            break
        pieces = sorted(variant.glob("*.stl"))
    return tuple(p.resolve() for p in pieces)


def _folder_source(folder: Path, object_id: str, recorded: str | None) -> ObjectSource:
    mesh = folder / MESH_NAME
    if not mesh.is_file():
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in MESH_SUFFIXES)
        if len(found) != 1:
            raise ObjectSourceError(f"{folder}: expected {MESH_NAME} (or exactly one mesh file "
                                    f"{'/'.join(MESH_SUFFIXES)}), found {[p.name for p in found]}")
        mesh = found[0]
    collision = collision_pieces(folder / "collision")
    return ObjectSource(object_id, mesh.resolve(), recorded or str(mesh.resolve()), collision)


def resolve_object(spec: str) -> ObjectSource:
    """A library id (``006_mustard_bottle``), an object folder laid out like the library's, or
    a mesh file; the object id is the folder name or the mesh file's stem."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return _folder_source(path, path.resolve().name, None)
    if path.is_file():
        if path.suffix.lower() not in MESH_SUFFIXES:
            raise ObjectSourceError(f"{path}: not a mesh file ({', '.join(MESH_SUFFIXES)})")
        return ObjectSource(path.stem, path.resolve(), str(path.resolve()))
    if "/" in spec or spec.endswith(MESH_SUFFIXES):
        raise ObjectSourceError(f"{spec}: no such object folder or mesh file")
    try:
        folder = asset_path(f"ycb_objects/{spec}")
    except AssetNotFoundError as exc:
        raise ObjectSourceError(f"unknown object {spec!r}: not a library id, folder or mesh "
                                f"file ({exc})") from exc
    return _folder_source(Path(folder), spec, f"ycb_objects/{spec}/{MESH_NAME}")
