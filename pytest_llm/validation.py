"""Turn a model's text into a validated value, or say precisely why not.

Order: parse JSON (when a schema or ``json_mode`` asks for it; a fenced code
block is tolerated), then the pydantic model or JSON Schema (Draft 2020-12),
then the ``check`` callable. ``pydantic`` and ``jsonschema`` are imported on
first use only.

A ``check`` rejects an output by raising ``AssertionError`` or ``ValueError``
(pydantic's ``ValidationError`` is one) or by returning ``False``. Any other exception
is a bug in the check, raised as :class:`~pytest_llm.CheckError` at once; an
``LLMError`` other than a quality failure (a model-backed check hitting a server
fault) propagates as it is.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import CheckError, ConfigError, LLMError, QualityFailure

if TYPE_CHECKING:
    import jsonschema
    from pydantic import BaseModel

__all__ = [
    "Check",
    "CheckRejected",
    "Rejected",
    "Schema",
    "check_schema",
    "format_for",
    "format_path",
    "validate",
]

Schema: TypeAlias = "type[BaseModel] | Mapping[str, Any]"
Check: TypeAlias = Callable[[Any], object]

_FENCE = re.compile(r"```[\w+-]*[ \t]*\n?")
#: Closing fences tried for one opening (a JSON string may hold a fence of its own).
_FENCE_ENDS = 20


class Rejected(Exception):
    """An output failed validation; the message says why.

    Raised as such for JSON and schema errors: format feedback, told to the model on a
    re-ask so that it can fix the format.
    """


class CheckRejected(Rejected):
    """The ``check`` rejected the output. Its message is content feedback that can hold the
    expected answer ("must name Paris"): the model is told only with ``check_feedback``."""


def is_pydantic_model(schema: object) -> bool:
    if not isinstance(schema, type):
        return False
    from pydantic import BaseModel

    return issubclass(schema, BaseModel)


def format_for(schema: Schema | None, json_mode: bool) -> str | dict[str, Any] | None:
    """The ``format`` to send: the JSON Schema of ``schema``, ``"json"``, or nothing."""
    if schema is None:
        return "json" if json_mode else None
    if is_pydantic_model(schema):
        return _model_schema(schema)
    if isinstance(schema, Mapping):
        return dict(schema)
    raise ConfigError(
        f"schema must be a pydantic model class or a JSON Schema dict, not {type(schema).__name__}"
    )


def check_schema(schema: Schema | None) -> None:
    """Raise ``ConfigError`` before any call when ``schema`` is a dict that is no valid JSON
    Schema (or cannot be sent as JSON); a pydantic model is checked by pydantic itself."""
    if isinstance(schema, Mapping):
        json_schema_validator(schema)


@functools.lru_cache(maxsize=256)
def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A pydantic model's JSON Schema, built once per class (it takes ~0.2 ms each time)."""
    return model.model_json_schema()


def format_path(parts: Iterable[str | int]) -> str:
    """``("items", 2, "price")`` → ``items[2].price``; the empty path is ``<root>``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def parse_json(text: str) -> Any:
    """Parse ``text`` as JSON, accepting a single fenced code block around it.

    The block ends at the first closing fence after which it is JSON: a string in the
    JSON may hold a fence too (``{"code": "```py\\n...```"}``).
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        match = _FENCE.search(text)
        start = match.end() if match else -1
        end = text.find("```", start) if match else -1
        for _ in range(_FENCE_ENDS):
            if end < 0:
                break
            try:
                return json.loads(text[start:end])
            except json.JSONDecodeError:
                end = text.find("```", end + 3)
        shown = repr(text if len(text) <= 80 else text[:77] + "...")
        if len(shown) > 90:  # escapes (\x00, \U000e0000) lengthen the quoted text
            shown = shown[:86] + "...'"
        raise Rejected(
            f"the output is not valid JSON ({exc.msg} at char {exc.pos}): {shown}"
        ) from None


_validators: dict[int, tuple[Mapping[str, Any], jsonschema.protocols.Validator]] = {}
_validators_lock = threading.Lock()


