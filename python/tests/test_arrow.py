"""Columnar replay: `to_arrow` and `to_pandas`."""

import datetime
import gc
import os
import pathlib
import resource
import tempfile

import pyarrow as pa
import pytest

import evstream

BASE = 1_700_000_000_000_000_000


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "log"
    with evstream.LogWriter.create(path, segment_size=32 << 10) as writer:
        for i in range(3000):
            writer.append(BASE + i * 1000, b"event %d" % i + b"\x00\xff" * (i % 7))
    return path


def test_to_arrow_holds_every_event_with_its_columns_and_types(log):
    reader = evstream.LogReader.open(log)
    table = reader.to_arrow()
    assert table.schema == pa.schema(
        [("timestamp", pa.timestamp("ns", tz="UTC")), ("position", pa.string()), ("payload", pa.binary())]
    )
    table.validate(full=True)
    events = list(reader)
    assert table.num_rows == len(events) == 3000
    assert table.column("timestamp").cast(pa.int64()).to_pylist() == [e.timestamp for e in events]
    assert table.column("position").to_pylist() == [e.position for e in events]
    assert table.column("payload").to_pylist() == [e.payload for e in events]


def test_to_arrow_takes_since_and_until(log):
    reader = evstream.LogReader.open(log)
    table = reader.to_arrow(since=BASE + 1000 * 1000, until=BASE + 1000 * 1010)
    assert table.column("payload").to_pylist()[0].startswith(b"event 1000\x00")
    assert table.num_rows == 10
    since = datetime.datetime.fromtimestamp(BASE // 10**9 + 1, tz=datetime.timezone.utc)
    assert reader.to_arrow(since=since).num_rows == 0
    assert reader.to_arrow(until=BASE).num_rows == 0


def test_the_table_outlives_the_reader_and_the_log(log):
    table = evstream.LogReader.open(log).to_arrow()
    for segment in log.glob("*.evs"):
        segment.unlink()
    gc.collect()
    junk = [bytes([i]) * 100_000 for i in range(100)]  # reuse freed memory, if any was
    assert table.column("payload")[2999].as_py() == b"event 2999" + b"\x00\xff" * (2999 % 7)
    assert table.column("position")[0].as_py() == "0:24"
    del junk


def test_to_pandas(log):
    frame = evstream.LogReader.open(log).to_pandas(until=BASE + 3000)
    assert list(frame.columns) == ["timestamp", "position", "payload"]
    assert len(frame) == 3
    assert frame["payload"][1] == b"event 1\x00\xff"
    assert str(frame["timestamp"].dt.tz) == "UTC"


def test_a_stream_file_to_arrow(tmp_path):
    path = tmp_path / "s.evs"
    with evstream.StreamWriter.create(path, 1 << 16) as writer:
        offsets = [writer.append(i, b"p%d" % i) for i in range(50)]
    table = evstream.StreamReader.open(path).to_arrow(since=10)
    assert table.column("position").to_pylist() == [str(o) for o in offsets[10:]]
    assert table.column("payload").to_pylist() == [b"p%d" % i for i in range(10, 50)]


def test_an_empty_log_is_an_empty_table(tmp_path):
    evstream.LogWriter.create(tmp_path / "log").close()
    table = evstream.LogReader.open(tmp_path / "log").to_arrow()
    assert table.num_rows == 0 and table.num_columns == 3


def test_a_large_replay_split_between_threads_keeps_every_event_once_in_order(tmp_path):
    # Enough events for the replay to be split by time between threads, with runs of
    # equal timestamps across the split points and a segment roll in between.
    path = tmp_path / "log"
    n = 300_000
    with evstream.LogWriter.create(path, segment_size=4 << 20) as writer:
        for i in range(n):
            writer.append(BASE + (i // 1000) * 7, i.to_bytes(4, "little"))
    reader = evstream.LogReader.open(path)
    assert reader.stat().segments > 1
    for since, until, first, count in [
        (None, None, 0, n),
        (BASE + 7 * 10, None, 10_000, n - 10_000),
        (None, BASE + 7 * 250, 0, 250_000),
        (BASE + 7 * 3, BASE + 7 * 297, 3_000, 294_000),
    ]:
        table = reader.to_arrow(since=since, until=until)
        payloads = table.column("payload").to_pylist()
        assert len(payloads) == count, (since, until)
        assert [int.from_bytes(p, "little") for p in payloads] == list(range(first, first + count))
        positions = table.column("position").to_pylist()
        assert len(set(positions)) == count


# Python 3.12 warns when a process with threads forks; the child touches nothing inherited.
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_large_replay_in_a_process_that_may_start_no_thread_keeps_every_event():
    # A process at its limit of threads (`RLIMIT_NPROC`, a container's task limit) cannot
    # start the threads a large replay is split between: each part is replayed on the
    # calling thread instead, never a panic. The limit binds no root process, so a forked
    # child of a root run drops to `nobody` first; the log lives where it can read it.
    n = 300_000
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)
        path = pathlib.Path(top) / "log"
        with evstream.LogWriter.create(path, segment_size=4 << 20) as writer:
            for i in range(n):
                writer.append(BASE + (i // 1000) * 7, i.to_bytes(4, "little"))
        for entry in [path, *path.iterdir()]:
            entry.chmod(0o755 if entry.is_dir() else 0o644)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            report = "no report"
            try:
                if os.getuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
                table = evstream.LogReader.open(path).to_arrow()
                payloads = table.column("payload").to_pylist()
                numbers = [int.from_bytes(p, "little") for p in payloads]
                report = "ok" if numbers == list(range(n)) else f"{len(numbers)} events, not in order"
            except BaseException as error:  # noqa: BLE001: reported to the parent
                report = f"{type(error).__name__}: {error}"
            finally:
                os.write(write, report.encode())
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            report = pipe.read().decode()
        os.waitpid(pid, 0)
        assert report == "ok", report
