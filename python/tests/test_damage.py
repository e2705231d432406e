"""Damaged and foreign files raise the store's exception classes, with the same message
as the store's error, and are never changed."""

import hashlib

import pytest

import evstream


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _tree(path) -> dict:
    return {p.name: _digest(p) for p in sorted(path.iterdir()) if p.is_file()}


def _flip(path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def test_a_flipped_payload_byte_raises_corrupt_at_its_event(tmp_path):
    path = tmp_path / "s.evs"
    with evstream.StreamWriter.create(path, 1 << 16) as writer:
        offsets = [writer.append(i, b"payload %03d" % i) for i in range(100)]
    _flip(path, offsets[57] + 16 + 3)
    before = _digest(path)
    reader = evstream.StreamReader.open(path)
    seen = []
    with pytest.raises(evstream.Corrupt) as caught:
        for event in reader:
            seen.append(event.offset)
    assert seen == offsets[:57]
    assert caught.value.offset == offsets[57]
    assert "checksum mismatch" in str(caught.value)
    assert str(caught.value).startswith(f"{path} is corrupt at byte offset {offsets[57]}")
    with pytest.raises(evstream.Corrupt):
        reader.to_arrow()
    assert _digest(path) == before


def test_a_flipped_byte_in_a_log_segment_raises_corrupt_and_changes_nothing(tmp_path):
    path = tmp_path / "log"
    with evstream.LogWriter.create(path, segment_size=16 << 10) as writer:
        positions = [writer.append(i, b"x" * 50) for i in range(1000)]
    target = positions[400]
    segment, offset = (int(part) for part in target.split(":"))
    (file,) = [p for p in path.glob("*.evs") if p.name.startswith("%08d" % segment)] or [
        sorted(path.glob("*.evs"))[segment]
    ]
    _flip(file, offset + 20)
    before = _tree(path)
    reader = evstream.LogReader.open(path)
    with pytest.raises(evstream.Corrupt) as caught:
        for _ in reader:
            pass
    assert caught.value.offset == offset
    with pytest.raises(evstream.Corrupt):
        reader.to_arrow()
    assert _tree(path) == before


def test_a_file_that_is_not_a_stream_raises_not_a_stream_and_is_left_unchanged(tmp_path, tool):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not events\n" * 5000)
    before = _digest(path)
    for call in (evstream.StreamReader.open, evstream.StreamWriter.open):
        with pytest.raises(evstream.NotAStream) as caught:
            call(path)
        assert caught.value.path is not None
        assert str(caught.value).startswith(f"{path} is not a stream file: ")
    assert _digest(path) == before
    tool.error("cat", path)  # the CLI refuses it too
    assert _digest(path) == before


def test_a_directory_that_is_not_a_log_raises_not_a_log_with_the_clis_message(tmp_path, tool):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8\xff")
    for call in (evstream.LogReader.open, evstream.LogWriter.open):
        with pytest.raises(evstream.NotALog) as caught:
            call(folder)
        assert str(caught.value) == tool.error("cat", folder)
    assert _tree(folder) == {"cat.jpg": _digest(folder / "cat.jpg")}


def test_a_second_writer_raises_locked(tmp_path):
    path = tmp_path / "log"
    with evstream.LogWriter.create(path):
        with pytest.raises(evstream.Locked) as caught:
            evstream.LogWriter.open(path)
        assert "locked by another writer" in str(caught.value)
    with evstream.StreamWriter.create(tmp_path / "s.evs", 1 << 16):
        with pytest.raises(evstream.Locked):
            evstream.StreamWriter.open(tmp_path / "s.evs")


def test_existing_and_missing_paths(tmp_path):
    with evstream.StreamWriter.create(tmp_path / "s.evs", 1 << 16):
        pass
    with pytest.raises(evstream.AlreadyExists):
        evstream.StreamWriter.create(tmp_path / "s.evs", 1 << 16)
    with pytest.raises(evstream.Io) as caught:
        evstream.StreamReader.open(tmp_path / "missing.evs")
    assert caught.value.errno == 2
    assert str(caught.value).endswith(": no such file or directory")
    with pytest.raises(evstream.BadCapacity):
        evstream.StreamWriter.create(tmp_path / "tiny.evs", 10)
    assert not (tmp_path / "tiny.evs").exists()


def test_a_full_stream_raises_full(tmp_path):
    with evstream.StreamWriter.create(tmp_path / "s.evs", 4096) as writer:
        with pytest.raises(evstream.Full) as caught:
            for i in range(1000):
                writer.append(i, b"y" * 100)
        assert caught.value.available < caught.value.needed


def test_every_class_derives_from_the_base():
    names = [
        "Io", "AlreadyExists", "NotAFile", "Locked", "BadCapacity", "BadHeader", "Corrupt",
        "NotAStream", "DamagedTrailer", "NoRoomForTrailer", "Sealed", "Recovered",
        "ReadersPresent", "OutOfOrder", "Full", "PayloadTooLarge", "Poisoned",
        "OffsetOutOfRange", "Regressed", "NotALog", "EventTooLarge", "Retired",
        "NoSuchPosition", "BadCursor",
    ]
    for name in names:
        cls = getattr(evstream, name)
        assert issubclass(cls, evstream.Error) and cls is not evstream.Error, name
    assert issubclass(evstream.Error, Exception)
    assert evstream.Error.__name__ == "Error"
    assert evstream.Corrupt.__module__ == "evstream"


def test_creating_over_an_existing_log_or_file_changes_nothing(tmp_path):
    log = tmp_path / "log"
    with evstream.LogWriter.create(log) as writer:
        writer.append(1, b"kept")
    before = _tree(log)
    with pytest.raises(evstream.AlreadyExists):
        evstream.LogWriter.create(log)
    assert _tree(log) == before
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"mine")
    with pytest.raises(evstream.AlreadyExists):
        evstream.StreamWriter.create(notes, 1 << 16)
    assert notes.read_bytes() == b"mine"
    # A log made in a directory that holds other files leaves them as they were.
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8\xff")
    evstream.LogWriter.create(folder).close()
    assert (folder / "cat.jpg").read_bytes() == b"\xff\xd8\xff"
