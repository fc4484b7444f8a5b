"""Whatever is in a campaign file — random YAML structures, random bytes — loading it gives a list of
one-line problems with a line number, never an exception.

Inputs that once broke the loader are pinned with ``@example`` so they run on every machine,
whatever hypothesis draws there (see tests/conftest.py for the profiles).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.errors import Problem
from engine.workspace.loader import load_campaign_file

KEYS = st.sampled_from(
    [
        "name",
        "trigger",
        "steps",
        "audience",
        "at",
        "send",
        "template",
        "wait",
        "if",
        "then",
        "else",
        "where",
        "limits",
        "window",
        "start",
        "end",
        "cron",
        "calendar",
        "event",
        "type",
        "variants",
        "weight",
        "id",
        "segment",
        "consent",
        "order",
        "not",
        "any",
        "exit",
        "coupon",
        "schedule",
        "timezone",
        "status",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        ["2d", "-7d", "09:00", "2026-12-14T10:00", "exit", "email", "0 10 * * MON", "Europe/Tallinn"]
    )
    | st.text(max_size=12)
)
TREES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=25,
)
FOLDER = Path(tempfile.mkdtemp(prefix="tidings-fuzz-"))


def load_bytes(raw: bytes) -> list[Problem]:
    path = FOLDER / "fuzz.yaml"
    path.write_bytes(raw)
    campaign, problems = load_campaign_file(path)
    assert campaign is not None or problems, "a rejected file must say why"
    return problems


def assert_one_line_problems(problems: list[Problem]) -> None:
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.location.line >= 1 and problem.location.column >= 1
        assert problem.message and "\n" not in problem.message and "Traceback" not in problem.message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES)
def test_random_yaml_structures_give_one_line_problems(tree: object) -> None:
    # JSON is YAML: a simple way to write any nested structure (flow style) into the file.
    assert_one_line_problems(load_bytes(json.dumps(tree).encode()))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(KEYS, TREES, max_size=6))
def test_random_mappings_in_block_style_give_one_line_problems(tree: dict[str, object]) -> None:
    from io import StringIO

    from ruamel.yaml import YAML

    stream = StringIO()
    YAML(typ="safe", pure=True).dump(tree, stream)
    assert_one_line_problems(load_bytes(stream.getvalue().encode()))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
@example(b"+_")  # ruamel: IndexError on a YAML 1.1 integer without digits
@example(b"-_")
@example(b"0x_")
@example(b"name: 0b_\nsteps: [+_]")
@example(b"a: &a [*a]")  # an anchor used inside itself
@example(b"a: &a {k: [*a, *a]}\nb: *a")
@example(b"\xef\xbb\xbf+_")  # a BOM first
@example(b"a: \x85b")
@example(b"%YAML 1.1\n---\n+_")
def test_random_bytes_give_one_line_problems(raw: bytes) -> None:
    assert_one_line_problems(load_bytes(raw))


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{}\"' \n\t#&*!|>%@`,?0129")), max_size=80))
def test_random_yaml_punctuation_gives_one_line_problems(text: str) -> None:
    assert_one_line_problems(load_bytes(text.encode()))
