"""Old path of :mod:`fasterrcnn.config_json`."""

from fasterrcnn.config_json import (
    ConfigError,
    config_differences,
    config_from_dict,
    config_from_json,
    config_to_dict,
    config_to_json,
)

__all__ = [
    "ConfigError",
    "config_differences",
    "config_from_dict",
    "config_from_json",
    "config_to_dict",
    "config_to_json",
]
