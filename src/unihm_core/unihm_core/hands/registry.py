"""Where hand configs are found, and lookup by hand type id.

Search order (a later folder overrides an id defined by an earlier one, so a user can adjust a
shipped hand, e.g. its mounting on the arm, without editing the package):

1. the configs shipped in ``unihm_core/hands/configs``,
2. ``~/.config/unihm/hands``,
3. every folder in ``$UNIHM_HAND_CONFIGS`` (``os.pathsep``-separated), in order.
"""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path

from unihm_core import config_folders as folders
from unihm_core.hands.config import HandConfig, HandConfigError, load_hand_config

ENV_VAR = "UNIHM_HAND_CONFIGS"
BUILTIN_DIR = Path(__file__).resolve().parent / "configs"
USER_DIR = Path("~/.config/unihm/hands")


class UnknownHandError(KeyError):
    """No config defines the requested hand type id."""

    def __init__(self, hand_id: str, known: list[str], searched: list[Path]) -> None:
        self.hand_id = hand_id
        close = difflib.get_close_matches(hand_id, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        folders = ", ".join(str(p) for p in searched)
        super().__init__(
            f"unknown hand '{hand_id}'.{hint} Known hands: {', '.join(known)}. "
            f"Configs are read from: {folders} (add a YAML file there, see docs/hands.md).")

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def config_dirs() -> list[Path]:
    return folders.config_dirs(BUILTIN_DIR, USER_DIR, ENV_VAR)


def config_files() -> dict[str, Path]:
    """Hand id -> config file, after the overrides described in the module docstring."""
    return folders.index_configs(config_dirs(), HandConfigError)


def hand_ids() -> list[str]:
    """Every known hand type id, sorted."""
    return sorted(config_files())


def get_hand_config(hand_id: str) -> HandConfig:
    """The validated config of a hand type id."""
    files = config_files()
    if hand_id not in files:
        raise UnknownHandError(hand_id, sorted(files), config_dirs())
    return _load_cached(files[hand_id], files[hand_id].stat().st_mtime_ns)


@cache
def _load_cached(path: Path, _mtime_ns: int) -> HandConfig:
    return load_hand_config(path)
