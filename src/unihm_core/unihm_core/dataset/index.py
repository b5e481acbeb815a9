"""A dataset folder: ``index.json`` (entries, splits, provenance) + ``sequences/<id>.npz``.

The index lets trainers pick a split and count tasks, objects and hands without opening every
sequence file. Splits are by object (``unseen`` holds whole objects out, so a test can ask how
the model does on shapes it never saw) and, among the seen objects, a random ``test`` fraction.
Unseen phrasings need no split of their own: every record carries a held-out paraphrase set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unihm_core.dataset.format import (
    SEQUENCE_SUFFIX,
    DatasetFormatError,
    SequenceRecord,
    load_sequence,
    save_sequence,
)

INDEX_FORMAT = "unihm-hoi-index"
INDEX_VERSION = 1
INDEX_FILE = "index.json"
SEQUENCE_DIR = "sequences"
SPLITS = ("train", "test", "unseen")
SPLIT_CHOICES = (*SPLITS, "all")


@dataclass(frozen=True)
class IndexEntry:
    """What the index knows about one sequence without opening it."""

    id: str
    file: str
    object_id: str
    task: str
    num_frames: int
    hands: tuple[str, ...]
    source: str = "synthetic"

    @classmethod
    def of(cls, record: SequenceRecord, file: str) -> IndexEntry:
        return cls(record.sequence_id, file, record.object_id, record.task, record.num_frames,
                   record.hand_ids, record.source)


def make_splits(entries: Sequence[IndexEntry], unseen_objects: Iterable[str] = (),
                test_fraction: float = 0.1, seed: int = 0) -> dict[str, list[str]]:
    """Split by object (``unseen``), then a seeded random ``test`` share of the rest."""
    if not 0.0 <= test_fraction < 1.0:
        raise DatasetFormatError(f"test fraction must be in [0, 1), got {test_fraction}")
    unseen = set(unseen_objects)
    known = {e.object_id for e in entries}
    missing = unseen - known
    if missing:
        raise DatasetFormatError(f"unseen objects {sorted(missing)} are not in the dataset "
                                 f"(objects: {sorted(known)})")
    held = [e.id for e in entries if e.object_id in unseen]
    seen = sorted(e.id for e in entries if e.object_id not in unseen)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(seen))
    n_test = round(test_fraction * len(seen))
    test = sorted(seen[i] for i in order[:n_test])
    train = sorted(seen[i] for i in order[n_test:])
    return {"train": train, "test": test, "unseen": sorted(held)}


@dataclass
class DatasetIndex:
    """The parsed ``index.json``."""

    entries: list[IndexEntry] = field(default_factory=list)
    splits: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    unseen_objects: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": INDEX_FORMAT, "version": INDEX_VERSION,
                "entries": [asdict(e) | {"hands": list(e.hands)} for e in self.entries],
                "splits": self.splits, "unseen_objects": self.unseen_objects,
                "provenance": self.provenance}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> DatasetIndex:
        if data.get("format") != INDEX_FORMAT:
            raise DatasetFormatError(f"{where}: not a {INDEX_FORMAT} file")
        version = data.get("version")
        if not isinstance(version, int) or not 1 <= version <= INDEX_VERSION:
            raise DatasetFormatError(f"{where}: index version {version!r}; this reader knows "
                                     f"1..{INDEX_VERSION}")
        try:
            entries = [IndexEntry(**(e | {"hands": tuple(e["hands"])})) for e in data["entries"]]
            splits = {s: list(data["splits"].get(s, [])) for s in SPLITS}
        except (KeyError, TypeError) as exc:
            raise DatasetFormatError(f"{where}: malformed entry or splits: {exc}") from exc
        ids = {e.id for e in entries}
        if len(ids) != len(entries):
            raise DatasetFormatError(f"{where}: duplicate sequence ids")
        for split, members in splits.items():
            unknown = [m for m in members if m not in ids]
            if unknown:
                raise DatasetFormatError(f"{where}: split {split!r} lists unknown sequences "
                                         f"{unknown[:3]}")
        return cls(entries, splits, list(data.get("unseen_objects", [])),
                   dict(data.get("provenance", {})))


class Dataset:
    """Read access to a dataset folder; :class:`DatasetWriter` builds one."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        path = self.root / INDEX_FILE
        if not path.is_file():
            raise DatasetFormatError(f"{self.root}: no {INDEX_FILE}; not a dataset folder "
                                     "(create one with `unihm data synth` or `unihm data import`)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetFormatError(f"{path}: not JSON: {exc}") from exc
        self.index = DatasetIndex.from_json(data, str(path))
        self._by_id = {e.id: e for e in self.index.entries}

    def __len__(self) -> int:
        return len(self.index.entries)

    @property
    def entries(self) -> list[IndexEntry]:
        return self.index.entries

    @property
    def hands(self) -> tuple[str, ...]:
        """Every hand id that occurs in some sequence, in first-seen order."""
        return tuple(dict.fromkeys(h for e in self.index.entries for h in e.hands))

    def ids(self, split: str = "all") -> list[str]:
        if split == "all":
            return [e.id for e in self.index.entries]
        if split not in SPLITS:
            raise DatasetFormatError(f"unknown split {split!r}; choose one of {SPLIT_CHOICES}")
        return list(self.index.splits[split])

    def entry(self, sequence_id: str) -> IndexEntry:
        if sequence_id not in self._by_id:
            raise DatasetFormatError(f"{self.root}: no sequence {sequence_id!r}")
        return self._by_id[sequence_id]

    def load(self, sequence_id: str | int) -> SequenceRecord:
        """A sequence by id, or by position in the index."""
        if isinstance(sequence_id, int):
            if not -len(self) <= sequence_id < len(self):
                raise DatasetFormatError(f"{self.root}: sequence number {sequence_id} out of "
                                         f"range (the dataset has {len(self)})")
            sequence_id = self.index.entries[sequence_id].id
        return load_sequence(self.root / self.entry(sequence_id).file)

    def records(self, split: str = "all") -> Iterator[SequenceRecord]:
        for sequence_id in self.ids(split):
            yield self.load(sequence_id)

    def write_index(self) -> None:
        write_index(self.root, self.index)


def write_index(root: str | os.PathLike[str], index: DatasetIndex) -> Path:
    """Write ``index.json`` atomically (an interrupted write keeps the previous index)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / INDEX_FILE
    tmp = root / f".{INDEX_FILE}.partial"
    tmp.write_text(json.dumps(index.to_json(), indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return path


class DatasetWriter:
    """Adds sequences to a folder and writes the index (call :meth:`close`, or use ``with``).

    The index is rewritten every ``flush_every`` sequences, so an interrupted build keeps
    everything written so far as a usable dataset.
    """

    def __init__(self, root: str | os.PathLike[str], *, overwrite: bool = False,
                 flush_every: int = 50) -> None:
        self.root = Path(root)
        if (self.root / INDEX_FILE).exists() and not overwrite:
            raise DatasetFormatError(f"{self.root} already holds a dataset; choose another "
                                     "folder or pass overwrite")
        (self.root / SEQUENCE_DIR).mkdir(parents=True, exist_ok=True)
        self.index = DatasetIndex()
        self._ids: set[str] = set()
        self.flush_every = flush_every
        self._split_args: tuple[list[str], float, int] = ([], 0.1, 0)

    def add(self, record: SequenceRecord) -> IndexEntry:
        if record.sequence_id in self._ids:
            raise DatasetFormatError(f"duplicate sequence id {record.sequence_id!r}")
        rel = f"{SEQUENCE_DIR}/{record.sequence_id}{SEQUENCE_SUFFIX}"
        save_sequence(record, self.root / rel)
        return self.register(IndexEntry.of(record, rel))

    def register(self, entry: IndexEntry) -> IndexEntry:
        """Index a sequence file already written under the folder (by a worker process)."""
        if entry.id in self._ids:
            raise DatasetFormatError(f"duplicate sequence id {entry.id!r}")
        if not (self.root / entry.file).is_file():
            raise DatasetFormatError(f"{self.root / entry.file}: not written")
        self.index.entries.append(entry)
        self._ids.add(entry.id)
        if len(self.index.entries) % self.flush_every == 0:
            self.flush()
        return entry

    def set_splits(self, unseen_objects: Iterable[str] = (), test_fraction: float = 0.1,
                   seed: int = 0) -> None:
        """How :meth:`flush` splits (recomputed at every flush, so late sequences are split too)."""
        if not 0.0 <= test_fraction < 1.0:
            raise DatasetFormatError(f"test fraction must be in [0, 1), got {test_fraction}")
        self._split_args = (sorted(set(unseen_objects)), test_fraction, seed)

    def flush(self) -> None:
        unseen, test_fraction, seed = self._split_args
        present = sorted(set(unseen) & {e.object_id for e in self.index.entries})
        self.index.splits = make_splits(self.index.entries, present, test_fraction, seed)
        self.index.unseen_objects = list(unseen)
        write_index(self.root, self.index)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
