"""Run every ``bench/*.py`` module that defines ``main()``, in turn, each with its default options.

``python -m bench`` runs all but the on-demand ones; ``python -m bench render demo_data soak``
runs the named ones. A benchmark that fails is reported and the others still run; the exit code
is 1 then.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

#: Run only when named: the soak takes ~8 minutes at its default 100,000 contacts (five kills, each
#: given a lease to recover), more than a routine ``make bench`` should.
ON_DEMAND = {"soak"}


def _modules() -> list[str]:
    folder = Path(__file__).parent
    return sorted(
        info.name
        for info in pkgutil.iter_modules([str(folder)])
        if not info.name.startswith("_") and info.name not in ON_DEMAND
    )


def main(names: list[str]) -> int:
    failed = 0
    for name in names or _modules():
        module = importlib.import_module(f"bench.{name}")
        entry = getattr(module, "main", None)
        if not callable(entry):
            continue
        print(f"== bench/{name}.py", flush=True)
        started = time.perf_counter()
        try:
            result = entry([])
        except SystemExit as exc:
            result = exc.code
        except Exception:  # noqa: BLE001 — one broken benchmark must not hide the others' figures
            traceback.print_exc()
            result = 1
        if result not in (None, 0):
            failed += 1
        print(f"== bench/{name}.py finished in {time.perf_counter() - started:.1f} s\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
