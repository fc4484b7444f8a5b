"""Where the ``tidings`` command of the running interpreter lives, for tests that start it as a process.

Found next to ``sys.executable`` (the virtual environment the tests run in), else on ``PATH``:
never a path of one particular machine.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def tidings_executable() -> str:
    beside = Path(sys.executable).parent / "tidings"
    if beside.is_file():
        return str(beside)
    found = shutil.which("tidings")
    if found is None:
        raise RuntimeError("the tidings command is not installed in this environment (pip install -e .)")
    return found


TIDINGS = tidings_executable()
