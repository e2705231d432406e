"""The Python API: writers, readers, times, tail, stat, closing."""

import datetime

import pytest

import evstream

UTC = datetime.timezone.utc
BASE = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


def test_events_carry_timestamp_time_payload_and_position(tmp_path):
    with evstream.LogWriter.create(tmp_path / "log") as writer:
        first = writer.append(BASE + 1_234, b"a")
        second = writer.append(datetime.datetime(2023, 11, 14, 22, 13, 21, tzinfo=UTC), b"b")
    events = list(evstream.LogReader.open(tmp_path / "log"))
    assert [e.position for e in events] == [first, second] == ["0:24", "0:41"]
    assert events[0].next_position == events[1].position
    assert events[0].timestamp == BASE + 1_234
    assert events[0].time == datetime.datetime(2023, 11, 14, 22, 13, 20, 1, tzinfo=UTC)
    assert events[0].time.tzinfo is not None
    assert events[1].timestamp == BASE + 1_000_000_000
    assert isinstance(events[0].payload, bytes) and events[0].payload == b"a"
    assert events[0].offset == 24


def test_iter_takes_since_inclusive_and_until_exclusive_as_ints_or_datetimes(tmp_path):
    with evstream.LogWriter.create(tmp_path / "log", segment_size=64 << 10) as writer:
        for i in range(5000):
            writer.append(BASE + i * 1_000_000, b"%d" % i)  # one a millisecond
    reader = evstream.LogReader.open(tmp_path / "log")
    got = [int(e.payload) for e in reader.iter(since=BASE + 100_000_000, until=BASE + 200_000_000)]
    assert got == list(range(100, 200))
    since = datetime.datetime(2023, 11, 14, 22, 13, 23, tzinfo=UTC)  # +3 s
    until = since + datetime.timedelta(milliseconds=10)
    assert [int(e.payload) for e in reader.iter(since=since, until=until)] == list(range(3000, 3010))
    assert list(reader.iter(since=BASE + 10**12)) == []
    with pytest.raises(ValueError, match="naive"):
        reader.iter(since=datetime.datetime(2023, 11, 14))
    with pytest.raises(TypeError):
        reader.iter(since="yesterday")


def test_tail_and_stat(tmp_path):
    with evstream.LogWriter.create(tmp_path / "log", segment_size=16 << 10) as writer:
        for i in range(1000):
            writer.append(BASE + i, b"%d" % i)
        assert writer.end == evstream.LogReader.open(tmp_path / "log").end()
    reader = evstream.LogReader.open(tmp_path / "log")
    assert [e.payload for e in reader.tail(3)] == [b"997", b"998", b"999"]
    assert reader.tail(0) == []
    stat = reader.stat()
    assert stat.events == 1000 and stat.segments > 1
    assert (stat.first_timestamp, stat.last_timestamp) == (BASE, BASE + 999)
    assert stat.start == reader.start_position() == "0:24"
    assert not stat.writer_active


def test_a_stream_file_reads_writes_tails_and_seals(tmp_path):
    path = tmp_path / "s.evs"
    writer = evstream.StreamWriter.create(path, 1 << 16)
    offsets = [writer.append(BASE + i, b"%d" % i) for i in range(100)]
    writer.flush()
    reader = evstream.StreamReader.open(path)
    assert reader.stat().writer_active
    assert [e.offset for e in reader] == offsets
    assert [e.position for e in reader.iter(since=BASE + 98)] == [str(o) for o in offsets[98:]]
    assert [e.payload for e in reader.tail(2)] == [b"98", b"99"]
    writer.seal()
    with pytest.raises(evstream.Sealed):
        writer.append(BASE + 100, b"late")
    writer.close()
    stat = evstream.StreamReader.open(path).stat()
    assert stat.sealed and stat.events == 100 and stat.capacity == 1 << 16
    # A follower of a sealed stream ends when it reaches the end.
    assert len(list(evstream.StreamReader.open(path).follow(timeout=datetime.timedelta(seconds=30)))) == 100


def test_append_now_stamps_the_current_time(tmp_path):
    with evstream.StreamWriter.create(tmp_path / "s.evs", 1 << 16) as writer:
        before = datetime.datetime.now(UTC)
        writer.append_now(b"now")
    (event,) = evstream.StreamReader.open(tmp_path / "s.evs")
    assert abs((event.time - before).total_seconds()) < 60


