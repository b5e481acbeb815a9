"""Reading pickles and object arrays from datasets made elsewhere, without running their code.

A pickle can name any importable callable and have it called while loading, so unpickling a file
from the internet is running code from the internet. Some datasets still ship their annotations
as pickles (OakInk) or store dictionaries in ``.npz`` object arrays (UniHM's published captures).
:class:`RestrictedUnpickler` loads those with an allow-list: numpy arrays, dtypes and scalars and
the builtin containers. Anything else (``os.system``, ``torch`` tensors, arbitrary classes, the
persistent ids torch uses) is refused with :class:`UnsafePickleError`, before it is called.
"""

from __future__ import annotations

import _codecs
import collections
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

from unihm_core.dataset.format import DatasetFormatError


class UnsafePickleError(DatasetFormatError):
    """A pickle that needs more than numpy arrays and builtin containers; it was not loaded."""


def _allowed() -> dict[tuple[str, str], Any]:
    """(module, name) -> the object a pickle may refer to. Old and new numpy module paths both
    resolve to numpy 2's objects; nothing is imported by name at load time."""
    from numpy._core import multiarray, numeric

    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs.encode,  # protocol 2 writes bytes as encode(str, latin1)
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for module in ("numpy.core", "numpy._core"):
        table[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of :func:`_allowed` (see the module doc)."""

    def __init__(self, file: IO[bytes], where: str) -> None:
        super().__init__(file, encoding="latin1")  # latin1: numpy arrays pickled by Python 2
        self.where = where
        self._table = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        key = ("builtins", name) if module == "__builtin__" else (module, name)
        if key in self._table:
            return self._table[key]
        raise UnsafePickleError(
            f"{self.where}: the pickle refers to {module}.{name}; only numpy arrays and builtin "
            "containers are accepted from dataset files, so it was not loaded (convert it to "
            "numpy arrays, e.g. tensors with .numpy(), and save it again)")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.where}: the pickle uses persistent ids (torch.save "
                                "files do); only plain numpy/builtin pickles are accepted")


def restricted_loads(data: bytes, where: str) -> Any:
    """Unpickle ``data`` with the allow-list; ``where`` names the source in errors."""
    return _load(io.BytesIO(data), where)


def _load(stream: IO[bytes], where: str) -> Any:
    try:
        return RestrictedUnpickler(stream, where).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{where}: not a readable pickle (truncated or corrupt): "
                                 f"{type(exc).__name__}: {exc}") from exc


def load_pickle(path: str | os.PathLike[str]) -> Any:
    """A pickle file's content, with the allow-list."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: no such file")
    with open(path, "rb") as f:
        return _load(f, str(path))


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> Any:
    with zf.open(info) as f:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise DatasetFormatError(f"{where}: .npy format version {version} is not supported")
        if not dtype.hasobject:
            data = f.read()
            count = int(np.prod(shape, dtype=np.int64))
            if len(data) < count * dtype.itemsize:
                raise DatasetFormatError(f"{where}: truncated array ({len(data)} bytes for "
                                         f"{shape} {dtype})")
            arr = np.frombuffer(data, dtype=dtype, count=count)
            return arr.reshape(shape, order="F" if fortran else "C").copy()
        value = _load(f, where)
    if not isinstance(value, np.ndarray):
        raise DatasetFormatError(f"{where}: object array member holds {type(value).__name__}")
    return value


def load_npz(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Every array of an ``.npz`` file; object arrays go through the restricted unpickler.

    ``np.load(allow_pickle=True)`` would unpickle object arrays with no restriction; this reads
    the zip members itself so that dictionaries and string lists stored by other tools can be
    used without trusting the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: no such file")
    arrays: dict[str, Any] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[:-4]
                arrays[key] = _read_member(zf, info, f"{path} [{key}]")
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, DatasetFormatError):
            raise
        raise DatasetFormatError(f"{path}: not a readable .npz file (truncated or not a zip "
                                 f"of .npy arrays): {exc}") from exc
    return arrays
