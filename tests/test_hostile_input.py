"""Hostile input against the real ``tidings`` command: bounded memory, an end, one clear line each.

Every case runs the installed CLI in its own process, under an address-space cap (a run-away
allocation fails there instead of taking the machine) and a generous time bound (before the
budgets these ran for hours or grew to gigabytes), and reads the child's own peak RSS with
``wait4``. The figures asserted are bounds, not timings: a normal ``validate`` peaks near
110 MB.

What each case feeds it is what a person with write access to the workspace, a CSV export or
the events API could send: a YAML alias bomb, a ``+_`` scalar, nested ``range`` loops,
string and integer blow-ups, NUL bytes, CR/LF and two addresses in one cell, JSON nested
thousands of levels deep.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_support import TIDINGS
from workspace_support import make_workspace

pytestmark = pytest.mark.slow

ADDRESS_SPACE_CAP = 2 << 30  # the child's virtual memory: a gigabyte-sized allocation fails at once
PEAK_RSS_BOUND = 400 << 20  # what any of these may reach (a clean validate: ~110 MB)
TIME_BOUND_SECONDS = 120  # a hang detector, not a timing: each finishes in seconds
PROBLEM_LINE = re.compile(r"^[^\s:][^:]*:\d+(:\d+)?: \S")
TOKEN = "hostile-events-token-0123456789"
BOMB = "\n".join(
    [
        'lol1: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"lol{n + 2}: &{chr(98 + n)} [{', '.join([f'*{chr(97 + n)}'] * 9)}]" for n in range(8)),
    ]
)
NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}"


@dataclass
class Run:
    code: int
    out: str
    err: str
    peak_rss: int

    def problem_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


#: Runs a command under the address-space cap and reports the command's own peak RSS.
#:
#: Linux carries a process's peak RSS across ``exec``: a child spawned straight from this test
#: process (``sh -c``, ``preexec_fn``, ``vfork``) starts with the test run's peak (550 MB late in
#: the suite) and ``wait4`` reports that. This launcher is a small fresh interpreter; the child it
#: *forks* gets a peak of its own (a new signal struct, a copy of the launcher's small memory),
#: which it measures with ``wait4`` and writes to ``report``.
LAUNCHER = """
import os, resource, sys
report, cap, *command = sys.argv[1:]
resource.setrlimit(resource.RLIMIT_AS, (int(cap), int(cap)))
pid = os.fork()
if pid == 0:
    os.execvp(command[0], command)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as out:
    out.write(str(usage.ru_maxrss * 1024))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def _capped(*command: str) -> list[str]:
    """``command`` under the address-space cap, for a server whose peak is read from ``/proc``
    (``VmHWM`` belongs to the memory of the program ``exec`` started, not to its parent's)."""
    return ["sh", "-c", f'ulimit -v {ADDRESS_SPACE_CAP >> 10} && exec "$@"', "sh", *command]


def base_env(workspace: Path) -> dict[str, str]:
    return {
        "TIDINGS_WORKSPACE": str(workspace),
        "TIDINGS_DATABASE_URL": f"sqlite:///{workspace / 'var' / 'tidings.db'}",
        "TIDINGS_SECRET_KEY": "h" * 40,
        "TIDINGS_EVENTS_TOKEN": TOKEN,
        "TIDINGS_LOG_FORMAT": "text",
        "PYTHONUNBUFFERED": "1",
    }


def measured(workspace: Path, *args: str) -> Run:
    """``tidings ARGS`` on ``workspace`` under the caps: exit code, output, its own peak RSS (wait4)."""
    environment = dict(os.environ) | base_env(workspace)
    report = workspace.parent / f"peak-rss-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(report), str(ADDRESS_SPACE_CAP), TIDINGS, *args],
        env=environment,
        cwd=workspace,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # the launcher and its child: killed together past the time bound
    )
    deadline = time.monotonic() + TIME_BOUND_SECONDS
    out = err = b""
    assert process.stdout is not None and process.stderr is not None
    os.set_blocking(process.stdout.fileno(), False)
    os.set_blocking(process.stderr.fileno(), False)
    while True:
        out += process.stdout.read() or b""
        err += process.stderr.read() or b""
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            os.wait4(process.pid, 0)
            pytest.fail(f"tidings {' '.join(args)} ran past {TIME_BOUND_SECONDS} s")
        time.sleep(0.05)  # polling a real child process
    out += process.stdout.read() or b""
    err += process.stderr.read() or b""
    process.returncode = os.waitstatus_to_exitcode(status)
    return Run(process.returncode, out.decode(), err.decode(), int(report.read_text()))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "shop")


def assert_bounded(run: Run) -> None:
    assert run.peak_rss < PEAK_RSS_BOUND, f"peak RSS {run.peak_rss >> 20} MB"
    assert "Traceback" not in run.err and "internal error" not in run.err, run.err


def test_validate_on_an_alias_bomb_is_one_located_problem_in_bounded_memory(workspace: Path) -> None:
    (workspace / "campaigns" / "laughs.yaml").write_text("name: Laughs\n" + BOMB + "\n")

    run = measured(workspace, "validate")

    assert_bounded(run)
    assert run.code == 1
    [problem] = [line for line in run.problem_lines() if "laughs.yaml" in line]
    assert re.search(r"laughs\.yaml:6:1: aliases here expand to more than 10,000 values", problem), problem


