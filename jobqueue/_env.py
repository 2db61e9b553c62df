"""Settings read from environment variables: a bad value is one line naming the variable.

pydantic's ``ValidationError`` names a field and spans many lines; an operator who set
``JOBQUEUE_PRODUCT_EMBEDDING_ATTEMPTS=abc`` needs ``JOBQUEUE_PRODUCT_EMBEDDING_ATTEMPTS='abc':
expected an integer >= 1``.
"""

from __future__ import annotations

import types
import typing
from typing import TypeVar

import annotated_types
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from jobqueue.errors import ConfigurationError

S = TypeVar("S", bound=BaseSettings)

_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_BOUNDS = (
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "<="),
    (annotated_types.Lt, "lt", "<"),
)


def expected(info: FieldInfo) -> str:
    """What a field accepts, in words: ``an integer >= 1``, ``a number >= 0 and <= 1``."""
    annotation = info.annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = members[0] if len(members) == 1 else annotation
    kind = _KINDS.get(annotation, getattr(annotation, "__name__", str(annotation)))
    bounds = [
        f"{symbol} {getattr(item, attr):g}"
        for item in info.metadata
        for cls, attr, symbol in _BOUNDS
        if isinstance(item, cls)
    ]
    return " and ".join([kind + (" " + bounds[0] if bounds else ""), *bounds[1:]])


def describe(exc: ValidationError, fields: dict[str, FieldInfo], variables: dict[str, str]) -> str:
    """One line for every bad variable in ``exc``; ``variables`` maps field names to variable names."""
    by_key = {key.lower(): name for name in fields for key in (name, variables[name])}
    parts: dict[str, str] = {}
    for error in exc.errors():
        name = by_key.get(str(error["loc"][0]).lower()) if error["loc"] else None
        if name is None:
            parts.setdefault(str(error["loc"]), error["msg"])
        elif error["type"] == "value_error":
            # A validator's own message: it says what is wrong without echoing a secret.
            parts.setdefault(name, f"{variables[name]}: {str(error['msg']).removeprefix('Value error, ')}")
        else:
            parts.setdefault(name, f"{variables[name]}={error['input']!r}: expected {expected(fields[name])}")
    return "; ".join(parts.values())


def variable_names(settings_cls: type[BaseSettings]) -> dict[str, str]:
    """Field name -> the environment variable a settings class reads it from."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    return {
        name: (info.validation_alias if isinstance(info.validation_alias, str) else prefix + name).upper()
        for name, info in settings_cls.model_fields.items()
    }


def read_settings(settings_cls: type[S]) -> S:
    """``settings_cls()``; a bad environment value raises ``ConfigurationError`` in one line."""
    try:
        return settings_cls()
    except ValidationError as exc:
        message = describe(exc, settings_cls.model_fields, variable_names(settings_cls))
        raise ConfigurationError(message) from exc
