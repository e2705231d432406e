"""Followers woken by writers in other processes, and the GIL released while waiting."""

import subprocess
import sys
import textwrap
import threading
import time

import pytest

import evstream

WRITER = textwrap.dedent(
    """
    import sys, time
    import evstream
    path, count = sys.argv[1], int(sys.argv[2])
    time.sleep(0.3)  # the follower is asleep by now
    with evstream.{cls}.open(path) as writer:
        for i in range(count):
            writer.append(1_000 + i, b"from another process %d" % i)
            writer.flush()
            time.sleep(0.01)
    """
)


def test_a_log_follower_is_woken_by_a_writer_in_another_process(tmp_path):
    path = tmp_path / "log"
    evstream.LogWriter.create(path, segment_size=16 << 10).close()
    reader = evstream.LogReader.open(path)
    follower = reader.follow(timeout=30, position=reader.end())
    child = subprocess.Popen([sys.executable, "-c", WRITER.format(cls="LogWriter"), str(path), "50"])
    try:
        got = []
        start = time.monotonic()
        for event in follower:
            got.append(event.payload)
            if len(got) == 50:
                break
        assert time.monotonic() - start < 25
        assert got == [b"from another process %d" % i for i in range(50)]
    finally:
        assert child.wait(timeout=60) == 0


def test_a_log_follower_crosses_the_rolls_of_a_writer_in_another_process(tmp_path, tool):
    path = tmp_path / "log"
    tool.run("create", path, "--log", "--segment-size", "4KiB")
    reader = evstream.LogReader.open(path)
    follower = reader.follow(timeout=30)
    lines = b"".join(b"line %d %s\n" % (i, b"." * 100) for i in range(200))
    # The CLI, in its own process, appends across several segments.
    child = subprocess.Popen([tool.binary, "append", str(path)], stdin=subprocess.PIPE)
    child.communicate(lines, timeout=60)
    assert child.returncode == 0
    got = [next(follower).payload for _ in range(200)]
    assert got == lines.splitlines()
    assert reader.stat().segments > 2
    assert list(reader.follow(timeout=0.2, position=reader.end())) == []


def test_a_stream_follower_is_woken_by_a_writer_in_another_process(tmp_path):
    path = tmp_path / "s.evs"
    evstream.StreamWriter.create(path, 1 << 20).close()
    follower = evstream.StreamReader.open(path).follow(timeout=30)
    child = subprocess.Popen([sys.executable, "-c", WRITER.format(cls="StreamWriter"), str(path), "20"])
    try:
        got = [next(follower).payload for _ in range(20)]
        assert got == [b"from another process %d" % i for i in range(20)]
    finally:
        assert child.wait(timeout=60) == 0


@pytest.mark.parametrize("kind", ["stream", "log"])
def test_a_follow_since_a_time_after_every_event_waits_for_the_next(tmp_path, kind):
    if kind == "stream":
        writer = evstream.StreamWriter.create(tmp_path / "s.evs", 1 << 20)
        reader = evstream.StreamReader.open(tmp_path / "s.evs")
    else:
        writer = evstream.LogWriter.create(tmp_path / "log", segment_size=1 << 20)
        reader = evstream.LogReader.open(tmp_path / "log")
    writer.append(1_000, b"old")
    follower = reader.follow(timeout=30, since=2_000)
    later = threading.Timer(0.3, lambda: writer.append(3_000, b"new"))
    later.start()
    try:
        assert next(follower).payload == b"new"
    finally:
        later.join()
    assert [e.payload for e in reader.follow(timeout=0.1, since=1_000)] == [b"old", b"new"]
    writer.close()


def test_a_follow_timeout_ends_the_iteration(tmp_path):
    evstream.LogWriter.create(tmp_path / "log").close()
    start = time.monotonic()
    assert list(evstream.LogReader.open(tmp_path / "log").follow(timeout=0.3)) == []
    assert 0.25 < time.monotonic() - start < 10


def test_other_threads_run_while_a_follower_waits(tmp_path):
    path = tmp_path / "log"
    evstream.LogWriter.create(path).close()
    reader = evstream.LogReader.open(path)
    waited = []
    thread = threading.Thread(target=lambda: waited.extend(reader.follow(timeout=1.5)))
    thread.start()
    time.sleep(0.1)
    # While the follower waits, this thread appends and reads: it could not if the
    # follower held the GIL.
    with evstream.LogWriter.open(path) as writer:
        spins = 0
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            spins += 1
        writer.append(1, b"woke it")
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert [e.payload for e in waited] == [b"woke it"]
    assert spins > 10_000


