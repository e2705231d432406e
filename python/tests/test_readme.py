"""The README's example under "From Python" runs as written."""

import re
import shutil
import subprocess
import sys

from conftest import REPO


def test_the_readme_example_runs(tmp_path):
    text = (REPO / "README.md").read_text()
    section = text[text.index("## From Python"):]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    done = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode().splitlines()
    assert out[-1] == "2"
    assert "README.md is not a stream file: " in out[-2]
    assert (tmp_path / "README.md").read_text() == text
