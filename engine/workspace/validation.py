"""Turn pydantic's validation errors into one-line problems at the line of the defect.

pydantic reports where an error is as a path of keys, indexes and — for unions — tags such as
``<send>``; the path is mapped back onto the YAML data (tags are dropped) and looked up in the
file's :class:`~engine.workspace.yaml_source.SourceMap`. Messages say what was expected and offer
"did you mean …" for misspelt keys, using the field names of the model at that place.
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from engine.errors import Problem
from engine.workspace.yaml_source import Loc, YamlDocument

M = TypeVar("M", bound=BaseModel)
_MISSING = object()
STEP_KINDS = ("send", "post", "wait", "if", "coupon", "exit")


def validate_document(model: type[M], document: YamlDocument) -> tuple[M | None, list[Problem]]:
    """Validate a parsed file against ``model``; the instance, or ``None`` and the problems."""
    try:
        return model.model_validate(document.data), []
    except ValidationError as exc:
        return None, problems_from(exc, model, document)
    except RecursionError:
        return None, [Problem(document.source.location(()), "the YAML is nested too deeply to read")]


def problems_from(exc: ValidationError, model: type[BaseModel], document: YamlDocument) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[Loc] = set()
    errors = exc.errors(include_url=False)
    misspelt = _misspelt_missing(errors, model, document)
    for error in errors:
        data_loc = _data_loc(document.data, error["loc"])
        if error["type"] == "missing" and data_loc in misspelt:
            continue  # "unknown key 'triger'; did you mean 'trigger'?" already says it
        key = (*data_loc, error["type"]) if error["type"] == "extra_forbidden" else data_loc
        if key in seen:
            continue  # one problem per place: a union reports each of its members' errors
        seen.add(key)
        at_key = error["type"] in ("extra_forbidden", "missing")
        location = document.source.location(
            data_loc[:-1] if error["type"] == "missing" else data_loc, at_key=at_key
        )
        problems.append(Problem(location, _one_line(_message(error, data_loc, model))))
    return problems


def _misspelt_missing(errors: list[ErrorDetails], model: type[BaseModel], document: YamlDocument) -> set[Loc]:
    """Missing keys for which an unknown key next to them is a close misspelling."""
    missing = {_data_loc(document.data, e["loc"]) for e in errors if e["type"] == "missing"}
    covered: set[Loc] = set()
    for error in errors:
        if error["type"] != "extra_forbidden":
            continue
        data_loc = _data_loc(document.data, error["loc"])
        known = _known_keys(model, error["loc"][:-1])
        for hint in difflib.get_close_matches(str(data_loc[-1]), known, n=1, cutoff=0.6):
            if (*data_loc[:-1], hint) in missing:
                covered.add((*data_loc[:-1], hint))
    return covered


# ---------------------------------------------------------------------------------------------
# Locations


def _data_loc(data: Any, loc: tuple[str | int, ...]) -> Loc:
    """The part of pydantic's error path that exists in the data (tags and union member names dropped)."""
    out: list[str | int] = []
    current: Any = data
    for item in loc:
        in_dict = isinstance(current, dict) and isinstance(item, str) and item in current
        in_list = isinstance(current, list) and isinstance(item, int) and 0 <= item < len(current)
        if in_dict or in_list:
            out.append(item)
            current = current[item]
        elif isinstance(item, str) and (_is_tag(item) or not isinstance(current, dict)):
            continue
        else:
            out.append(item)  # a missing key: the nearest written parent is used for its line
            current = _MISSING
    return tuple(out)


def _is_tag(item: str) -> bool:
    return item.startswith("<") or "[" in item or "(" in item


def _label(data_loc: Loc) -> str:
    text = ""
    for item in data_loc:
        text += f"[{item}]" if isinstance(item, int) else (f".{item}" if text else item)
    return text


# ---------------------------------------------------------------------------------------------
# Messages