def test_ctrl_c_interrupts_a_follower_waiting_without_a_timeout(tmp_path):
    import signal

    path = tmp_path / "log"
    evstream.LogWriter.create(path).close()
    script = textwrap.dedent(
        """
        import sys
        import evstream
        follower = evstream.LogReader.open(sys.argv[1]).follow()
        print("waiting", flush=True)
        try:
            next(follower)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"waiting\n"
        time.sleep(0.3)
        child.send_signal(signal.SIGINT)
        # A follower deaf to signals would wait for ever: communicate's timeout fails it.
        out, _ = child.communicate(timeout=10)
        assert out == b"interrupted\n"
    finally:
        child.kill()
        child.wait()


def test_the_position_answers_while_another_thread_waits_in_next(tmp_path):
    path = tmp_path / "log"
    writer = evstream.LogWriter.create(path, segment_size=1 << 20)
    writer.append(1, b"one")
    follower = evstream.LogReader.open(path).follow(timeout=10)
    assert next(follower).payload == b"one"
    got = []
    thread = threading.Thread(target=lambda: got.append(next(follower).payload))
    thread.start()
    try:
        time.sleep(0.3)  # the thread waits in next() by now
        start = time.monotonic()
        assert follower.position == "0:43"
        # Not after the other thread's wait, which ends with the append below.
        assert time.monotonic() - start < 2
    finally:
        writer.append(2, b"two")
        thread.join(timeout=30)
    assert got == [b"two"]
    assert follower.position == "0:62"
    writer.close()


@pytest.mark.parametrize("kind", ["stream", "log"])
def test_ctrl_c_reaches_a_thread_waiting_for_a_follower_another_thread_waits_in(tmp_path, kind):
    import signal

    if kind == "stream":
        path = tmp_path / "s.evs"
        evstream.StreamWriter.create(path, 1 << 20).close()
    else:
        path = tmp_path / "log"
        evstream.LogWriter.create(path).close()
    script = textwrap.dedent(
        """
        import sys, threading, time
        import evstream
        kind, path = sys.argv[1:]
        reader = (evstream.StreamReader if kind == "stream" else evstream.LogReader).open(path)
        follower = reader.follow()
        other = threading.Thread(target=lambda: list(follower), daemon=True)
        other.start()
        time.sleep(0.2)  # the other thread waits in next() by now, for ever
        print("waiting", flush=True)
        try:
            next(follower)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script, kind, str(path)], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"waiting\n"
        time.sleep(0.3)
        child.send_signal(signal.SIGINT)
        # A thread deaf to signals while it waits for the follower waits for ever.
        out, _ = child.communicate(timeout=10)
        assert out == b"interrupted\n"
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("kind", ["stream", "log"])
def test_threads_that_share_a_follower_share_its_events(tmp_path, kind):
    if kind == "stream":
        writer = evstream.StreamWriter.create(tmp_path / "s.evs", 8 << 20)
        follower = evstream.StreamReader.open(tmp_path / "s.evs").follow(timeout=2)
    else:
        writer = evstream.LogWriter.create(tmp_path / "log", segment_size=1 << 20)
        follower = evstream.LogReader.open(tmp_path / "log").follow(timeout=2)
    got = {k: [] for k in range(3)}
    threads = [threading.Thread(target=lambda k=k: got[k].extend(e.timestamp for e in follower)) for k in got]
    for thread in threads:
        thread.start()
    with writer:
        for i in range(20_000):
            writer.append(i, b"%d" % i)
            if i % 1000 == 0:
                time.sleep(0.001)
    for thread in threads:
        thread.join(timeout=60)
    # Each event once, and a share for every thread: a thread that lets the follower go
    # does not take it back ahead of the threads waiting for it every time.
    assert sorted(sum(got.values(), [])) == list(range(20_000))
    assert all(got.values()), {k: len(v) for k, v in got.items()}


def test_a_stream_follower_of_a_file_deleted_with_no_writer_left_ends(tmp_path):
    path = tmp_path / "s.evs"
    with evstream.StreamWriter.create(path, 1 << 16) as writer:
        writer.append(1, b"before")
    follower = evstream.StreamReader.open(path).follow()
    assert next(follower).payload == b"before"
    remove = threading.Timer(0.3, path.unlink)
    remove.start()
    start = time.monotonic()
    try:
        # No event can come any more: the follower says so (it looks every 2 s).
        with pytest.raises(evstream.Io, match="no such file") as caught:
            next(follower)
        assert time.monotonic() - start < 10
        assert caught.value.op == "follow"
    finally:
        remove.join()


def test_a_log_follower_at_a_newest_segment_sealed_behind_the_writers_back_sleeps(tmp_path):
    path = tmp_path / "log"
    with evstream.LogWriter.create(path) as writer:
        writer.append(1, b"one")
    segment = sorted(path.glob("*.evs"))[-1]
    with evstream.StreamWriter.open(segment) as stream:
        stream.seal()
    reader = evstream.LogReader.open(path)
    follower = reader.follow(timeout=0.5)
    assert next(follower).payload == b"one"
    cpu = time.thread_time()
    # No event can come until a writer rolls out of the sealed segment: the wait sleeps.
    assert list(follower) == []
    assert time.thread_time() - cpu < 0.2
    later = threading.Timer(0.2, lambda: evstream.LogWriter.open(path).append(2, b"two"))
    later.start()
    try:
        assert next(reader.follow(timeout=30, position=reader.end())).payload == b"two"
    finally:
        later.join()
