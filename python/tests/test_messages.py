"""An exception's message is the command-line tool's `error:` line for the same file and
the same mistake, word for word. The tool may only add what it did itself after it
(`(nothing was appended)`, `(4 good events before it)`) or a hint naming its own options
(`; --wait waits for it`)."""

import pytest

import evstream


def _raised(kind, call) -> str:
    with pytest.raises(kind) as caught:
        call()
    return str(caught.value)


def _flip(path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def test_a_missing_file(tool, tmp_path):
    path = tmp_path / "missing.evs"
    message = _raised(evstream.Io, lambda: evstream.StreamReader.open(path))
    assert message == f"cannot open {path}: no such file or directory"
    assert tool.error("cat", path) == message
    assert _raised(evstream.Io, lambda: evstream.StreamWriter.open(path)) == message
    assert tool.error("append", path, "x") == message


def test_a_file_that_is_not_a_stream(tool, tmp_path):
    path = tmp_path / "photo.evs"
    path.write_bytes(b"\x07" * 8192)
    message = _raised(evstream.NotAStream, lambda: evstream.StreamReader.open(path))
    assert message.startswith(f"{path} is not a stream file: ")
    assert message.endswith("; it was left unchanged")
    assert tool.error("cat", path) == message
    assert _raised(evstream.NotAStream, lambda: evstream.StreamWriter.open(path)) == message
    assert tool.error("append", path, "x") == message


def test_a_directory_that_is_not_a_log(tool, tmp_path):
    path = tmp_path / "folder"
    path.mkdir()
    message = _raised(evstream.NotALog, lambda: evstream.LogReader.open(path))
    assert message.startswith(f"{path} is not a log: ")
    assert tool.error("cat", path) == message
    assert _raised(evstream.NotALog, lambda: evstream.LogWriter.open(path)) == message


def test_a_log_of_a_newer_version(tool, tmp_path):
    path = tmp_path / "log"
    with evstream.LogWriter.create(path, segment_size=4096) as writer:
        writer.append(1, b"x")
    settings = path / "LOG"
    settings.write_text(settings.read_text().replace("evstream-log 1", "evstream-log 7", 1))
    for call in (evstream.LogReader.open, evstream.LogWriter.open):
        with pytest.raises(evstream.UnsupportedLogVersion) as caught:
            call(path)
        assert (caught.value.path, caught.value.version, caught.value.supported) == (path, 7, 1)
        message = str(caught.value)
        assert message == f"{path} is a log of version 7; this build reads log version 1"
        assert tool.error("cat", path) == message
        assert tool.error("append", path, "x") == message
    # The directory is a log, only not of this version: not a NotALog.
    assert not issubclass(evstream.UnsupportedLogVersion, evstream.NotALog)


def test_an_existing_file(tool, tmp_path):
    path = tmp_path / "s.evs"
    evstream.StreamWriter.create(path, 4096).close()
    message = _raised(evstream.AlreadyExists, lambda: evstream.StreamWriter.create(path, 4096))
    assert message == f"{path} already exists; choose another name or remove it first"
    assert tool.error("create", path, "--capacity", "4096") == message


def test_a_stream_locked_by_another_writer(tool, tmp_path):
    path = tmp_path / "s.evs"
    with evstream.StreamWriter.create(path, 4096):
        message = _raised(evstream.Locked, lambda: evstream.StreamWriter.open(path))
        assert message.startswith(f"{path} is locked by another writer")
        assert tool.error("append", path, "x") == message + "; --wait waits for it"


def test_a_log_locked_by_another_writer(tool, tmp_path):
    path = tmp_path / "log"
    with evstream.LogWriter.create(path, segment_size=4096):
        message = _raised(evstream.Locked, lambda: evstream.LogWriter.open(path))
        assert "is locked by another writer" in message
        assert tool.error("append", path, "x") == message + "; --wait waits for it"


def test_a_damaged_event(tool, tmp_path):
    path = tmp_path / "s.evs"
    with evstream.StreamWriter.create(path, 1 << 16) as writer:
        offsets = [writer.append(i, b"payload %d" % i) for i in range(10)]
    _flip(path, offsets[4] + 16 + 3)
    with pytest.raises(evstream.Corrupt) as caught:
        list(evstream.StreamReader.open(path))
    message = str(caught.value)
    assert message.startswith(f"{path} is corrupt at byte offset {offsets[4]} (in flushed data")
    assert tool.error("verify", path) == message + " (4 good events before it)"
    assert tool.error("cat", path) == message + " (4 events were printed before it)"


def test_a_timestamp_out_of_order(tool, tmp_path):
    path = tmp_path / "s.evs"
    with evstream.StreamWriter.create(path, 4096) as writer:
        writer.append(1_000, b"first")
        message = _raised(evstream.OutOfOrder, lambda: writer.append(5, b"late"))
    assert message == (
        f"{path}: timestamp 1970-01-01T00:00:00.000000005Z (5) is earlier than the last "
        "event's 1970-01-01T00:00:00.000001000Z (1000); timestamps in a stream never decrease"
    )
    late = tool.error("append", path, "--timestamp", "1970-01-01T00:00:00.000000005Z", "late")
    assert late == message + " (nothing was appended)"


def test_a_full_stream(tool, tmp_path):
    path = tmp_path / "s.evs"
    with evstream.StreamWriter.create(path, 4096) as writer:
        writer.append(1, b"x")
        with pytest.raises(evstream.Full) as caught:
            writer.append(2, b"y" * 5000)
    message = str(caught.value)
    assert message.startswith(f"{path} is full: the event needs 4.9 KiB (5016 bytes) and ")
    assert message.endswith(" are free; start a new stream")
    assert (caught.value.needed, caught.value.available) == (5016, caught.value.available)
    assert tool.error("append", path, "y" * 5000) == message + " (nothing was appended)"


def test_a_sealed_stream(tool, tmp_path):
    path = tmp_path / "s.evs"
    with evstream.StreamWriter.create(path, 4096) as writer:
        writer.append(1, b"x")
        writer.seal()
    with evstream.StreamWriter.open(path) as writer:
        message = _raised(evstream.Sealed, lambda: writer.append(2, b"y"))
    assert message == f"{path} is sealed: it takes no more events; start a new stream"
    assert tool.error("append", path, "y") == message + " (nothing was appended)"


def test_a_bad_cursor_name(tool, tmp_path):
    path = tmp_path / "log"
    with evstream.LogWriter.create(path, segment_size=4096) as writer:
        writer.append(1, b"x")
    reader = evstream.LogReader.open(path)
    message = _raised(evstream.BadCursor, lambda: reader.commit_cursor("bad/name", "0:24"))
    assert message.startswith(f'{path}: cursor "bad/name": ')
    # The CLI refuses the name before it opens the log, as a usage error, with the same rule.
    rule = message[len(f"{path}: ") :]
    refused = tool.error("cursor", "set", path, "bad/name", "start")
    assert refused.splitlines()[0] == f"invalid value 'bad/name' for '<NAME>': {rule}"


def test_a_position_past_the_end(tool, tmp_path):
    path = tmp_path / "log"
    with evstream.LogWriter.create(path, segment_size=4096) as writer:
        writer.append(1, b"x")
    reader = evstream.LogReader.open(path)
    message = _raised(evstream.NoSuchPosition, lambda: list(reader.follow(position="99:24")))
    assert message.startswith(f"{path}: position 99:24 is not in the log")
    with pytest.raises(evstream.NoSuchPosition) as caught:
        reader.commit_cursor("billing", "99:24")
    assert (caught.value.position, caught.value.end) == ("99:24", reader.end())
    assert tool.error("cursor", "set", path, "billing", "99:24") == message


def test_a_stream_offset_inside_an_event(tool, tmp_path):
    path = tmp_path / "s.evs"
    with evstream.StreamWriter.create(path, 1 << 16) as writer:
        offsets = [writer.append(i, b"payload-%d" % i) for i in range(3)]
    reader = evstream.StreamReader.open(path)
    # The caller's mistake, not damage: not a Corrupt, in the CLI's words.
    with pytest.raises(evstream.OffsetOutOfRange) as caught:
        list(reader.follow(timeout=0.1, offset=25))
    assert (caught.value.offset, caught.value.published) == (25, None)
    message = str(caught.value)
    said = message.split("; ")[0]
    assert said.startswith(f"{path}: no valid event starts at byte offset 25 (the event claims ")
    assert message == said + "; use an event's offset, or int(event.next_position) to start after it"
    assert tool.error("cat", path, "--from-offset", "25").startswith(said + "; ")
    # From an event's offset the follow reads on; damage after it is damage.
    assert [e.payload for e in reader.follow(timeout=0.1, offset=offsets[1])] == [b"payload-1", b"payload-2"]
    _flip(path, offsets[2] + 16 + 3)
    with pytest.raises(evstream.Corrupt) as caught:
        list(reader.follow(timeout=0.1, offset=offsets[1]))
    assert caught.value.offset == offsets[2]


def test_a_log_position_inside_an_event(tool, tmp_path):
    path = tmp_path / "log"
    with evstream.LogWriter.create(path, segment_size=1 << 16) as writer:
        positions = [writer.append(i, b"payload-%d" % i) for i in range(3)]
    reader = evstream.LogReader.open(path)
    with pytest.raises(evstream.NoSuchPosition) as caught:
        list(reader.follow(timeout=0.1, position="0:25"))
    assert (caught.value.position, caught.value.end) == ("0:25", None)
    message = str(caught.value)
    said = message.split(" (")[0]
    assert said == f"{path}: no event starts at position 0:25"
    assert message.endswith("; use an event's position or next_position, start_position() or end()")
    assert tool.error("cursor", "set", path, "billing", "0:25").startswith(said + "; ")
    assert [e.payload for e in reader.follow(timeout=0.1, position=positions[1])] == [b"payload-1", b"payload-2"]
    segment = next(path.glob("00000000-*.evs"))
    _flip(segment, int(positions[2].split(":")[1]) + 16 + 3)
    with pytest.raises(evstream.Corrupt):
        list(reader.follow(timeout=0.1, position=positions[1]))


def test_every_error_of_the_store_has_its_own_class():
    # The classes added with the store's variants, each a direct subclass of the base.
    for name in ("UnsupportedLogVersion", "TimeOutOfRange"):
        assert getattr(evstream, name).__bases__ == (evstream.Error,)


def test_the_errors_carry_their_fields_as_attributes(tmp_path):
    log = tmp_path / "log"
    with evstream.LogWriter.create(log, segment_size=4096) as writer:
        writer.append(1, b"x")
        with pytest.raises(evstream.EventTooLarge) as caught:
            writer.append(2, b"y" * 5000)
        # What a caller that splits its payloads needs.
        assert caught.value.segment_size == 4096
        assert 0 < caught.value.largest < 4096 < caught.value.needed
        writer.append(2, b"y" * (caught.value.largest - 16))  # an event's header is 16 bytes
    with pytest.raises(evstream.BadCapacity) as caught:
        evstream.LogWriter.create(tmp_path / "small", segment_size=10)
    assert (caught.value.capacity, caught.value.minimum) == (10, 4096)
    assert caught.value.maximum > caught.value.minimum
    with pytest.raises(evstream.NotALog) as caught:
        evstream.LogReader.open(tmp_path / "missing")
    assert caught.value.reason == "it does not exist"
    with pytest.raises(evstream.NotAFile) as caught:
        evstream.StreamReader.open(log)
    assert caught.value.kind == "directory"
    with pytest.raises(evstream.BadCursor) as caught:
        evstream.LogReader.open(log).commit_cursor("bad/name", "0:24")
    assert caught.value.name == "bad/name" and caught.value.reason in str(caught.value)
    path = tmp_path / "s.evs"
    with evstream.StreamWriter.create(path, 1 << 16) as writer:
        writer.append(1, b"payload")
    data = bytearray(path.read_bytes())
    data[24 + 16 + 2] ^= 1  # in the payload of the first event
    path.write_bytes(data)
    with pytest.raises(evstream.Corrupt) as caught:
        list(evstream.StreamReader.open(path))
    assert caught.value.reason and caught.value.reason in str(caught.value)


def test_an_offset_past_the_published_events_says_where_they_end(tmp_path):
    path = tmp_path / "s.evs"
    with evstream.StreamWriter.create(path, 1 << 16) as writer:
        writer.append(1, b"x")
        end = writer.end
    with pytest.raises(evstream.OffsetOutOfRange) as caught:
        list(evstream.StreamReader.open(path).follow(timeout=0.1, offset=1 << 20))
    assert (caught.value.offset, caught.value.published) == (1 << 20, end)
