"""Preference records and a JSONL file that never loses a click.

A *preference record* says: for this ``prompt``, the rater preferred ``chosen`` over
``rejected``. One record is one JSON object on one line of a ``.jsonl`` file::

    {"prompt": "...", "chosen": "...", "rejected": "...", "rater": "ana",
     "time": "2025-01-01T12:00:00.000+00:00", "tie": false, "source": null,
     "shown_first": "rejected", "seconds": 4.2}

The keys ``prompt`` / ``chosen`` / ``rejected`` are exactly TRL's standard preference
format (what ``DPOTrainer``, ``RewardTrainer`` and ``datasets.Dataset.from_list`` read),
so the file *is* a TRL dataset; the other keys are metadata. A *tie* (``"tie": true``)
keeps the two responses in the order they were shown: ``chosen`` = A, ``rejected`` = B.
A *score record* (``ScoreRecord``) holds one 1-5 score of one response instead.

How the files are kept safe (notebook 02's rating widget writes them click by click):

* ``PreferenceStore.append`` writes one line and calls ``os.fsync``: once it returns, the
  click is on disk, even if the kernel dies right after. Appends never rewrite the file.
* If a crash left a half-written last line, the next append starts on a fresh line, so the
  new record is never glued onto the broken one.
* ``undo`` / ``undo_last`` remove only a line this store wrote (never another writer's, never a
  line it cannot read), through a temporary file in the same folder and ``os.replace``, so the
  file is either the old one or the new one, never half of each.
* Appends and undos hold an exclusive lock (``fcntl.flock`` on the folder; no lock on Windows),
  so several kernels or processes can share one file (a classroom's, a synced folder's).

How reading treats odd input (``read_preferences`` / ``read_scores``):

* blank lines are skipped; an empty file gives ``[]``; a missing file raises
  ``FileNotFoundError`` saying where it looked;
* a line that is not JSON, not an object, misses a field or has a wrong type raises
  ``PreferenceFileError`` whose message reads ``path:line: what is wrong``. With
  ``strict=False`` each such problem becomes a warning instead and every valid record
  is still returned. A broken *last* line is reported as a truncated write (a crash);
* unknown extra keys are ignored; a missing ``rater`` reads as ``"unknown"`` and a
  missing ``time`` as ``""`` (unknown), so files from elsewhere load;
* duplicates are kept as they are (a rater who clicked the same pair twice said so twice);
  ``deduplicate`` removes them when you want to. Ties are kept with ``tie=True``;
  ``to_trl`` leaves them out unless ``include_ties=True``.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock (see _locked)
    fcntl = None


def utc_now() -> str:
    """The current time as ISO-8601 UTC with milliseconds, e.g. ``2025-01-01T12:00:00.000+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class DataFileError(ValueError):
    """A bad line in one of the course's data files. ``str(err)`` reads ``path:line: message``."""

    def __init__(self, path: str | os.PathLike, line_no: int, message: str):
        self.path, self.line_no, self.message = str(path), line_no, message
        super().__init__(f"{self.path}:{line_no}: {message}")


class PreferenceFileError(DataFileError):
    """A bad line in a preference or score file."""


class PreferenceFileWarning(UserWarning):
    """A bad line skipped by ``read_preferences(..., strict=False)`` (or ``read_scores``)."""


def _check_fields(d: Any, types: dict[str, tuple[type, ...]], required: Sequence[str]) -> None:
    """Raise ValueError naming the first missing field or field of the wrong type."""
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object, got {type(d).__name__}")
    for name in required:
        if name not in d:
            raise ValueError(f"missing field {name!r}")
    for name, allowed in types.items():
        if name in d and not isinstance(d[name], allowed):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise ValueError(f"field {name!r} must be {want}, got {type(d[name]).__name__}: {d[name]!r:.60}")


def _check_seconds(seconds: Any) -> None:
    if seconds is not None and (isinstance(seconds, bool) or not 0 <= seconds < float("inf")):
        raise ValueError(f"field 'seconds' must be a number >= 0 or null, got {seconds!r:.60}")