def test_a_closed_writer_refuses_calls_and_closes_twice(tmp_path):
    writer = evstream.LogWriter.create(tmp_path / "log")
    writer.append(1, b"a")
    writer.close()
    writer.close()
    assert writer.closed
    with pytest.raises(ValueError, match="closed"):
        writer.append(2, b"b")
    with pytest.raises(ValueError, match="closed"):
        writer.flush()
    # Closing released the lock: the log opens for writing again.
    with evstream.LogWriter.open(tmp_path / "log") as again:
        assert again.append(2, b"b") == "0:41"


def test_the_context_manager_closes_when_the_block_raises(tmp_path):
    with pytest.raises(RuntimeError):
        with evstream.LogWriter.create(tmp_path / "log") as writer:
            writer.append(1, b"kept")
            raise RuntimeError("boom")
    assert writer.closed
    assert [e.payload for e in evstream.LogReader.open(tmp_path / "log")] == [b"kept"]


def test_create_takes_the_log_options(tmp_path):
    path = tmp_path / "log"
    evstream.LogWriter.create(
        path,
        segment_size=1 << 20,
        roll="hourly",
        retain_size=64 << 20,
        retain_age=datetime.timedelta(days=7),
        retain_segments=10,
    ).close()
    settings = (path / "LOG").read_text()
    assert "1048576" in settings
    with pytest.raises(ValueError, match="roll"):
        evstream.LogWriter.create(tmp_path / "other", roll="weekly")
    assert not (tmp_path / "other").exists()


def test_retention_deletes_old_segments_and_a_reader_says_so(tmp_path):
    path = tmp_path / "log"
    with evstream.LogWriter.create(path, segment_size=16 << 10, retain_segments=2) as writer:
        for i in range(3000):
            writer.append(BASE + i, b"x" * 40)
    reader = evstream.LogReader.open(path)
    stat = reader.stat()
    assert stat.segments <= 3 and stat.first_segment > 0
    with pytest.raises(evstream.Retired) as caught:
        list(reader.follow(timeout=0.1, position="0:24"))
    assert caught.value.first_segment == stat.first_segment


def test_out_of_order_timestamps_raise_with_both_values(tmp_path):
    with evstream.LogWriter.create(tmp_path / "log") as writer:
        writer.append(10, b"a")
        with pytest.raises(evstream.OutOfOrder) as caught:
            writer.append(9, b"b")
    assert (caught.value.previous, caught.value.got) == (10, 9)
    assert str(caught.value).endswith(
        ": timestamp 1970-01-01T00:00:00.000000009Z (9) is earlier than the last event's "
        "1970-01-01T00:00:00.000000010Z (10); timestamps in a stream never decrease"
    )
    assert isinstance(caught.value, evstream.Error)


def test_a_stream_reader_sees_the_events_appended_after_it_opened(tmp_path):
    path = tmp_path / "s.evs"
    with evstream.StreamWriter.create(path, 1 << 16) as writer:
        writer.append(1, b"before")
        reader = evstream.StreamReader.open(path)
        writer.append(2, b"after")
        assert [e.payload for e in reader] == [b"before", b"after"]
        assert reader.stat().write_offset == writer.end
        assert [e.payload for e in reader.tail(1)] == [b"after"]
        assert reader.to_arrow().num_rows == 2
    log = tmp_path / "log"
    with evstream.LogWriter.create(log) as writer:
        writer.append(1, b"before")
        reader = evstream.LogReader.open(log)
        writer.append(2, b"after")
        assert [e.payload for e in reader] == [b"before", b"after"]


