"""Every Python block of README.md and docs/*.md runs as written.

Each block is self-contained (it makes its own small data); it runs in a
fresh namespace, in a temporary working directory.
"""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks():
    for page in PAGES:
        with open(page) as handle:
            text = handle.read()
        for number, match in enumerate(BLOCK.finditer(text), start=1):
            line = text[:match.start()].count("\n") + 2
            name = f"{os.path.relpath(page, ROOT)}:{line}"
            yield pytest.param(name, match.group(1), id=name)


def test_every_page_has_python_blocks():
    for page in PAGES:
        if page.endswith("index.md"):
            continue
        with open(page) as handle:
            assert BLOCK.search(handle.read()), f"{page} has no ```python block"


@pytest.mark.parametrize("name, code", list(_blocks()))
def test_block_runs(name, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "tf.distribute" in code:
        # Strategies with cross-device collectives do not share a process
        # well (their collective instance keys collide): a fresh interpreter.
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                cwd=tmp_path, timeout=600)
        assert result.returncode == 0, f"{name}:\n{result.stderr[-3000:]}"
        return
    exec(compile(code, name, "exec"), {"__name__": "__docs__"})