def json_schema_validator(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    """A Draft 2020-12 validator for ``schema``, built once per schema object."""
    cached = _validators.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        at = format_path(exc.absolute_path)
        raise ConfigError(
            f"schema= is not a valid JSON Schema (Draft 2020-12): at {at}: {exc.message}; "
            "fix that part, or pass a pydantic model class"
        ) from None
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"schema= cannot be sent as JSON: {exc}; a JSON Schema holds only dicts, lists, "
            "strings, numbers, booleans and None"
        ) from None
    validator = jsonschema.Draft202012Validator(schema)
    with _validators_lock:
        if len(_validators) > 256:
            _validators.clear()
        _validators[id(schema)] = (schema, validator)
    return validator


def conform(value: Any, schema: Schema) -> tuple[Any, list[tuple[str, str]]]:
    """Validate ``value`` once: (the model instance or the value, ``[(path, message)]``)."""
    if is_pydantic_model(schema):
        from pydantic import ValidationError

        try:
            return schema.model_validate(value), []  # type: ignore[union-attr]
        except ValidationError as exc:
            return value, [(format_path(e["loc"]), e["msg"]) for e in exc.errors()]
    validator = json_schema_validator(schema)  # type: ignore[arg-type]
    errors = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    return value, [(format_path(e.absolute_path), e.message) for e in errors]


def _apply_schema(value: Any, schema: Schema) -> Any:
    conformed, errors = conform(value, schema)
    if errors:
        lines = [f"{path}: {message}" for path, message in errors[:10]]
        raise Rejected("the output does not match the schema:\n" + "\n".join(lines))
    return conformed


def run_check(check: Check, value: Any, *, given: str = "") -> None:
    """Run ``check`` on ``value``: return (accepted), raise :class:`CheckRejected` (rejected),
    or raise :class:`~pytest_llm.CheckError` (the check itself broke). ``given`` says what
    the check received, for that error's message."""
    __tracebackhide__ = True  # a broken check's traceback starts at the check
    name = getattr(check, "__name__", type(check).__name__)
    try:
        verdict = check(value)
    except (AssertionError, ValueError) as exc:
        if isinstance(exc, LLMError) and not isinstance(exc, QualityFailure):
            raise  # a ConfigError: a setting is wrong, which no answer can fix
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, AssertionError) and not isinstance(exc, QualityFailure):
            # pytest's assertion rewriting appends an explanation whose "where" lines can
            # hold memory addresses: the model (and the cassette key) get the author's line
            reason = reason.split("\n", 1)[0]
        raise CheckRejected(f"check {name} rejected the output: {reason}") from None
    except LLMError:
        raise  # a check that calls a model: a server fault there is no verdict
    except Exception as exc:
        detail = str(exc)
        raise CheckError(
            f"check {name} raised {type(exc).__name__}{': ' + detail if detail else ''}: "
            f"a bug in the check, not a rejection of the answer (the model was not re-asked). "
            f"It received {given or 'a ' + type(value).__name__}. A check rejects an answer "
            "by raising AssertionError or ValueError or by returning False; the check's "
            "traceback is above."
        ) from exc
    if verdict is False:
        raise CheckRejected(f"check {name} returned False")


def _given(value: Any, schema: Schema | None, json_mode: bool) -> str:
    """What a check received, in words: ``a City instance (schema=City, a pydantic model)``."""
    kind = type(value).__name__
    if schema is not None and is_pydantic_model(schema):
        return f"a {kind} instance (schema={schema.__name__}, a pydantic model)"  # type: ignore[union-attr]
    if schema is not None:
        return f"the parsed JSON (a {kind}; schema= is a JSON Schema dict)"
    if json_mode:
        return f"the parsed JSON (a {kind}; json_mode=True)"
    return f"the text (a {kind}; no schema and no json_mode)"


def validate(
    content: str,
    *,
    schema: Schema | None = None,
    json_mode: bool = False,
    check: Check | None = None,
) -> Any:
    """Validate one output; return the parsed value (or ``None`` for plain text).

    ``check`` receives the pydantic instance for a pydantic ``schema``, the parsed JSON
    value for a JSON Schema dict or ``json_mode``, otherwise the text. Raises
    :class:`Rejected` (format) or :class:`CheckRejected` (the check) with a message that
    says why, and :class:`~pytest_llm.CheckError` when the check itself breaks.
    """
    __tracebackhide__ = True  # a broken check's traceback starts at the check
    parsed: Any = None
    if schema is not None or json_mode:
        parsed = parse_json(content)
        if schema is not None:
            parsed = _apply_schema(parsed, schema)
    if check is not None:
        value = parsed if schema is not None or json_mode else content
        run_check(check, value, given=_given(value, schema, json_mode))
    return parsed
