"""Locating third-party assets (robot URDFs, object meshes, human-hand data) at run time.

Assets are never part of the repository. They are looked up, in order, in:

1. ``$UNIHM_ASSETS`` (when set),
2. ``../shared/assets`` next to the workspace root (the folder holding ``src/unihm_msgs``),
3. ``~/.cache/unihm/assets``.

A missing asset raises :class:`AssetNotFoundError` naming the file and every place searched, so
that a user can see at once where to put it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ENV_VAR = "UNIHM_ASSETS"
WORKSPACE_ENV_VAR = "UNIHM_WORKSPACE"
# The marker that tells a folder is this project's workspace root.
_WORKSPACE_MARKER = Path("src") / "unihm_msgs" / "package.xml"


class AssetNotFoundError(FileNotFoundError):
    """An asset (or the assets folder) is in none of the searched places."""

    def __init__(self, relative: str, searched: list[Path], hint: str = "") -> None:
        self.relative = relative
        self.searched = searched
        places = "\n".join(f"  - {p}" for p in searched) or "  (no candidate folder)"
        what = f"asset '{relative}'" if relative else "the assets folder"
        hint = hint or (f"Set ${ENV_VAR} to the folder that holds the assets "
                        "(see README.md, 'Assets').")
        super().__init__(f"{what} not found. Searched:\n{places}\n{hint}")


def find_workspace_root(starts: Iterable[Path] | None = None) -> Path | None:
    """Return the workspace root (the folder that contains src/unihm_msgs), if one is found.

    ``$UNIHM_WORKSPACE`` wins; otherwise the folders above this module (an editable or colcon
    install lives inside the workspace) and above the current directory are walked upwards.
    """
    env = os.environ.get(WORKSPACE_ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    if starts is None:
        starts = (Path(__file__).resolve().parent, Path.cwd().resolve())
    for start in starts:
        for folder in (start, *start.parents):
            if (folder / _WORKSPACE_MARKER).is_file():
                return folder
    return None


def candidate_roots() -> list[Path]:
    """The asset folders to search, in priority order (they need not exist)."""
    roots: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append(Path(env).expanduser())
    workspace = find_workspace_root()
    if workspace is not None:
        roots.append(workspace.parent / "shared" / "assets")
    roots.append(Path.home() / ".cache" / "unihm" / "assets")
    return roots


def assets_root() -> Path:
    """The first existing asset folder; raises AssetNotFoundError when there is none."""
    roots = candidate_roots()
    for root in roots:
        if root.is_dir():
            return root.resolve()
    raise AssetNotFoundError("", roots)


def asset_path(relative: str | os.PathLike[str]) -> Path:
    """Absolute path of an asset given relative to the assets folder.

    Every candidate folder is tried, so a user can keep a partial set of assets in a
    higher-priority folder and fall back to the shared ones for the rest.
    """
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"asset paths are relative to the assets folder, got '{relative}'")
    searched = []
    for root in candidate_roots():
        path = root / rel
        searched.append(path)
        if path.exists():
            return path.resolve()
    raise AssetNotFoundError(str(rel), searched)
