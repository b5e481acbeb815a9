"""Folders of YAML configs with an ``id`` each (hands, arms): search order and overrides.

Every kind of config is found the same way: the folder shipped with the package, then a user
folder, then the folders of an environment variable; a later folder overrides an id of an earlier
one. A file that cannot be read stops the lookup with an error naming it, rather than being
skipped: a broken override must never silently fall back to the shipped config of a robot.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from unihm_core.assets import AssetNotFoundError, asset_path

ErrorFactory = Callable[[Any, str, str], Exception]  # (file, key, problem) -> exception


class ConfigError(ValueError):
    """A config file is malformed; the message names the file and the offending key."""

    kind = "config"

    def __init__(self, source: str | os.PathLike[str], key: str, problem: str) -> None:
        self.source = str(source)
        self.key = key
        self.problem = problem
        where = f"{self.source}: '{key}'" if key else self.source
        super().__init__(f"{self.kind} config {where}: {problem}")


def config_dirs(builtin: Path, user: Path, env_var: str) -> list[Path]:
    dirs = [builtin, user.expanduser()]
    dirs += [Path(entry).expanduser() for entry in os.environ.get(env_var, "").split(os.pathsep)
             if entry.strip()]
    return dirs


def peek_id(path: Path, error: ErrorFactory) -> str:
    """The ``id`` of a config file without validating the rest (that happens on use)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise error(path, "", f"cannot read the file ({e.strerror})") from e
    except yaml.YAMLError as e:
        raise error(path, "", f"not valid YAML: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise error(path, "id", "missing or not a string")
    return data["id"]


_INDEX_CACHE: dict[tuple[object, ...], dict[str, Path]] = {}


def index_configs(dirs: list[Path], error: ErrorFactory) -> dict[str, Path]:
    """Id -> config file over ``dirs`` in order (later folders override earlier ones).

    Re-read only when a file is added, removed or modified (keyed on paths, sizes and
    modification times), so looking a hand up in a loop costs a few ``stat`` calls."""
    files = [sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []
             for folder in dirs]
    stats = [(str(p), p.stat().st_mtime_ns, p.stat().st_size) for group in files for p in group]
    signature = (tuple(map(str, dirs)), *stats)
    if signature not in _INDEX_CACHE:
        _INDEX_CACHE.clear()
        _INDEX_CACHE[signature] = _index(files, error)
    return dict(_INDEX_CACHE[signature])


def _index(files: list[list[Path]], error: ErrorFactory) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for group in files:
        in_folder: dict[str, Path] = {}
        for path in group:
            config_id = peek_id(path, error)
            if config_id in in_folder:
                raise error(path, "id", f"'{config_id}' is also defined by "
                                        f"{in_folder[config_id]}")
            in_folder[config_id] = path
        found.update(in_folder)
    return found


def resolve_config_path(value: str, config_path: Path | None) -> Path:
    """A file named by a config: absolute; ``./`` or ``../`` relative to the config file;
    anything else relative to the assets folder (``unihm_core.assets``)."""
    path = Path(os.path.expandvars(value)).expanduser()
    if path.is_absolute():
        return path
    if value.startswith(("./", "../")):
        base = config_path.parent if config_path is not None else Path.cwd()
        return (base / path).resolve()
    try:
        return asset_path(path)
    except AssetNotFoundError as e:
        raise AssetNotFoundError(
            e.relative, e.searched,
            hint=f"Paths without './' are looked up in the assets folder; write './{value}' "
                 "for a file next to the config, or an absolute path.") from e


def check_header(data: Any, source: str, keys: tuple[tuple[str, ...], tuple[str, ...]],
                 schema_version: int, *, example_id: str, error: ErrorFactory) -> str:
    """The checks every config kind shares: a mapping, required and known keys, the schema
    version and a lower-case snake_case id (returned)."""
    required, optional = keys

    def require(cond: bool, key: str, problem: str) -> None:
        if not cond:
            raise error(source, key, problem)

    require(isinstance(data, dict), "", "the file must hold one YAML mapping")
    for key in required:
        require(key in data, key, "missing required key")
    unknown = sorted(set(data) - set(required) - set(optional))
    require(not unknown, unknown[0] if unknown else "",
            f"unknown key (allowed: {', '.join(required + optional)})")
    require(data["schema"] == schema_version, "schema",
            f"unsupported schema version {data['schema']!r} (this release reads {schema_version})")
    config_id = data["id"]
    require(isinstance(config_id, str) and config_id.replace("_", "").isalnum()
            and config_id == config_id.lower(), "id",
            f"expected a lower-case id like '{example_id}', got {config_id!r}")
    return config_id