def test_a_stream_reader_reads_the_file_it_opened_after_its_path_names_another_or_none(tmp_path):
    # Every method reads the file the reader opened, as a file object would: iterations
    # and follows too, once a stream was made again at its path, or the path removed (a
    # log's retention deletes a segment a reader has open) while a writer still appends.
    path = tmp_path / "s.evs"
    writer = evstream.StreamWriter.create(path, 1 << 16)
    writer.append(1, b"first file")
    reader = evstream.StreamReader.open(path)
    path.unlink()
    with evstream.StreamWriter.create(path, 1 << 16) as other:
        other.append(100, b"second file")
    writer.append(2, b"first file, after")
    mine = [b"first file", b"first file, after"]
    assert [e.payload for e in reader.tail(5)] == mine
    assert [e.payload for e in reader] == mine
    assert [e.payload for e in reader.iter(since=2)] == mine[1:]
    assert reader.to_arrow().column("payload").to_pylist() == mine
    assert [e.payload for e in reader.follow(timeout=0.1)] == mine
    path.unlink()
    assert [e.payload for e in reader.follow(timeout=0.1, offset=24)] == mine
    writer.close()
    # Deleted, with no writer left: a follow ends with `Io` (within 2 s), no event can come.
    with pytest.raises(evstream.Io):
        list(reader.follow(timeout=10))


def test_numpy_integers_are_times_as_ints_are(tmp_path):
    np = pytest.importorskip("numpy")
    with evstream.LogWriter.create(tmp_path / "log") as writer:
        assert writer.append(np.int64(BASE), b"a") == "0:24"
        writer.append(np.uint64(BASE + 5), b"b")
    reader = evstream.LogReader.open(tmp_path / "log")
    stamps = np.array([e.timestamp for e in reader], dtype=np.int64)
    assert [e.timestamp for e in reader.iter(since=stamps[1])] == [BASE + 5]
    assert [e.timestamp for e in reader.iter(until=stamps[1])] == [BASE]
    assert reader.to_arrow(since=np.int32(0), until=stamps[1]).num_rows == 1
    # Numbers that are not integers stay refused.
    with pytest.raises(TypeError):
        reader.iter(since=np.float64(BASE))
    with pytest.raises(TypeError):
        reader.iter(since=np.bool_(True))
    with pytest.raises(TypeError):
        reader.iter(since=float(BASE))


def test_pandas_timestamps_keep_their_nanoseconds(tmp_path):
    pd = pytest.importorskip("pandas")
    with evstream.LogWriter.create(tmp_path / "log") as writer:
        for i in range(10):
            writer.append(BASE + i * 100, b"%d" % i)  # ten events within a microsecond
        writer.append(pd.Timestamp(BASE + 2_001, tz="UTC"), b"pandas")
        writer.append(pd.Timestamp(BASE + 2_002, tz="UTC").tz_convert("Asia/Kolkata"), b"IST")
    reader = evstream.LogReader.open(tmp_path / "log")
    assert [e.timestamp for e in reader.tail(2)] == [BASE + 2_001, BASE + 2_002]
    # A range taken from the table itself selects exactly its rows.
    frame = reader.to_pandas()
    since, until = frame["timestamp"][3], frame["timestamp"][5]
    assert [e.payload for e in reader.iter(since=since, until=until)] == [b"3", b"4"]
    assert reader.to_arrow(since=since, until=until).num_rows == 2
    assert reader.to_arrow(since=pd.Timestamp(BASE + 550, tz="UTC")).num_rows == 6
    with pytest.raises(ValueError, match="naive"):
        reader.iter(since=pd.Timestamp(BASE))


def test_events_pickle_and_copy_as_their_values(tmp_path):
    import concurrent.futures
    import copy
    import multiprocessing
    import pickle

    with evstream.LogWriter.create(tmp_path / "log") as writer:
        writer.append(BASE, b"log \x00\xff")
    with evstream.StreamWriter.create(tmp_path / "s.evs", 1 << 16) as writer:
        writer.append(BASE, b"stream")
    events = list(evstream.LogReader.open(tmp_path / "log"))
    events += list(evstream.StreamReader.open(tmp_path / "s.evs"))
    for event in events:
        for again in (pickle.loads(pickle.dumps(event)), copy.copy(event), copy.deepcopy(event)):
            assert again == event
            assert (again.timestamp, again.payload, again.position, again.next_position, again.offset) == (
                event.timestamp, event.payload, event.position, event.next_position, event.offset)
    # As a process pool hands them to its workers.
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        assert list(pool.map(repr, events)) == [repr(e) for e in events]