def test_validate_on_a_yaml_11_integer_without_digits_is_a_located_problem(workspace: Path) -> None:
    (workspace / "campaigns" / "odd.yaml").write_text("+_\n")

    run = measured(workspace, "validate")

    assert_bounded(run)
    assert run.code == 1
    assert any(re.search(r"odd\.yaml:1:1: ", line) for line in run.problem_lines()), run.err


def test_validate_on_nested_loops_reports_the_template_line_and_ends(workspace: Path) -> None:
    email = workspace / "templates" / "shipping-reminder" / "email.mjml"
    email.write_text(email.read_text().replace("order by Friday", "order by Friday " + NESTED_LOOPS))

    run = measured(workspace, "validate")

    assert_bounded(run)
    assert run.code == 1
    assert any(
        "shipping-reminder/email.mjml:8:1: the template ran more than 100,000 loop iterations" in line
        for line in run.problem_lines()
    ), run.err


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("'x' * 10**9", "1,000,000,000 characters"),
        ("(10**10000)|string", "digits"),
        ("'x'.center(10**9)", "center()"),
        ("[0] * 10**8", "items"),
    ],
)
def test_render_of_a_blow_up_is_one_located_line_in_bounded_memory(
    workspace: Path, expression: str, says: str
) -> None:
    email = workspace / "templates" / "holiday-greeting" / "email.mjml"
    email.write_text(email.read_text().replace("order by Friday", "{{ " + expression + " }}"))

    run = measured(workspace, "render", "holiday-greeting")

    assert_bounded(run)
    assert run.code == 1
    [line] = run.problem_lines()
    assert PROBLEM_LINE.match(line.removeprefix("tidings: ")) and "holiday-greeting/email.mjml:8: " in line
    assert says in line


def test_import_of_hostile_cells_rejects_those_rows_and_imports_the_rest(workspace: Path) -> None:
    rows = [{"email": f"c{n}@example.com", "first_name": f"C{n}"} for n in range(3000)]
    rows[1500]["first_name"] = "Bad\u0000Name"
    rows[1600]["first_name"] = "Ana\r\nBcc: everyone@example.com"
    rows[1700]["email"] = "a@x.com,victim@evil.example"
    rows[1800]["attributes"] = json.loads("[" * 40 + "]" * 40)  # type: ignore[assignment]
    lines = [json.dumps(row) for row in rows]
    lines[1900] = '{"email": "deep@example.com", "attributes": {"a": ' + "[" * 50_000 + "]" * 50_000 + "}}"
    path = workspace / "contacts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert measured(workspace, "db", "upgrade").code == 0

    run = measured(workspace, "import", "contacts", str(path))

    assert_bounded(run)
    assert run.code == 1
    rejected = [line for line in run.problem_lines() if line.startswith(str(path))]
    assert [int(line.split(":")[1]) for line in rejected] == [1501, 1601, 1701, 1801, 1901]
    assert "NUL" in rejected[0] and "(CR)" in rejected[1] and "not an email address" in rejected[2]
    assert "nested deeper than 32 levels" in rejected[3] and "nested too deeply" in rejected[4]
    assert "imported 2,995" in run.out + run.err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(workspace: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    environment = dict(os.environ) | base_env(workspace) | {"TIDINGS_PUBLIC_BIND": f"127.0.0.1:{port}"}
    process = subprocess.Popen(
        _capped(TIDINGS, "serve"),
        env=environment,
        cwd=workspace,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + TIME_BOUND_SECONDS
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"tidings serve did not start: {process.stderr.read().decode() if process.stderr else ''}"
                )
            time.sleep(0.1)  # waiting for a real process to listen
    yield base, process
    process.terminate()
    process.wait(timeout=30)


def post(base: str, body: bytes) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"{base}/events",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def event(event_id: str, **data: object) -> dict[str, object]:
    return {
        "id": event_id,
        "type": "custom.hostile",
        "occurred_at": "2026-12-01T10:00:00Z",
        "contact": {"email": f"{event_id}@example.com"},
        "data": data,
    }


def test_events_nested_hundreds_to_thousands_deep_are_4xx_and_the_valid_ones_are_stored(
    served: tuple[str, subprocess.Popen[bytes]],
) -> None:
    base, process = served
    deep = json.dumps(event("deep", x="DEEP")).replace('"DEEP"', "[" * 300 + "]" * 300)
    mixed = f"[{json.dumps(event('one'))}, {deep}, {json.dumps(event('two'))}]".encode()

    statuses = [
        post(base, mixed),
        post(base, mixed),  # the shop's retry: duplicates, never a 5xx loop
        post(base, b"[" * 200_000 + b"]" * 200_000),
        post(base, json.dumps(event("nul", note="a\u0000b")).encode()),
    ]

    assert statuses[0][0] == 207 and statuses[0][1]["stored"] == 2 and statuses[0][1]["rejected"] == [1]
    assert statuses[1][0] == 207 and statuses[1][1]["duplicate"] == 2
    assert statuses[2][0] == 400
    assert statuses[3][0] == 422
    usage = Path(f"/proc/{process.pid}/status").read_text()
    peak = int(re.search(r"VmHWM:\s+(\d+) kB", usage).group(1)) * 1024  # type: ignore[union-attr]
    assert peak < PEAK_RSS_BOUND, f"peak RSS {peak >> 20} MB"
