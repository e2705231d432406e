"""Shared fixtures: the `evstream` command-line tool, and files to read."""

import json
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _build_cli() -> str:
    """Builds the `evstream` binary with cargo and returns its path."""
    out = subprocess.run(
        ["cargo", "build", "-p", "evstream-cli", "--message-format=json-render-diagnostics"],
        cwd=REPO,
        check=True,
        stdout=subprocess.PIPE,
    ).stdout
    for line in out.decode().splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            if message["target"]["name"] == "evstream":
                return message["executable"]
    raise RuntimeError("cargo built no evstream binary")


@pytest.fixture(scope="session")
def cli() -> str:
    """The `evstream` binary: `$EVSTREAM_BIN` (set by .ci/run), or built with cargo."""
    path = os.environ.get("EVSTREAM_BIN") or _build_cli()
    assert os.access(path, os.X_OK), f"{path} is not an executable"
    return path


class Cli:
    def __init__(self, binary: str, cwd: pathlib.Path):
        self.binary = binary
        self.cwd = cwd

    def run(self, *args, input: bytes = b"", check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [self.binary, *map(str, args)],
            cwd=self.cwd,
            input=input,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "NO_COLOR": "1"},
        )
        if check and done.returncode != 0:
            raise AssertionError(f"evstream {args} failed: {done.stderr.decode()}")
        return done

    def jsonl(self, *args) -> list:
        out = self.run("cat", *args, "--format", "jsonl").stdout.decode()
        return [json.loads(line) for line in out.splitlines()]

    def error(self, *args) -> str:
        """The one-line message of a command that must fail."""
        done = self.run(*args, check=False)
        assert done.returncode != 0, f"evstream {args} succeeded"
        text = done.stderr.decode().strip()
        assert text.startswith("error: "), text
        return text[len("error: "):]


@pytest.fixture
def tool(cli, tmp_path) -> Cli:
    return Cli(cli, tmp_path)
