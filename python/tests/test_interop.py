"""Logs and stream files made by the command-line tool read from Python, and the
reverse, event for event and byte for byte."""

import base64
import json

import evstream

EVENTS = [
    (1_700_000_000_000_000_000, b"first"),
    (1_700_000_000_000_000_000, b""),
    (1_700_000_000_000_000_500, bytes(range(256))),
    (1_700_000_001_000_000_000, "caf\u00e9 \u2603".encode()),
    (1_700_000_002_000_000_000, b"x" * 5000),
]


def _payload(record: dict) -> bytes:
    if "payload_base64" in record:
        return base64.b64decode(record["payload_base64"])
    return record["payload"].encode()


def _jsonl(events) -> bytes:
    lines = []
    for ts, payload in events:
        record = {"timestamp": str(ts)}
        try:
            record["payload"] = payload.decode()
        except UnicodeDecodeError:
            record["payload_base64"] = base64.b64encode(payload).decode()
        lines.append(json.dumps(record))
    return ("\n".join(lines) + "\n").encode()


def _event_bytes(path, checksums=True) -> bytes:
    """The events of a stream file as stored: bytes 24 up to its write offset; without
    their checksums if not `checksums`: a log's segments are format version 3, whose
    checksums are seeded with a seed drawn for each segment, so two logs of the same
    events differ there."""
    end = evstream.StreamReader.open(path).stat().write_offset
    with open(path, "rb") as f:
        data = f.read()[24:end]
    if checksums:
        return data
    out = bytearray()
    at = 0
    while at < len(data):
        size = int.from_bytes(data[at + 8 : at + 12], "little")
        out += data[at : at + 12] + data[at + 16 : at + 16 + size]
        at += 16 + size
    return bytes(out)


def test_a_stream_written_by_the_cli_reads_back_from_python(tool, tmp_path):
    path = tmp_path / "cli.evs"
    tool.run("create", path, "--capacity", "1MiB")
    tool.run("append", path, "--format", "jsonl", input=_jsonl(EVENTS))
    events = list(evstream.StreamReader.open(path))
    assert [(e.timestamp, e.payload) for e in events] == EVENTS
    assert [e.offset for e in events] == [r["offset"] for r in tool.jsonl(path)]


def test_a_stream_written_from_python_is_byte_for_byte_the_clis(tool, tmp_path):
    ours, theirs = tmp_path / "py.evs", tmp_path / "cli.evs"
    with evstream.StreamWriter.create(ours, 1 << 20) as writer:
        offsets = [writer.append(ts, payload) for ts, payload in EVENTS]
    tool.run("create", theirs, "--capacity", "1MiB")
    tool.run("append", theirs, "--format", "jsonl", input=_jsonl(EVENTS))
    assert _event_bytes(ours) == _event_bytes(theirs)
    assert tool.run("cat", ours, "--format", "binary").stdout == tool.run("cat", theirs, "--format", "binary").stdout
    records = tool.jsonl(ours)
    assert [(int(r["timestamp"]), _payload(r), r["offset"]) for r in records] == [
        (ts, p, o) for (ts, p), o in zip(EVENTS, offsets)
    ]
    tool.run("verify", ours)


def test_a_log_written_by_the_cli_reads_back_from_python(tool, tmp_path):
    path = tmp_path / "cli-log"
    tool.run("create", path, "--log", "--segment-size", "64KiB")
    many = [(1_700_000_000_000_000_000 + i, b"event %d " % i + b"." * (i % 300)) for i in range(2000)]
    tool.run("append", path, "--format", "jsonl", input=_jsonl(many))
    reader = evstream.LogReader.open(path)
    assert reader.stat().segments > 1
    events = list(reader)
    assert [(e.timestamp, e.payload) for e in events] == many
    assert [e.position for e in events] == [r["position"] for r in tool.jsonl(path)]
    table = reader.to_arrow()
    assert table.column("position").to_pylist() == [e.position for e in events]


def _segments(log) -> list:
    """The names of a log's segment files, but for an empty spare (`.next-N.evs`) that its
    writer had prepared for the next roll when it closed, or had not yet."""
    return sorted(
        p.name for p in log.glob("*.evs") if not p.name.startswith(".") or _event_bytes(p)
    )


def test_a_log_written_from_python_reads_back_from_the_cli(tool, tmp_path):
    path = tmp_path / "py-log"
    many = [(1_700_000_000_000_000_000 + 7 * i, bytes([i % 256]) * (i % 100)) for i in range(3000)]
    with evstream.LogWriter.create(path, segment_size=64 << 10) as writer:
        positions = [writer.append(ts, payload) for ts, payload in many]
    records = tool.jsonl(path)
    assert [(int(r["timestamp"]), _payload(r)) for r in records] == many
    assert [r["position"] for r in records] == positions
    tool.run("verify", path)
    # The same events appended by the CLI to a log of the same segment size are stored
    # alike, segment by segment, but for the seeded checksums; both logs verify.
    theirs = tmp_path / "cli-log"
    tool.run("create", theirs, "--log", "--segment-size", "64KiB")
    tool.run("append", theirs, "--format", "jsonl", input=_jsonl(many))
    ours = _segments(path)
    assert ours == _segments(theirs)
    for name in ours:
        assert _event_bytes(path / name, False) == _event_bytes(theirs / name, False), name
    tool.run("verify", theirs)


def test_cursors_are_shared_with_the_cli(tool, tmp_path):
    path = tmp_path / "log"
    with evstream.LogWriter.create(path) as writer:
        for i in range(10):
            writer.append(1000 + i, b"%d" % i)
    reader = evstream.LogReader.open(path)
    assert reader.cursor("billing") is None
    assert reader.lag("billing") is None
    events = list(reader.iter_cursor("billing"))
    assert len(events) == 10
    reader.commit_cursor("billing", events[3])
    assert reader.cursor("billing") == events[4].position
    assert reader.lag("billing").events == 6
    # The CLI resumes where Python committed, and commits where it stopped.
    out = tool.run("cat", path, "--cursor", "billing", "--format", "raw").stdout
    assert out.split() == [b"4", b"5", b"6", b"7", b"8", b"9"]
    assert reader.cursor("billing") == reader.end()
    assert reader.lag("billing").events == 0
    assert list(reader.iter_cursor("billing")) == []
