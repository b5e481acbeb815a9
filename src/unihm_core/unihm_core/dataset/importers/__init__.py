"""Importers: hand-object captures from elsewhere -> a UniHM dataset folder.

Each format has ``import_<fmt>(src, out, *, hands=None, fps=None, seed=0, progress=None,
on_error="raise", overwrite=False, ...)`` returning an :class:`ImportReport`; ``run_import``
picks one by name (``unihm data import FORMAT SRC --out DIR``). Human captures (``human21``,
``dexycb``, ``oakink``) are retargeted to every requested hand, by default every registry hand
of the capture's side plus the gripper; ``unihm_npz`` keeps the robot motion UniHM published.

Common options: ``hands`` (hand ids), ``fps`` (resample to this rate; default: the source's),
``seed`` (surface sampling and instruction choice), ``progress(done, total)`` after each source
item, ``on_error`` ("raise": stop at the first bad item with a
:class:`~unihm_core.dataset.format.DatasetFormatError` naming the file; "skip": report it and go
on), ``overwrite`` (replace a dataset already in ``out``). Layouts: docs/dataset_importers.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from unihm_core.dataset.importers.common import (
    ImportReport,
    ImportSkip,
    ProgressFn,
    UnknownFormatError,
)
from unihm_core.dataset.importers.dexycb import import_dexycb
from unihm_core.dataset.importers.human21 import import_human21
from unihm_core.dataset.importers.oakink import import_oakink
from unihm_core.dataset.importers.safe_pickle import UnsafePickleError
from unihm_core.dataset.importers.unihm_npz import import_unihm_npz

Importer = Callable[..., ImportReport]
IMPORTERS: dict[str, Importer] = {
    "human21": import_human21,
    "unihm_npz": import_unihm_npz,
    "dexycb": import_dexycb,
    "oakink": import_oakink,
}


def describe_formats() -> dict[str, str]:
    """Format name -> one line (the importer's docstring summary), for help texts."""
    return {name: (fn.__doc__ or "").strip().splitlines()[0] for name, fn in IMPORTERS.items()}


def run_import(fmt: str, src: str | os.PathLike[str], out: str | os.PathLike[str],
               **kwargs: Any) -> ImportReport:
    """Import ``src`` in format ``fmt`` into the dataset folder ``out`` (see module doc)."""
    if fmt not in IMPORTERS:
        raise UnknownFormatError(f"unknown import format {fmt!r}; known: "
                                 f"{', '.join(IMPORTERS)}")
    return IMPORTERS[fmt](src, out, **kwargs)


__all__ = ["IMPORTERS", "ImportReport", "ImportSkip", "ProgressFn", "UnknownFormatError",
           "UnsafePickleError", "describe_formats", "import_dexycb", "import_human21",
           "import_oakink", "import_unihm_npz", "run_import"]
