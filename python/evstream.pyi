"""Append-only binary event streams and logs on memory-mapped files.

A *stream* is one preallocated file; a *log* is a directory of streams used as rolling
segments, with retention, named cursors and a time index. Times are Unix nanoseconds
(``int``, or another integer type such as numpy's ``int64``) or timezone-aware
``datetime`` objects.

Writers, readers and iterators belong to the process that opened them. In a child made
by ``os.fork()`` every use of an inherited one raises ``Locked`` (open the file again
there; ``path`` still answers), and the child's exit, or its dropping them, runs none of
their destructors: the parent's writer keeps its lock, its readers their segments.
"""

import datetime
import os
import pathlib
from collections.abc import Iterator
from types import TracebackType
from typing import Optional, SupportsIndex, Union, final

import pandas
import pyarrow

__version__: str
__all__ = [
    "__version__",
    "LogWriter",
    "LogReader",
    "LogIterator",
    "LogStat",
    "Lag",
    "StreamWriter",
    "StreamReader",
    "StreamIterator",
    "StreamStat",
    "Event",
    "_count_verified",
    "Error",
    "Io",
    "AlreadyExists",
    "NotAFile",
    "Locked",
    "BadCapacity",
    "BadHeader",
    "Corrupt",
    "NotAStream",
    "DamagedTrailer",
    "NoRoomForTrailer",
    "Sealed",
    "Recovered",
    "ReadersPresent",
    "OutOfOrder",
    "Full",
    "PayloadTooLarge",
    "Poisoned",
    "OffsetOutOfRange",
    "Regressed",
    "NotALog",
    "UnsupportedLogVersion",
    "EventTooLarge",
    "Retired",
    "NoSuchPosition",
    "BadCursor",
    "TimeOutOfRange",
]

_Path = Union[str, "os.PathLike[str]"]
_Time = Union[int, SupportsIndex, datetime.datetime]
_Seconds = Union[int, float, datetime.timedelta]

@final
class Event:
    """One event of a log or a stream file: a value, which pickles and copies (to a
    process pool's workers, for one)."""

    @property
    def timestamp(self) -> int:
        """Unix nanoseconds."""
    @property
    def time(self) -> datetime.datetime:
        """The timestamp as a timezone-aware UTC ``datetime`` (to the microsecond)."""
    @property
    def payload(self) -> bytes: ...
    @property
    def position(self) -> str:
        """``SEGMENT:OFFSET`` in a log; the byte offset in decimal in a stream file."""
    @property
    def next_position(self) -> str:
        """Where the next event starts: what a consumer that processed this one commits."""
    @property
    def offset(self) -> int:
        """The byte offset in the event's segment or stream file."""

@final
class LogStat:
    segments: int
    first_segment: int
    last_segment: int
    events: int
    disk_bytes: int
    first_timestamp: Optional[int]
    last_timestamp: Optional[int]
    start: str
    end: str
    writer_active: bool

@final
class Lag:
    events: int
    bytes: int

@final
class StreamStat:
    capacity: int
    write_offset: int
    events: int
    durable_offset: int
    sealed: bool
    generation: int
    writer_active: bool

@final
class LogIterator(Iterator[Event]):
    def __iter__(self) -> LogIterator: ...
    def __next__(self) -> Event: ...
    @property
    def position(self) -> str:
        """The position of the next event this iterator returns (once an iteration ended at
        ``until``, the first event at or after it, where the next iteration resumes). It
        never waits: while another thread waits in ``__next__`` for new events, the
        position before that wait."""

@final
class StreamIterator(Iterator[Event]):
    def __iter__(self) -> StreamIterator: ...
    def __next__(self) -> Event: ...

