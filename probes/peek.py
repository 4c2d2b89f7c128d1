"""Read the settings inside a checkpoint without torch and without running its code.

`steadytrain report` writes probe specs, and must stay torch-free and safe on a folder of files it
did not make. A checkpoint written by ``torch.save`` is a zip archive whose ``data.pkl`` holds the
nested dicts (hyperparameters, step counters, optimizer param groups) and refers to tensor storages
by key. `read_checkpoint_tree` unpickles that ``data.pkl`` with an unpickler that constructs only
plain containers: a tensor becomes a `TensorStub` (its shape), any class (TrainingArguments, an
enum, Lightning's AttributeDict) becomes a `Record` of its name and state. Nothing in the archive is
imported or called, so reading is safe whatever the file holds. Hand-written because torch's own
``weights_only`` loader needs torch and rejects what it does not allow (TrainingArguments), where the
report wants the values anyway.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer.errors import LogFormatError

#: The data.pkl of a checkpoint larger than this is not a checkpoint's metadata (the tensors are stored apart).
MAX_PICKLE_BYTES = 64 << 20


@dataclass
class TensorStub:
    """A tensor in a checkpoint, by shape only (its bytes are never read)."""

    shape: tuple[int, ...] = ()

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class Record:
    """An object of a class the archive names, as data: ``name`` is module.Class, ``args`` what it was
    constructed with (an enum's value), ``state`` its attributes."""

    def __init__(self, name: str, args: tuple[Any, ...] = (), state: dict[str, Any] | None = None) -> None:
        self.name, self.args, self.state = name, args, dict(state or {})

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict state, slot state)
        if isinstance(state, dict):
            self.state.update({str(k): v for k, v in state.items()})
        else:
            self.state["_value"] = state

    def __repr__(self) -> str:
        return f"Record({self.name}, args={self.args!r}, state keys={sorted(self.state)[:8]})"

    def get(self, key: str, default: Any = None) -> Any:
        return self.state.get(key, default)


def _record_class(name: str) -> type[Record]:
    """A stand-in for the class ``name``: calling it (REDUCE) or its ``__new__`` (NEWOBJ) makes a Record."""

    def new(cls: type[Record], *args: Any, **kwargs: Any) -> Record:
        obj = object.__new__(cls)
        Record.__init__(obj, name, args, kwargs)
        return obj

    def init(self: Record, *args: Any, **kwargs: Any) -> None:
        pass  # __new__ did it

    return type(name.rsplit(".", 1)[-1], (Record,), {"__new__": new, "__init__": init})


def _rebuild_tensor(storage: Any, offset: Any = 0, size: Any = (), *_: Any) -> TensorStub:
    return TensorStub(tuple(int(d) for d in size) if isinstance(size, (tuple, list)) else ())


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    """copyreg._reconstructor (pickle protocols 0-1): make the object of ``cls`` without running anything."""
    return cls.__new__(cls) if isinstance(cls, type) and issubclass(cls, Record) else Record("object")


class _SafeUnpickler(pickle.Unpickler):
    _PLAIN = {("collections", "OrderedDict"): OrderedDict, ("builtins", "set"): set,
              ("builtins", "frozenset"): frozenset, ("builtins", "slice"): slice, ("builtins", "complex"): complex}
    _TENSORS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                "_rebuild_parameter_with_state", "_rebuild_device_tensor_from_numpy", "_rebuild_qtensor")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._PLAIN:
            return self._PLAIN[(module, name)]
        if module == "_codecs" and name == "encode":  # protocol 2 spells bytes as codecs.encode(str, 'latin1')
            return lambda text, encoding="utf-8": text.encode(encoding)
        if module == "copyreg" and name == "_reconstructor":
            return _reconstructor
        if module == "torch._utils" and name in self._TENSORS:
            return _rebuild_tensor
        return _record_class(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        return None  # a tensor's storage: never read


def _pickle_bytes(path: Path) -> bytes:
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                if not names:
                    raise LogFormatError("a zip archive without data.pkl: not a torch checkpoint")
                info = archive.getinfo(min(names, key=len))
                if info.file_size > MAX_PICKLE_BYTES:
                    raise LogFormatError(f"its data.pkl is {info.file_size:,} bytes: not a checkpoint's metadata")
                return archive.read(info)
        with open(path, "rb") as fh:
            head = fh.read(MAX_PICKLE_BYTES + 1)
    except (OSError, zipfile.BadZipFile) as exc:
        raise LogFormatError(f"cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    if len(head) > MAX_PICKLE_BYTES or not head[:1] == b"\x80":
        raise LogFormatError("not a torch.save checkpoint (neither a zip archive nor a pickle)")
    return head


def read_checkpoint_tree(path: str | Path) -> Any:
    """The object a ``torch.save`` file holds, as plain dicts/lists with `TensorStub` and `Record` leaves.

    LogFormatError (one line) when the file is not such a checkpoint. The legacy (pre-1.6, non-zip)
    format puts tensors after the pickle: its first pickle (the metadata) is what is read then.
    """
    raw = _pickle_bytes(Path(path))
    try:
        return _SafeUnpickler(io.BytesIO(raw)).load()
    except LogFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed pickle is that file's problem, said in one line
        raise LogFormatError(f"its pickle cannot be read ({type(exc).__name__}: {exc})") from None


def plain(value: Any, depth: int = 0) -> Any:
    """A tree from `read_checkpoint_tree` with Records of settings folded to dicts and enums to values
    (for reading hyperparameters: TrainingArguments -> its fields, SchedulerType.LINEAR -> "linear")."""
    if depth > 20:
        return None
    if isinstance(value, Record):
        if value.args and not value.state:
            return plain(value.args[0], depth + 1) if len(value.args) == 1 else [plain(a, depth + 1) for a in value.args]
        return {str(k): plain(v, depth + 1) for k, v in value.state.items()}
    if isinstance(value, dict):
        return {k: plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    return value