@dataclass
class PreferenceRecord:
    """One pairwise judgement: for ``prompt``, ``chosen`` was preferred over ``rejected``."""
    prompt: str                      # the user message both responses answer
    chosen: str                      # the preferred response (for a tie: response A as shown)
    rejected: str                    # the other response (for a tie: response B as shown)
    rater: str = "simulated"         # who judged: a person's name, or "simulated"
    time: str = field(default_factory=utc_now)  # ISO-8601 UTC time of the click
    tie: bool = False                # True when the rater found A and B equally good
    source: str | None = None        # optional: where the pair came from (e.g. "candidates", "policy step 40")
    shown_first: str | None = None   # which reply was shown first (as A): "chosen", "rejected", or None (unknown)
    seconds: float | None = None     # seconds the pair was on screen before the click (None: unknown)

    TYPES = {"prompt": (str,), "chosen": (str,), "rejected": (str,), "rater": (str,),
             "time": (str,), "tie": (bool,), "source": (str, type(None)),
             "shown_first": (str, type(None)), "seconds": (int, float, type(None))}
    REQUIRED = ("prompt", "chosen", "rejected")

    def __post_init__(self) -> None:
        _check_fields(asdict(self), self.TYPES, self.REQUIRED)
        if self.shown_first not in (None, "chosen", "rejected"):
            raise ValueError(f"field 'shown_first' must be 'chosen', 'rejected' or null, got {self.shown_first!r:.60}")
        _check_seconds(self.seconds)

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (the line written to the file)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreferenceRecord":
        """Build a record from a dict; ValueError names a missing or mistyped field.

        Unknown keys are ignored; a missing ``rater`` becomes ``"unknown"`` and a missing
        ``time`` becomes ``""``.
        """
        _check_fields(d, cls.TYPES, cls.REQUIRED)
        names = {f.name for f in fields(cls)}
        kwargs = {"rater": "unknown", "time": ""} | {k: v for k, v in d.items() if k in names}
        return cls(**kwargs)


@dataclass
class ScoreRecord:
    """One absolute judgement: ``response`` to ``prompt`` got ``score`` from 1 (bad) to 5 (great)."""
    prompt: str                      # the user message
    response: str                    # the response that was scored
    score: int                       # 1..5
    rater: str = "simulated"         # who scored it
    time: str = field(default_factory=utc_now)  # ISO-8601 UTC time of the click
    source: str | None = None        # optional: where the response came from
    seconds: float | None = None     # seconds the response was on screen before the click (None: unknown)

    TYPES = {"prompt": (str,), "response": (str,), "score": (int,), "rater": (str,),
             "time": (str,), "source": (str, type(None)), "seconds": (int, float, type(None))}
    REQUIRED = ("prompt", "response", "score")

    def __post_init__(self) -> None:
        _check_fields(asdict(self), self.TYPES, self.REQUIRED)
        if isinstance(self.score, bool) or not 1 <= self.score <= 5:
            raise ValueError(f"field 'score' must be an integer from 1 to 5, got {self.score!r}")
        _check_seconds(self.seconds)

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (the line written to the file)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScoreRecord":
        """Build a record from a dict (same rules as ``PreferenceRecord.from_dict``)."""
        _check_fields(d, cls.TYPES, cls.REQUIRED)
        names = {f.name for f in fields(cls)}
        kwargs = {"rater": "unknown", "time": ""} | {k: v for k, v in d.items() if k in names}
        return cls(**kwargs)


R = TypeVar("R", PreferenceRecord, ScoreRecord)


