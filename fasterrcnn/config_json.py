"""A :class:`~fasterrcnn.config.ModelConfig` as plain JSON data, and back, checked field by field.

The conversion follows the dataclasses' own fields and type hints, so a new field needs no code
here: nested dataclasses become JSON objects, tuples JSON arrays (and tuples again when read),
``Literal`` values are checked against their choices and ``X | None`` accepts ``null``.
Reading is strict: a missing or unknown field or a value of the wrong type is a
:class:`ConfigError` whose one-line message names the field, e.g.
``config.rpn.nms_threshold: expected a number, got "x"``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from fasterrcnn.config import ModelConfig

ROOT = "config"


class ConfigError(ValueError):
    """A configuration that does not fit :class:`ModelConfig`; the message is one line."""


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """``config`` as JSON-ready data: dicts, lists, strings, numbers, booleans and None.

    Every value is checked against its field's type on the way (a wrong one is a
    :class:`ConfigError` naming the field), so the result always reads back with
    :func:`config_from_dict`.
    """
    if not isinstance(config, ModelConfig):
        raise ConfigError(f"{ROOT}: expected a ModelConfig, got {type(config).__name__}")
    data = _convert(config, ModelConfig, ROOT, to_json=True)
    assert isinstance(data, dict)
    return data


def config_from_dict(data: Mapping[str, Any]) -> ModelConfig:
    """The :class:`ModelConfig` that :func:`config_to_dict` turned into ``data``.

    Every field must be present (defaults are not filled in: a file states its whole model),
    none may be unknown, and each value must have its field's type.
    """
    config = _convert(data, ModelConfig, ROOT, to_json=False)
    assert isinstance(config, ModelConfig)
    return config


def config_to_json(config: ModelConfig) -> str:
    """``config`` as a compact JSON text (keys in field order)."""
    return json.dumps(config_to_dict(config), separators=(",", ":"))


def config_from_json(text: str) -> ModelConfig:
    """The :class:`ModelConfig` of a JSON text written by :func:`config_to_json`."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"{ROOT}: not valid JSON ({err})") from None
    return config_from_dict(data)


def config_differences(a: ModelConfig, b: ModelConfig) -> list[str]:
    """The field paths (``"body.depth"``, ``"classes.names"``) whose values differ."""

    def flatten(data: Any, prefix: str) -> dict[str, Any]:
        if isinstance(data, dict):
            flat: dict[str, Any] = {}
            for key, item in data.items():
                flat.update(flatten(item, f"{prefix}{key}."))
            return flat
        return {prefix[:-1]: data}

    flat_a = flatten(config_to_dict(a), "")
    flat_b = flatten(config_to_dict(b), "")
    return [key for key in flat_a if flat_a[key] != flat_b.get(key)]


# --------------------------------------------------------------------------- conversion

_SCALARS: dict[type, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
}


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """The resolved type hint of each constructor field of dataclass ``cls``, in order."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _show(value: Any) -> str:
    """A short rendering of a bad value for an error message."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _convert(value: Any, hint: Any, path: str, *, to_json: bool) -> Any:
    """``value`` of type ``hint`` as JSON data (``to_json``) or from JSON data."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _convert_dataclass(value, hint, path, to_json=to_json)
    origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        # 1 == 1.0 == True in Python; a choice must match in type as well as in value.
        if not any(type(value) is type(choice) and value == choice for choice in choices):
            expected = ", ".join(_show(choice) for choice in choices)
            raise ConfigError(f"{path}: expected one of {expected}, got {_show(value)}")
        return value
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{path}: config_io supports only `X | None` unions, not {hint}")
        if value is None:
            return None
        return _convert(value, options[0], path, to_json=to_json)
    if origin is tuple:
        return _convert_tuple(value, get_args(hint), path, to_json=to_json)
    if hint in _SCALARS:
        return _convert_scalar(value, hint, path)
    raise TypeError(f"{path}: config_io does not support fields of type {hint}")


def _convert_scalar(value: Any, kind: type, path: str) -> Any:
    # bool is an int subclass: it is accepted only where a bool is expected.
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ConfigError(f"{path}: expected {_SCALARS[kind]}, got {_show(value)}")
    return float(value) if kind is float else value


def _convert_tuple(value: Any, args: tuple[Any, ...], path: str, *, to_json: bool) -> Any:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{path}: expected a list, got {_show(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        item_types = [args[0]] * len(value)
    else:
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} items, got {len(value)}")
        item_types = list(args)
    items = [
        _convert(item, item_type, f"{path}[{i}]", to_json=to_json)
        for i, (item, item_type) in enumerate(zip(value, item_types, strict=True))
    ]
    return items if to_json else tuple(items)


def _convert_dataclass(value: Any, cls: type, path: str, *, to_json: bool) -> Any:
    field_types = _field_types(cls)
    if to_json:
        if not isinstance(value, cls):
            raise ConfigError(f"{path}: expected a {cls.__name__}, got {type(value).__name__}")
        return {
            name: _convert(getattr(value, name), hint, f"{path}.{name}", to_json=True)
            for name, hint in field_types.items()
        }
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected an object ({cls.__name__}), got {_show(value)}")
    unknown = [key for key in value if key not in field_types]
    if unknown:
        raise ConfigError(f"{path}: unknown field {_show(unknown[0])} in {cls.__name__}")
    missing = [name for name in field_types if name not in value]
    if missing:
        raise ConfigError(f"{path}: missing field {_show(missing[0])} of {cls.__name__}")
    kwargs = {
        name: _convert(value[name], hint, f"{path}.{name}", to_json=False)
        for name, hint in field_types.items()
    }
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:  # the dataclass's own consistency checks
        raise ConfigError(f"{path}: {err}") from None
