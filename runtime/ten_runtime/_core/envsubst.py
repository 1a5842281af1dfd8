"""``${env:VAR}`` / ``${env:VAR|default}`` substitution in property stores (§9.4).

Only a string leaf that is *entirely* one placeholder is substituted; there is
no interpolation inside longer strings.  Inside the placeholder a backslash
escapes the next character.  The result is always a string.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .values import TValue, iter_string_leaves


class MissingEnvVar(LookupError):
    """``${env:VAR}`` without a default and VAR unset: fatal on the native runtime."""

    def __init__(self, var: str, placeholder: str) -> None:
        super().__init__(
            f"Environment variable '{var}' is not set and the placeholder "
            f"'{placeholder}' has no default"
        )
        self.var = var
        self.placeholder = placeholder


@dataclass
class Placeholder:
    var: str
    default: str | None


class PlaceholderSyntaxError(ValueError):
    pass


def parse_placeholder(text: str) -> Placeholder | None:
    """None when ``text`` is not a whole-string placeholder at all."""
    if not (text.startswith("${") and text.endswith("}")):
        return None
    inner = text[2:-1]
    scope, colon, rest = inner.partition(":")
    if not colon:
        raise PlaceholderSyntaxError(f"'{text}': expected '${{env:VAR}}'")
    if scope != "env":
        raise PlaceholderSyntaxError(f"'{text}': unsupported scope '{scope}' (only 'env')")
    var_chars: list[str] = []
    default_chars: list[str] | None = None
    i = 0
    while i < len(rest):
        ch = rest[i]
        if ch == "\\":
            if i + 1 >= len(rest):
                raise PlaceholderSyntaxError(f"'{text}': dangling escape")
            (default_chars if default_chars is not None else var_chars).append(rest[i + 1])
            i += 2
            continue
        if ch == "}":
            raise PlaceholderSyntaxError(f"'{text}': unexpected '}}' inside the placeholder")
        if ch == "|" and default_chars is None:
            default_chars = []
        else:
            (default_chars if default_chars is not None else var_chars).append(ch)
        i += 1
    var = "".join(var_chars)
    if not var:
        raise PlaceholderSyntaxError(f"'{text}': empty variable name")
    return Placeholder(var, None if default_chars is None else "".join(default_chars))


def substitute_env(
    store: TValue,
    log_warn: Callable[[str], None],
    environ: Mapping[str, str] | None = None,
) -> None:
    """Resolve placeholders in every string leaf, in place.

    Raises MissingEnvVar for an unset variable without default; a malformed
    placeholder is logged and left as is.
    """
    env = os.environ if environ is None else environ
    for leaf in list(iter_string_leaves(store)):
        try:
            placeholder = parse_placeholder(leaf.data)
        except PlaceholderSyntaxError as exc:
            log_warn(f"Failed to resolve the placeholder {exc}; the raw value is kept.")
            continue
        if placeholder is None:
            continue
        value = env.get(placeholder.var)
        if value is None:
            if placeholder.default is None:
                raise MissingEnvVar(placeholder.var, leaf.data)
            value = placeholder.default
        leaf.data = value