def test_an_iteration_ended_by_until_stops_its_position_at_the_first_event_it_did_not_return(tmp_path):
    with evstream.LogWriter.create(tmp_path / "log") as writer:
        positions = [writer.append(BASE + i * 10, b"%d" % i) for i in range(10)]
    reader = evstream.LogReader.open(tmp_path / "log")
    events = reader.iter(until=BASE + 50)
    assert [e.position for e in events] == positions[:5]
    assert events.position == positions[5]
    # Resuming there loses no event.
    assert [e.position for e in reader.follow(timeout=0, position=events.position)] == positions[5:]
    # An iteration that reached the end of the log stops there.
    events = reader.iter(since=BASE + 50)
    assert len(list(events)) == 5 and events.position == reader.end()


def test_a_bool_is_no_duration(tmp_path):
    # `roll=False` would roll at every new timestamp (a segment each), `retain_age=True`
    # delete what is older than a second.
    for options in ({"roll": False}, {"roll": True}, {"retain_age": True}, {"retain_age": False}):
        with pytest.raises(TypeError, match="bool"):
            evstream.LogWriter.create(tmp_path / "log", **options)
        assert not (tmp_path / "log").exists()
    evstream.LogWriter.create(tmp_path / "log").close()
    with pytest.raises(TypeError, match="bool"):
        evstream.LogReader.open(tmp_path / "log").follow(timeout=True)
    evstream.StreamWriter.create(tmp_path / "s.evs", 1 << 16).close()
    with pytest.raises(TypeError, match="bool"):
        evstream.StreamReader.open(tmp_path / "s.evs").follow(timeout=False)


def test_a_numpy_bool_is_no_duration(tmp_path):
    # numpy's bools are no `bool`, but convert to 0.0 and 1.0 as one does: `roll=numpy.False_`
    # (a cell of a boolean column) would roll at every new timestamp.
    np = pytest.importorskip("numpy")
    for options in ({"roll": np.False_}, {"roll": np.True_}, {"retain_age": np.True_}):
        with pytest.raises(TypeError, match="bool"):
            evstream.LogWriter.create(tmp_path / "log", **options)
        assert not (tmp_path / "log").exists()
    evstream.LogWriter.create(tmp_path / "log").close()
    with pytest.raises(TypeError, match="bool"):
        evstream.LogReader.open(tmp_path / "log").follow(timeout=np.False_)
    evstream.StreamWriter.create(tmp_path / "s.evs", 1 << 16).close()
    with pytest.raises(TypeError, match="bool"):
        evstream.StreamReader.open(tmp_path / "s.evs").follow(timeout=np.True_)
    # numpy's numbers stay durations.
    assert list(evstream.LogReader.open(tmp_path / "log").follow(timeout=np.float64(0.01))) == []


def test_datetimes_at_the_ends_of_the_range_convert_to_the_nanosecond(tmp_path):
    earliest = datetime.datetime(1677, 9, 21, 0, 12, 43, 145225, tzinfo=UTC)  # 2**63 ns before 1970, + 808 ns
    latest = datetime.datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)  # 2**63 - 1 ns after, - 807 ns
    with evstream.LogWriter.create(tmp_path / "log") as writer:
        writer.append(earliest, b"earliest")
        writer.append(latest, b"latest")
        with pytest.raises(OverflowError):
            writer.append(latest + datetime.timedelta(microseconds=1), b"too late")
    reader = evstream.LogReader.open(tmp_path / "log")
    assert [e.timestamp for e in reader] == [-(2**63) + 808, 2**63 - 1 - 807]
    assert [e.time for e in reader] == [earliest, latest]
    with pytest.raises(OverflowError):
        reader.iter(since=earliest - datetime.timedelta(microseconds=1))


def test_stats_and_lags_pickle_and_copy_as_their_values(tmp_path):
    import copy
    import pickle

    with evstream.LogWriter.create(tmp_path / "log") as writer:
        writer.append(BASE, b"a")
        writer.append(BASE + 1, b"b")
    reader = evstream.LogReader.open(tmp_path / "log")
    reader.commit_cursor("c", "0:24")
    evstream.StreamWriter.create(tmp_path / "s.evs", 1 << 16).close()
    for value in (reader.stat(), reader.lag("c"), evstream.StreamReader.open(tmp_path / "s.evs").stat()):
        fields = [name for name in dir(value) if not name.startswith("_")]
        assert fields
        for again in (pickle.loads(pickle.dumps(value)), copy.copy(value), copy.deepcopy(value)):
            assert type(again) is type(value)
            assert [getattr(again, f) for f in fields] == [getattr(value, f) for f in fields]
