"""`evstream.pyi` matches the module: every name, signature and default (mypy's stubtest)."""

import subprocess
import sys

import pytest


def test_the_stubs_match_the_module(tmp_path):
    pytest.importorskip("mypy", reason="stubtest needs mypy (.ci/run installs it)")
    config = tmp_path / "mypy.ini"
    # pyarrow and pandas ship no stubs; the native submodule is what the package re-exports.
    config.write_text("[mypy]\nignore_missing_imports = True\n")
    allow = tmp_path / "allowlist"
    allow.write_text("evstream.evstream\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "evstream", "--mypy-config-file", str(config),
         "--allowlist", str(allow), "--ignore-disjoint-bases"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert done.returncode == 0, done.stdout.decode()