def _message(error: ErrorDetails, data_loc: Loc, model: type[BaseModel]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        name = str(data_loc[-1])
        known = _known_keys(model, error["loc"][:-1])
        where = f" in {_label(data_loc[:-1])}" if data_loc[:-1] else ""
        return f"unknown key {_quote(name)}{where}{_suggest(name, known)}{_expected(known)}"
    if kind == "missing":
        name = str(data_loc[-1]) if data_loc else "?"
        where = f" in {_label(data_loc[:-1])}" if data_loc[:-1] else ""
        return f"missing required key '{name}'{where}"
    if kind == "step_kind":
        return _step_kind_message(value)
    if kind == "filter_shape":
        return _filter_shape_message(value)
    label = _label(data_loc)
    prefix = f"{label}: " if label else ""
    return prefix + _describe(error)


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    message = str(error["msg"])
    if kind.startswith("model_") or kind in ("dict_type", "model_attributes_type", "dataclass_type"):
        return f"expected a mapping of keys (key: value), got {_show(value)}"
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", ""))
        options = re.findall(r"'([^']*)'", expected)
        hint = _suggest(str(value), options) if isinstance(value, str) else ""
        return f"expected {expected}, got {_show(value)}{hint}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        if pattern.startswith("^[A-Za-z0-9][A-Za-z0-9_.-]*"):
            return f"expected a name of letters, digits, '-', '_' and '.', got {_show(value)}"
        if pattern == "^[A-Z0-9]{0,12}$":
            return f"expected up to 12 capital letters or digits, got {_show(value)}"
        return f"expected text matching {pattern}, got {_show(value)}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "expected a number " + message[len("Input should be ") :] + f", got {_show(value)}"
    if message.startswith("Value error, "):
        return message[len("Value error, ") :]
    if kind in _CUSTOM_KINDS or not message.startswith("Input should be"):
        if kind in ("too_short", "too_long") and isinstance(value, list | dict | str):
            return f"{_lower_first(message)}, got {_show(value)}"
        return _lower_first(message)
    return "expected " + message[len("Input should be ") :] + f", got {_show(value)}"


_CUSTOM_KINDS = {
    "duration",
    "expression",
    "cron",
    "local_datetime",
    "date",
    "time_of_day",
    "zone",
    "event_type",
    "time_window",
    "filter",
    "filter_field",
    "filter_op",
    "filter_value",
    "trigger_count",
    "send_template",
    "variant_repeat",
    "window_order",
    "audience_empty",
    "offset_days",
    "offset_repeat",
    "hold_repeat",
}


def _step_kind_message(value: object) -> str:
    kinds = ", ".join(STEP_KINDS)
    if isinstance(value, dict):
        present = [k for k in STEP_KINDS if k in value]
        if len(present) > 1:
            return f"a step does one thing, found {' and '.join(present)}: split it into separate steps"
        unknown = [str(k) for k in value if k not in ("id", "then", "else")]
        if unknown:
            name = unknown[0]
            return f"unknown step {_quote(name)}{_suggest(name, STEP_KINDS)}; a step is one of {kinds}"
        return f"a step needs one of {kinds}"
    if isinstance(value, str):
        hint = _suggest(value, STEP_KINDS)
        return f"unknown step {_quote(value)}{hint}; a step is one of {kinds} (exit is the only bare word)"
    return f"expected a step (one of {kinds}), got {_show(value)}"


def _filter_shape_message(value: object) -> str:
    if isinstance(value, dict) and len(value) > 1:
        names = ", ".join(str(k) for k in value)
        return f"one condition per list item, found {names}: put each on its own '- ' line"
    if isinstance(value, dict):
        return "expected a condition such as consent: email, got an empty mapping"
    return f"expected a condition such as consent: email or country: EE, got {_show(value)}"


def _quote(text: str) -> str:
    """User text in a message: quoted, and escaped when it holds line breaks or other controls."""
    return f"'{text}'" if text.isprintable() else repr(text)


def _one_line(text: str) -> str:
    return text if text.isprintable() else text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")


def _suggest(name: str, candidates: list[str] | tuple[str, ...]) -> str:
    hint = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{hint[0]}'?" if hint else ""


def _expected(known: list[str]) -> str:
    return f" (expected one of: {', '.join(known)})" if known else ""


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _show(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "…"


# ---------------------------------------------------------------------------------------------
# Which keys a model accepts at an error path (for "did you mean")


def _known_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    target = _type_at(model, loc)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return [info.alias or name for name, info in target.model_fields.items()]
    return []


def _type_at(root: Any, loc: tuple[str | int, ...]) -> Any:
    current: Any = root
    for item in loc:
        current = _descend(_strip(current), item)
        if current is None:
            return None
    return _strip(current)


def _strip(tp: Any) -> Any:
    """Remove ``Annotated`` wrappers and ``| None``."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _descend(tp: Any, item: str | int) -> Any:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, info in tp.model_fields.items():
            if item in (name, info.alias):
                return info.annotation
        return None
    origin = get_origin(tp)
    if origin in (list, tuple) and isinstance(item, int):
        return get_args(tp)[0]
    if origin is dict and isinstance(item, str):
        return get_args(tp)[1]
    if origin in (Union, types.UnionType):
        for member in get_args(tp):
            if get_origin(member) is Annotated:
                for meta in get_args(member)[1:]:
                    if getattr(meta, "tag", None) == item:
                        return get_args(member)[0]
            stripped = _strip(member)
            if getattr(stripped, "__name__", None) == item:
                return stripped
        return None
    return None