@final
class LogWriter:
    """Appends to a log. One writer per log at a time, across processes."""

    @staticmethod
    def create(
        path: _Path,
        segment_size: Optional[int] = None,
        roll: Union[str, _Seconds, None] = None,
        retain_size: Optional[int] = None,
        retain_age: Optional[_Seconds] = None,
        retain_segments: Optional[int] = None,
        retain_past_cursors: bool = False,
    ) -> LogWriter:
        """Creates a log in the new directory ``path``; ``roll`` is ``"hourly"``,
        ``"daily"``, seconds or a ``timedelta``."""
    @staticmethod
    def open(path: _Path) -> LogWriter:
        """Opens a log for appending, repairing what a crash left."""
    def append(self, timestamp_ns: _Time, payload: bytes) -> str:
        """Appends one event; returns its position ``SEGMENT:OFFSET``."""
    def append_now(self, payload: bytes) -> str:
        """Appends one event stamped with the current time; returns its position."""
    def flush(self) -> None:
        """Makes every appended event durable before returning."""
    def close(self) -> None:
        """Flushes and closes the writer."""
    @property
    def end(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def path(self) -> pathlib.Path: ...
    def __enter__(self) -> LogWriter: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@final
class LogReader:
    """Reads a log."""

    @staticmethod
    def open(path: _Path) -> LogReader: ...
    def __iter__(self) -> LogIterator: ...
    def iter(self, since: Optional[_Time] = None, until: Optional[_Time] = None) -> LogIterator:
        """Events from ``since`` (inclusive) to ``until`` (exclusive)."""
    def follow(
        self,
        timeout: Optional[_Seconds] = None,
        since: Optional[_Time] = None,
        position: Union[str, Event, None] = None,
    ) -> LogIterator:
        """Events from ``since``/``position``/the start, then each new one as it is
        appended; ends after ``timeout`` seconds without an event (never if ``None``).
        A ``position`` outside the log's events raises ``NoSuchPosition`` (or ``Retired``,
        in a segment retention deleted) at once; one inside an event, when read."""
    def tail(self, n: int) -> list[Event]: ...
    def stat(self) -> LogStat: ...
    def start_position(self) -> str: ...
    def end(self) -> str: ...
    def cursor(self, name: str) -> Optional[str]: ...
    def iter_cursor(self, name: str) -> LogIterator: ...
    def commit_cursor(self, name: str, position: Union[str, Event]) -> None:
        """Stores ``position`` (an ``Event`` commits the position after it) in cursor
        ``name``, atomically and durably."""
    def lag(self, name: str) -> Optional[Lag]: ...
    def to_arrow(self, since: Optional[_Time] = None, until: Optional[_Time] = None) -> pyarrow.Table:
        """Columns ``timestamp`` (``timestamp[ns, tz=UTC]``), ``position`` (``string``)
        and ``payload`` (``binary``)."""
    def to_pandas(self, since: Optional[_Time] = None, until: Optional[_Time] = None) -> pandas.DataFrame: ...
    @property
    def path(self) -> pathlib.Path: ...

@final
class StreamWriter:
    """Appends to one stream file. One writer per file at a time, across processes."""

    @staticmethod
    def create(path: _Path, capacity: int = ...) -> StreamWriter:
        """Creates the stream file ``path`` with room for ``capacity`` bytes (64 MiB)."""
    @staticmethod
    def open(path: _Path) -> StreamWriter: ...
    def append(self, timestamp_ns: _Time, payload: bytes) -> int:
        """Appends one event; returns its byte offset."""
    def append_now(self, payload: bytes) -> int: ...
    def flush(self) -> None: ...
    def seal(self) -> None:
        """Flushes, then seals the stream: it takes no more events, followers end."""
    def close(self) -> None: ...
    @property
    def end(self) -> int: ...
    @property
    def available(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def path(self) -> pathlib.Path: ...
    def __enter__(self) -> StreamWriter: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@final
class StreamReader:
    """Reads one stream file."""

    @staticmethod
    def open(path: _Path) -> StreamReader: ...
    def __iter__(self) -> StreamIterator: ...
    def iter(self, since: Optional[_Time] = None, until: Optional[_Time] = None) -> StreamIterator: ...
    def follow(
        self,
        timeout: Optional[_Seconds] = None,
        since: Optional[_Time] = None,
        offset: Optional[int] = None,
    ) -> StreamIterator:
        """Events from ``since`` (from the end if every event is earlier)/``offset``/the
        start, then each new one as it is appended, until the stream is sealed or full, or
        ``timeout`` passes without one. An ``offset`` where no event starts raises
        ``OffsetOutOfRange`` when read; a file deleted with no writer left raises ``Io``
        (within 2 s), since no event can come."""
    def tail(self, n: int) -> list[Event]: ...
    def stat(self) -> StreamStat: ...
    def to_arrow(self, since: Optional[_Time] = None, until: Optional[_Time] = None) -> pyarrow.Table: ...
    def to_pandas(self, since: Optional[_Time] = None, until: Optional[_Time] = None) -> pandas.DataFrame: ...
    @property
    def path(self) -> pathlib.Path: ...

def _count_verified(path: _Path) -> int:
    """Counts the events of a log or stream file with the store's verified iterator."""

class Error(Exception):
    """Base class of every error the store reports."""

class Io(Error):
    path: pathlib.Path
    op: str
    errno: Optional[int]

class AlreadyExists(Error):
    path: pathlib.Path

class NotAFile(Error):
    path: pathlib.Path
    kind: str

class Locked(Error):
    """Another writer holds the stream or log, or the object was opened by another
    process (this one was forked from it): open the file again in this process."""

    path: pathlib.Path

class BadCapacity(Error):
    path: pathlib.Path
    capacity: int
    minimum: int
    maximum: int

class BadHeader(Error):
    path: pathlib.Path
    reason: str

class Corrupt(Error):
    path: pathlib.Path
    offset: int
    watermark: int
    reason: str

class NotAStream(Error):
    path: pathlib.Path
    reason: str

class DamagedTrailer(Error):
    path: pathlib.Path
    offset: int

class NoRoomForTrailer(Error):
    path: pathlib.Path
    write_offset: int
    trailer_at: int

class Sealed(Error):
    path: pathlib.Path

class Recovered(Error):
    path: pathlib.Path
    was: int
    now: int

class ReadersPresent(Error):
    path: pathlib.Path

class OutOfOrder(Error):
    previous: int
    got: int

class Full(Error):
    needed: int
    available: int

class PayloadTooLarge(Error):
    len: int

class Poisoned(Error):
    path: pathlib.Path

class OffsetOutOfRange(Error):
    """The offset is outside the published events, or no event starts at it."""

    offset: int
    published: Optional[int]
    """Where the published events end (``None`` when the offset lies inside them)."""

class Regressed(Error):
    path: pathlib.Path
    was: int
    now: int

class NotALog(Error):
    path: pathlib.Path
    reason: str

class UnsupportedLogVersion(Error):
    path: pathlib.Path
    version: int
    supported: int

class EventTooLarge(Error):
    needed: int
    segment_size: int
    largest: int

class Retired(Error):
    position: str
    first_segment: int

class NoSuchPosition(Error):
    """The position is not in the log, or no event starts at it."""

    position: str
    end: Optional[str]
    """The log's end (``None`` when the position lies inside its events)."""

class BadCursor(Error):
    name: str
    reason: str

class TimeOutOfRange(Error):
    unix_nanos: int
