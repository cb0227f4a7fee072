"""What an item id may be: one rule, checked the same way by manifests, the CLI and the service.

An id is 1 to ``MAX_ID_CHARS`` characters of printable text: letters, digits, punctuation,
symbols and inner spaces of any script. Not allowed: control and format characters (NUL, line
breaks, tabs, zero-width and direction marks), a backslash, spaces at either end, and ``/``
used other than between two names (no leading or trailing ``/``, no empty, ``.`` or ``..``
part). Ids with ``/`` come from datasets in nested folders (``train/cat``).

Example:
    >>> check_item_id("1000268201_693b08cb0e")
    '1000268201_693b08cb0e'
    >>> check_item_id("train-0000\\x00x")
    Traceback (most recent call last):
    InvalidItemId: item id 'train-0000\\x00x' has a control character (U+0000) at position 10; ...
"""

from __future__ import annotations

import unicodedata

MAX_ID_CHARS = 200
# Unicode categories refused: control, format, surrogate, private use, line and paragraph separators.
_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "a format character",
    "Cs": "a lone surrogate",
    "Co": "a private-use character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
RULE = (
    f"ids are 1 to {MAX_ID_CHARS} printable characters without control characters, backslashes or spaces at either end; "
    f"'/' only between two names"
)


class InvalidItemId(ValueError):
    """An item id outside the rule; the message names the id, what is wrong and the rule."""


def check_item_id(value) -> str:
    """``value`` if it is a valid item id; raises ``InvalidItemId`` otherwise."""
    if not isinstance(value, str):
        raise InvalidItemId(f"item id {value!r} is not text; {RULE}")
    if not value:
        raise InvalidItemId(f"the item id is empty; {RULE}")
    if len(value) > MAX_ID_CHARS:
        raise InvalidItemId(f"item id {value[:40]!r}... is {len(value)} characters long; {RULE}")
    for position, char in enumerate(value):
        category = unicodedata.category(char)
        if category in _REFUSED_CATEGORIES:
            raise InvalidItemId(
                f"item id {value!r} has {_REFUSED_CATEGORIES[category]} (U+{ord(char):04X}) at position {position}; {RULE}"
            )
        if char == "\\":
            raise InvalidItemId(f"item id {value!r} has a backslash at position {position}; {RULE}")
    if value != value.strip():
        raise InvalidItemId(f"item id {value!r} starts or ends with a space; {RULE}")
    if "/" in value and any(part in ("", ".", "..") or part != part.strip() for part in value.split("/")):
        raise InvalidItemId(f"item id {value!r} has an empty, '.' or '..' part between its '/'; {RULE}")
    return value


def item_id_problem(value) -> InvalidItemId | None:
    """The ``InvalidItemId`` that ``check_item_id`` would raise for ``value``, or None."""
    try:
        check_item_id(value)
    except InvalidItemId as error:
        return error
    return None


def is_item_id(value) -> bool:
    return item_id_problem(value) is None
