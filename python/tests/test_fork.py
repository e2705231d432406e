"""Writers, readers and iterators across `os.fork()`: they belong to the process that
opened them. A child that inherits them gets `Locked` from every use, and its exit or its
dropping them neither crashes it nor releases a lock of its parent."""

import gc
import os
import subprocess
import sys
import textwrap

import pytest

import evstream

# Python 3.12 warns when a process with threads (a writer's) forks; these children
# touch nothing of the store's but the inherited objects, which refuse.
pytestmark = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")


def _fork(child) -> int:
    """Runs `child()` in a forked process, which then leaves with `os._exit` (never back
    into pytest): 0 if it returned, 1 if it raised. Returns the child's wait status."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            child()
            status = 0
        except BaseException as error:  # noqa: BLE001: reported to the parent as a status
            print(f"child: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return status


def _exited(status: int) -> bool:
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


EXIT = textwrap.dedent(
    """
    import os, subprocess, sys
    import evstream
    kind, path, cli = sys.argv[1:]
    if kind == "log":
        writer = evstream.LogWriter.create(path, segment_size=64 << 10)
        reader = evstream.LogReader.open(path)
    else:
        writer = evstream.StreamWriter.create(path, 1 << 20)
        reader = evstream.StreamReader.open(path)
    writer.append(1, b"before the fork")
    writer.flush()
    follower = reader.follow(timeout=0.1)
    with writer:
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # through the parent's `with`, then the interpreter's exit
        _, status = os.waitpid(pid, 0)
        print("child", status, flush=True)
        # The parent's writer still holds the lock: the tool's append is refused.
        refused = subprocess.run([cli, "append", path, "from the tool"], capture_output=True)
        print("tool", refused.returncode, refused.stderr.decode().strip(), flush=True)
        writer.append(2, b"after the fork")
    print("events", [e.payload.decode() for e in follower], flush=True)
    """
)


@pytest.mark.parametrize("kind", ["log", "stream"])
def test_a_child_that_exits_normally_leaves_the_parents_writer_locked(tmp_path, cli, kind):
    path = tmp_path / ("log" if kind == "log" else "s.evs")
    done = subprocess.run(
        [sys.executable, "-c", EXIT, kind, str(path), cli],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode().splitlines()
    # Exit status 0, no signal: before, a log writer's child aborted on the panic of a
    # destructor joining threads that only the parent has.
    assert out[0] == "child 0", done.stderr.decode()
    assert "panic" not in done.stderr.decode().lower(), done.stderr.decode()
    assert out[1].startswith("tool 1 error: "), out[1]
    assert "locked by another writer" in out[1]
    assert out[2] == "events ['before the fork', 'after the fork']"


@pytest.mark.parametrize("kind", ["log", "stream"])
def test_a_child_dropping_an_inherited_writer_releases_nothing(tmp_path, kind):
    if kind == "log":
        path = tmp_path / "log"
        writer = evstream.LogWriter.create(path, segment_size=64 << 10)
        reopen = evstream.LogWriter.open
    else:
        path = tmp_path / "s.evs"
        writer = evstream.StreamWriter.create(path, 1 << 20)
        reopen = evstream.StreamWriter.open
    writer.append(1, b"parent")

    def child():
        nonlocal writer
        del writer
        gc.collect()

    assert _exited(_fork(child))
    # Still the parent's: a second writer, here in the same process, is refused.
    with pytest.raises(evstream.Locked):
        reopen(path)
    writer.append(2, b"parent again")
    writer.close()
    reader = evstream.LogReader if kind == "log" else evstream.StreamReader
    assert [e.payload for e in reader.open(path)] == [b"parent", b"parent again"]


def test_every_use_of_an_inherited_object_raises_locked_in_the_child(tmp_path):
    log = tmp_path / "log"
    stream = tmp_path / "s.evs"
    log_writer = evstream.LogWriter.create(log, segment_size=64 << 10)
    log_writer.append(1, b"a")
    stream_writer = evstream.StreamWriter.create(stream, 1 << 20)
    stream_writer.append(1, b"a")
    log_reader = evstream.LogReader.open(log)
    stream_reader = evstream.StreamReader.open(stream)
    log_iter = log_reader.iter()
    log_follower = log_reader.follow(timeout=0.1)
    stream_iter = stream_reader.iter()
    stream_follower = stream_reader.follow(timeout=0.1)
    parent = os.getpid()
    uses = {
        "LogWriter": [
            lambda: log_writer.append(2, b"b"),
            lambda: log_writer.append_now(b"b"),
            log_writer.flush,
            log_writer.close,
            lambda: log_writer.end,
            lambda: log_writer.closed,
        ],
        "StreamWriter": [
            lambda: stream_writer.append(2, b"b"),
            lambda: stream_writer.append_now(b"b"),
            stream_writer.flush,
            stream_writer.seal,
            stream_writer.close,
            lambda: stream_writer.end,
            lambda: stream_writer.available,
            lambda: stream_writer.closed,
        ],
        "LogReader": [
            lambda: iter(log_reader),
            log_reader.iter,
            log_reader.follow,
            lambda: log_reader.tail(1),
            log_reader.stat,
            log_reader.start_position,
            log_reader.end,
            lambda: log_reader.cursor("c"),
            lambda: log_reader.iter_cursor("c"),
            lambda: log_reader.commit_cursor("c", "0:24"),
            lambda: log_reader.lag("c"),
            log_reader.to_arrow,
        ],
        "StreamReader": [
            lambda: iter(stream_reader),
            stream_reader.iter,
            stream_reader.follow,
            lambda: stream_reader.tail(1),
            stream_reader.stat,
            stream_reader.to_arrow,
        ],
        "LogIterator": [
            lambda: next(log_iter),
            lambda: next(log_follower),
            lambda: log_iter.position,
        ],
        "StreamIterator": [lambda: next(stream_iter), lambda: next(stream_follower)],
    }
    paths = {"Log": log, "Stream": stream}

    def child():
        here = os.getpid()
        for cls, calls in uses.items():
            path = paths["Log" if cls.startswith("Log") else "Stream"]
            for call in calls:
                with pytest.raises(evstream.Locked) as caught:
                    call()
                assert str(caught.value) == (
                    f"{path}: this {cls} was opened by process {parent}; a process forked "
                    f"from it cannot use it: open it again in this process ({here})"
                )
                assert caught.value.path == path
        # The path stays readable, to open the file again in the child.
        assert log_reader.path == log and stream_reader.path == stream
        assert log_writer.path == log and stream_writer.path == stream
        # Leaving a `with` block of the parent's writer (as on `sys.exit`) closes nothing.
        with stream_writer:
            pass
        assert [e.payload for e in evstream.StreamReader.open(stream)] == [b"a"]

    assert _exited(_fork(child))
    # Nothing the child tried reached the files; the parent's objects work on.
    assert log_writer.append(2, b"b") == "0:41"
    assert stream_writer.append(2, b"b") == 41
    assert [e.payload for e in log_iter] == [b"a", b"b"]
    assert [e.payload for e in stream_follower] == [b"a", b"b"]
    assert not log_writer.closed and not stream_writer.closed
    log_writer.close()
    stream_writer.close()
    assert log_writer.path == log and stream_writer.path == stream


def test_a_childs_exit_leaves_the_parents_reader_its_segment(tmp_path):
    # Retention keeps one segment and recycles the retired ones: only the reader's
    # presence lock keeps segment 0 from being written over while the parent reads it.
    path = tmp_path / "log"
    writer = evstream.LogWriter.create(path, segment_size=1 << 20, retain_segments=1)
    payload = b"." * 40
    for i in range(15_000):  # about 1 MiB: all of segment 0
        writer.append(i, b"A %05d %s" % (i, payload))
    writer.flush()
    reader = evstream.LogReader.open(path)
    events = iter(reader)
    # The iterator read a first batch; it comes back to segment 0 for the rest.
    assert [next(events).payload[:7] for _ in range(3)] == [b"A 00000", b"A 00001", b"A 00002"]
    assert next(events).position.startswith("0:")

    def child():
        nonlocal reader, events
        del reader, events
        gc.collect()

    assert _exited(_fork(child))
    for i in range(15_000, 75_000):  # several rolls; segment 0 is retired
        writer.append(i, b"B %05d %s" % (i, payload))
    writer.flush()
    assert evstream.LogReader.open(path).stat().first_segment > 0
    got = [next(events).payload[:7] for _ in range(12_000)]
    assert got == [b"A %05d" % i for i in range(4, 12_004)]
    writer.close()
