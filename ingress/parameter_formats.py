"""Declared formats for values a spec leaves free: what keeps a shift across the boundary of a
signature that concatenates values from passing (docs/security.md).

A format is a built-in name or a regular expression that must match the whole value. A format
whose values all have one length cannot take part in a shift at all: moving characters across a
boundary changes the length of both sides.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any

from ingress import fields
from ingress.verdicts import Rejection, Verdict
from schema.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence, Set

    from schema.settings import FormatSpec

__all__ = [
    "BUILT_IN",
    "ParameterFormat",
    "open_pair_warning",
    "open_pairs",
    "parse_format",
    "parse_formats",
]

_HEX = "[0-9A-Fa-f]"
_UUID = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
# Advertising ids are UUIDs of any version (a device that limits tracking sends all zeros).
_PATTERNS = {
    "uuid": _UUID,
    "gaid": _UUID,
    "idfa": _UUID,
    "android_id": f"{_HEX}{{16}}",
    "imei": "[0-9]{15}",
    # Six octets, separated by colons or by hyphens, the same separator throughout.
    "mac": f"{_HEX}{{2}}([:-]){_HEX}{{2}}(?:\\1{_HEX}{{2}}){{4}}",
    # Click ids and tokens: the characters a URL carries unescaped, bounded.
    "token": "[A-Za-z0-9._~-]{1,128}",
}
# Longest text the `text` format takes (an offer name, a sub id).
MAX_TEXT_LENGTH = 256
# The longest IPv6 address in text (an IPv4-mapped one written out in full).
_MAX_IP_LENGTH = 45
BUILT_IN = (*_PATTERNS, "ip", "text")
# What the regex engine computes for lookbehinds: the shortest and longest match of a pattern.
# The standard library has no public name for it; `sre_parse` warns on import since 3.11.
_regex_parser: Any = importlib.import_module("re._parser")


@dataclass(frozen=True)
class ParameterFormat:
    """One declared format; `describe` is what a refusal and the documentation call it."""

    describe: str
    pattern: re.Pattern[str] | None
    fixed_width: bool

    def check(self, name: str, value: str) -> str:
        """`value` if it has this format, else `Rejection(MALFORMED)` naming the parameter as
        sent and the format, never the value."""
        if self.pattern is not None:
            if not self.pattern.fullmatch(value):
                raise _out_of_format(name, self.describe)
        elif self.describe == "ip":
            # ipaddress takes an IPv6 zone (`%eth0`), which no client address has.
            if "%" in value or len(value) > _MAX_IP_LENGTH or not _is_ip(value):
                raise _out_of_format(name, "ip")
        else:
            fields.text(name, value, max_length=MAX_TEXT_LENGTH)
        return value


def _is_ip(value: str) -> bool:
    try:
        ip_address(value)
    except ValueError:
        return False
    return True


def _out_of_format(name: str, describe: str) -> Rejection:
    return Rejection(Verdict.MALFORMED, f"parameter {name!r} does not have its format {describe}")


def parse_format(spec: FormatSpec) -> ParameterFormat:
    """The format a setting names: a built-in name, or `{ regex = "..." }` matched in full.
    ConfigError names what to write instead."""
    if isinstance(spec, str):
        if spec in _PATTERNS:
            return ParameterFormat(spec, re.compile(_PATTERNS[spec]), fixed_width=spec != "token")
        if spec in BUILT_IN:
            return ParameterFormat(spec, None, fixed_width=False)
        raise ConfigError(
            f"unknown format {spec!r}; use one of {', '.join(BUILT_IN)} "
            'or a regular expression written as { regex = "..." }'
        )
    try:
        pattern = re.compile(spec.regex)
    except re.error as error:
        raise ConfigError(f"regex {spec.regex!r} does not compile: {error}") from None
    shortest, longest = _regex_parser.parse(spec.regex).getwidth()
    if shortest == 0:
        raise ConfigError(
            f"regex {spec.regex!r} matches the empty string; an absent value needs no format"
        )
    return ParameterFormat(f"regex {spec.regex}", pattern, fixed_width=shortest == longest)


def parse_formats(specs: Mapping[str, FormatSpec], setting: str) -> dict[str, ParameterFormat]:
    """Each name's format; ConfigError names the setting and the key."""
    parsed = {}
    for name, spec in specs.items():
        try:
            parsed[name] = parse_format(spec)
        except ConfigError as error:
            raise ConfigError(f"{setting}.{name}: {error}") from None
    return parsed


def open_pairs(
    order: Sequence[str],
    closed: Set[str],
    optional: Set[str],
    protected: Set[str],
    free_text: Set[str] = frozenset(),
) -> list[tuple[str, str]]:
    """The pairs of signed fields, in signing order, that a shift could cross and keep every
    check: next to each other once the optional fields between them are absent, one of them
    `protected` (what a shift would change to someone's gain), and either neither `closed` (a
    fixed length, or any change refused by a check of its own, such as an allowlist) or one
    `free_text` beside an optional one, whose whole value a copy can leave out and fold into
    it, whatever its format."""
    pairs = []
    for start, first in enumerate(order):
        for second in order[start + 1 :]:
            shiftable = not (first in closed or second in closed)
            foldable = (first in free_text and second in optional) or (
                second in free_text and first in optional
            )
            if (first in protected or second in protected) and (shiftable or foldable):
                pairs.append((first, second))
            if second not in optional:
                break
    return pairs


def open_pair_warning(first: str, second: str) -> str:
    """What start-up says of a pair `open_pairs` found."""
    return (
        f"{first!r} and {second!r} can be next to each other in the signing order and neither "
        "has a format of fixed length: characters shifted between them keep the signature, and "
        "a shifted copy that arrives before the original is credited instead of it; give one "
        "of them a format of fixed length (docs/security.md)"
    )
