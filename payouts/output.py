"""What every `payouts` subcommand shares on the command line: the `--json` switch, and output
as indented text or as JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from schema.plain_values import plain_value

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

__all__ = ["add_command", "print_data"]


def print_data(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, default=plain_value, indent=2))
        return
    _print_text(data, indent=0)


def _print_text(data: Any, indent: int) -> None:
    pad = "  " * indent
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict | list) and value:
                print(f"{pad}{key}:")
                _print_text(value, indent + 1)
            else:
                print(f"{pad}{key}: {plain_value(value)}")
    elif isinstance(data, list):
        for item in data:
            print(f"{pad}-")
            _print_text(item, indent + 1)
    else:
        print(f"{pad}{data}")


def add_command(
    parent: Any, name: str, handler: Callable[[argparse.Namespace], int], help_text: str
) -> argparse.ArgumentParser:
    """A subcommand with its handler and the `--json` switch every command has."""
    sub: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(handler=handler)
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    return sub