# ----------------------------------------------------------------------------- reading
def _read_records(path: str | os.PathLike, record_type: type[R], strict: bool) -> list[R]:
    """Parse a JSONL file of ``record_type``; see the module docstring for the rules."""
    p = Path(path)
    if not p.exists():
        kind = "preference" if record_type is PreferenceRecord else "score"
        raise FileNotFoundError(f"{path}: no {kind} file here (absolute: {p.resolve()}). "
                                "Rate a few pairs first (notebook 02) or check the path.")
    raw = p.read_bytes()
    lines = raw.split(b"\n")
    ends_cleanly = raw.endswith(b"\n") or not raw
    last_no = max((i for i, line in enumerate(lines, 1) if line.strip()), default=0)
    records: list[R] = []
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            try:
                obj = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise ValueError(f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
            except json.JSONDecodeError as e:
                if line_no == last_no and not ends_cleanly:
                    raise ValueError("last line is incomplete: a write was cut off (crash or kernel "
                                     "restart while saving?). Use strict=False to skip it, or delete "
                                     "the line") from None
                raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
            records.append(record_type.from_dict(obj))
        except (ValueError, TypeError) as e:
            err = PreferenceFileError(path, line_no, str(e))
            if strict:
                raise err from None
            warnings.warn(f"skipped {err}", PreferenceFileWarning, stacklevel=3)
    return records


def read_preferences(path: str | os.PathLike, *, strict: bool = True) -> list[PreferenceRecord]:
    """Read a preference JSONL file. ``strict=False`` warns about bad lines and skips them."""
    return _read_records(path, PreferenceRecord, strict)


def read_scores(path: str | os.PathLike, *, strict: bool = True) -> list[ScoreRecord]:
    """Read a score JSONL file. ``strict=False`` warns about bad lines and skips them."""
    return _read_records(path, ScoreRecord, strict)


# ----------------------------------------------------------------------------- writing
def _fsync_dir(folder: Path) -> None:
    """Make a new or renamed directory entry durable (a no-op where the OS does not allow it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file in the same folder, fsync, ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file owner-only; keep the old file's mode, or what the umask gives a new file
        if path.exists():
            mode = path.stat().st_mode & 0o777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def _locked(path: Path, shared: bool = False):
    """Hold an exclusive (or shared) lock for the file ``path`` while the block runs.

    The lock is ``fcntl.flock`` on the file's *folder*, not on the file: ``undo`` replaces the file with a
    new one (``os.replace``), and a writer waiting on the old file's lock would then write into a file that
    is no longer there. The folder stays the same object, so every writer of the store, in any process,
    waits for the others. Where ``fcntl`` does not exist (Windows) or the file system refuses locks (some
    network and FUSE mounts), nothing is locked: there, let one process at a time write a given file.
    """
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. a folder we may not open
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        except OSError:  # pragma: no cover - a file system without locks
            pass
        yield
    finally:
        os.close(fd)   # closing the descriptor releases the lock


def _refuse_read_only(target: Path, shown: Path, what: str) -> None:
    """PermissionError if the file is read-only: not writable by us, or write-protected for everyone (even
    for root, who could write it anyway: a file someone made read-only is meant to stay as it is)."""
    if not os.access(target, os.W_OK) or not target.stat().st_mode & 0o222:
        raise PermissionError(f"{shown}: the file is read-only; {what}")


class PreferenceStore:
    """An append-only JSONL file of ``PreferenceRecord`` (``ScoreStore``: of ``ScoreRecord``).

    >>> store = PreferenceStore(ARTIFACTS / "ratings.jsonl")
    >>> store.append(PreferenceRecord("Hi?", "Hello! Happy to help.", "Whatever.", rater="ana"))
    >>> len(store), store.undo_last()

    Safe to share: several widgets, kernels or processes may append to one file at once. ``append`` and
    ``undo`` hold an exclusive lock (see ``_locked``), so an undo never overwrites a line appended
    meanwhile. A store only ever removes lines *it* wrote (``undo``, ``undo_last``): another writer's
    lines, lines from before this store existed, and lines it cannot read are never deleted. ``~`` in the
    path is expanded, and a symlinked file (say, to a synced folder) is written through the link.
    """
    record_type: type = PreferenceRecord

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self._written: list[bytes] = []   # the lines this store appended and has not undone, oldest first

    def _target(self) -> Path:
        """The real file: symlinks resolved, so that a rewrite replaces the target, never the link."""
        return self.path.resolve() if self.path.is_symlink() else self.path

    def _line(self, record: PreferenceRecord | ScoreRecord) -> bytes:
        if not isinstance(record, self.record_type):
            raise TypeError(f"{type(self).__name__} stores {self.record_type.__name__}, "
                            f"got {type(record).__name__}")
        return json.dumps(record.to_dict(), ensure_ascii=False).encode("utf-8")

    def append(self, record: PreferenceRecord | ScoreRecord) -> None:
        """Write one record as one line and fsync: on disk when this returns (parent dirs created)."""
        line = self._line(record)
        target = self._target()
        target.parent.mkdir(parents=True, exist_ok=True)
        with _locked(target):
            is_new = not target.exists()
            if not is_new:
                _refuse_read_only(target, self.path, "nothing written")
            with open(target, "a+b") as f:
                data = line + b"\n"
                size = f.seek(0, os.SEEK_END)
                if size:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":   # a crash left a half line: start a fresh one
                        data = b"\n" + data
                f.write(data)                # "a" mode: always written at the end
                f.flush()
                os.fsync(f.fileno())
            if is_new:
                _fsync_dir(target.parent)
        self._written.append(line)

    def records(self, strict: bool = False) -> list:
        """All records in file order ([] when the file does not exist yet); bad lines warn and are skipped."""
        target = self._target()
        if not target.exists():
            return []
        with _locked(target, shared=True):
            return _read_records(self.path, self.record_type, strict)

    def __len__(self) -> int:
        return len(self.records())

    def undo(self, record: PreferenceRecord | ScoreRecord) -> PreferenceRecord | ScoreRecord:
        """Remove ``record``, which this store appended, from the file and return it.

        Removes the last line that is exactly this record; every other line is kept byte for byte, including
        lines other writers appended after it. Atomic (temp file + ``os.replace``, under the store's lock).
        Refuses with ``RuntimeError`` (the file unchanged) if this store did not write the record or the line
        is no longer in the file, and with ``PermissionError`` if the file is read-only, as ``append`` does.
        """
        line = self._line(record)
        if line not in self._written:
            raise RuntimeError(f"not undone: {self.path} has no line that this {type(self).__name__} wrote for "
                               f"this record (a store only removes its own lines; edit the file to remove others)")
        target = self._target()
        with _locked(target):
            if not target.exists():
                raise RuntimeError(f"not undone: {self.path} does not exist any more")
            _refuse_read_only(target, self.path, "not undone")
            lines = target.read_bytes().split(b"\n")
            hits = [k for k, text in enumerate(lines) if text.rstrip(b"\r") == line]
            if not hits:
                raise RuntimeError(f"not undone: the record is no longer in {self.path} (removed by someone else?)")
            del lines[hits[-1]]
            _atomic_write(target, b"\n".join(lines))
        del self._written[len(self._written) - 1 - self._written[::-1].index(line)]
        return record

    def undo_last(self) -> PreferenceRecord | ScoreRecord | None:
        """Remove the last record this store appended (and has not undone yet) and return it.

        None if this store has written nothing (a store made after a kernel restart has not): records
        written by others, or before, are never removed. See ``undo``.
        """
        if not self._written:
            return None
        record = self.record_type.from_dict(json.loads(self._written[-1].decode("utf-8")))
        return self.undo(record)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class ScoreStore(PreferenceStore):
    """An append-only JSONL file of ``ScoreRecord`` (1-5 scores); same guarantees as ``PreferenceStore``."""
    record_type = ScoreRecord


# ----------------------------------------------------------------------------- helpers
def _pair_key(r: PreferenceRecord) -> tuple:
    """Records with the same key are duplicates; a tie's A/B order does not matter."""
    pair = tuple(sorted((r.chosen, r.rejected))) if r.tie else (r.chosen, r.rejected)
    return (r.prompt, *pair, r.rater, r.tie)


def deduplicate(records: Iterable[PreferenceRecord]) -> list[PreferenceRecord]:
    """Keep the first of records with the same prompt, chosen, rejected, rater and tie flag.

    The same pair judged both ways (A>B and B>A) is *not* a duplicate: that is rater noise,
    and a reward model should see both.
    """
    seen: set[tuple] = set()
    out = []
    for r in records:
        key = _pair_key(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def pool_files(sources: str | os.PathLike | Iterable[str | os.PathLike], *, scores: bool = False,
               pattern: str = "*.jsonl") -> list:
    """A classroom's ratings in one list: every record of every file, each keeping its ``rater``.

    ``sources``: files, or folders (each gives its ``pattern`` files, sorted by name), or one of either.
    Records are read leniently (a bad line warns and is skipped, as ``records()`` does). The same click
    found twice (a file handed in twice, or copied into two folders: equal in every field, time
    included) is kept once; a rater who judged a pair twice at two times said so twice and keeps both.
    A record without a rater (``"unknown"``) is named after its file, e.g. ``ana.jsonl`` -> ``"ana"``.
    ``scores=True`` pools 1-5 score files (``ScoreRecord``) instead of preference files.
    Raises FileNotFoundError if a source does not exist or a folder holds no ``pattern`` file.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    files: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.glob(pattern) if p.is_file())
            if not found:
                raise FileNotFoundError(f"{source}: no {pattern} file in this folder")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"{source}: no such file or folder (absolute: {path.resolve()})")
    record_type = ScoreRecord if scores else PreferenceRecord
    seen: set[str] = set()
    pooled = []
    for path in files:
        for r in _read_records(path, record_type, strict=False):
            if r.rater == "unknown":
                r.rater = path.stem
            key = json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False)
            if key not in seen:
                seen.add(key)
                pooled.append(r)
    return pooled


def pair_choices(records: Iterable[PreferenceRecord], pairs: Sequence[tuple[Any, str, str]]) -> list[str | None]:
    """Per pair ``(prompt, a, b)``: ``"A"``, ``"B"`` or ``"tie"`` as the latest record about it says (the
    record's side order does not matter), None if no record is about it. ``prompt`` may be a text or a
    ``world.Prompt``."""
    latest = {(r.prompt, frozenset((r.chosen, r.rejected))): r for r in records}
    out: list[str | None] = []
    for prompt, a, b in pairs:
        r = latest.get((getattr(prompt, "text", prompt), frozenset((a, b))))
        out.append(None if r is None else "tie" if r.tie else "A" if r.chosen == a else "B")
    return out


def to_trl(records: Iterable[PreferenceRecord], include_ties: bool = False,
           metadata: bool = True, framed: bool = False, tokenizer: Any = None) -> list[dict[str, Any]]:
    """Records as TRL's standard preference rows ``{"prompt", "chosen", "rejected", ...}``.

    Ready for ``datasets.Dataset.from_list`` and TRL's ``DPOTrainer`` / ``RewardTrainer``.
    Ties are left out unless ``include_ties`` (a trainer would read a tie as A preferred).
    ``metadata=True`` adds ``rater``, ``time``, ``tie``, ``source`` so ``from_trl`` restores
    the records exactly; ``metadata=False`` gives the three TRL keys only.
    ``framed=True`` writes the texts as the course's models see them, ``models.format_prompt(prompt)``
    (``"User: ...\nAssistant:"``) and ``models.format_response(reply)``, so that TRL, which joins
    prompt + reply, trains the tiny policy on exactly the tokens notebook 07's DPO uses. Such a file is
    for a trainer: read back as records, its texts keep the frame. With a ``tokenizer`` that has a chat template,
    ``framed=True`` writes TRL's *conversational* format instead (``prompt`` a list with the user's message,
    ``chosen`` / ``rejected`` lists with the assistant's), and TRL applies that template itself, as the course's
    models read it (``models.format_prompt(prompt, tokenizer)``).
    """
    if framed:
        from rlhf_lab.models import format_prompt, format_response, has_chat_template
    rows = []
    for r in records:
        if r.tie and not include_ties:
            continue
        row = r.to_dict() if metadata else {"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected}
        if framed and has_chat_template(tokenizer):   # TRL's conversational format: TRL applies the template
            row.update(prompt=[{"role": "user", "content": r.prompt.strip()}],
                       chosen=[{"role": "assistant", "content": r.chosen.strip()}],
                       rejected=[{"role": "assistant", "content": r.rejected.strip()}])
        elif framed:
            row.update(prompt=format_prompt(r.prompt), chosen=format_response(r.chosen),
                       rejected=format_response(r.rejected))
        rows.append(row)
    return rows


def from_trl(rows: Iterable[dict[str, Any]]) -> list[PreferenceRecord]:
    """TRL preference rows back to records (the inverse of ``to_trl(records, include_ties=True)``)."""
    return [PreferenceRecord.from_dict(dict(row)) for row in rows]


def write_trl_jsonl(path: str | os.PathLike, records: Iterable[PreferenceRecord],
                    include_ties: bool = False, metadata: bool = True, framed: bool = False,
                    tokenizer: Any = None) -> Path:
    """Write ``to_trl(records, ...)`` as JSONL atomically (all or nothing); returns the path.

    The file reads back with ``read_preferences`` or ``datasets.load_dataset("json", data_files=...)``.
    """
    rows = to_trl(records, include_ties=include_ties, metadata=metadata, framed=framed, tokenizer=tokenizer)
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    _atomic_write(Path(path), data)
    return Path(path)
