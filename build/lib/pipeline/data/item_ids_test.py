import pytest

from pipeline.data.item_ids import MAX_ID_CHARS, InvalidItemId, check_item_id, is_item_id


@pytest.mark.parametrize(
    "value",
    [
        "train-0000",
        "1000268201_693b08cb0e",
        "0_jackson_0",
        "train/cat",
        "a/b/c.d",
        "été 中文 🦓",
        "what?#&=%",
        "x" * MAX_ID_CHARS,
        "a b",
        ".hidden",
        "..a",
    ],
)
def test_ids_within_the_rule_pass_unchanged(value):
    assert check_item_id(value) == value and is_item_id(value)


@pytest.mark.parametrize(
    "value,words",
    [
        ("", "empty"),
        ("x" * (MAX_ID_CHARS + 1), "201 characters"),
        ("a\x00b", "control character (U+0000) at position 1"),
        ("a\rb", "U+000D"),
        ("a\nb", "U+000A"),
        ("a\tb", "U+0009"),
        ("a\u200bb", "format character (U+200B)"),
        ("a\u202eb", "U+202E"),
        ("a\u2028b", "line separator"),
        ("a\ud800b", "lone surrogate"),
        ("a\ue000b", "private-use"),
        ("a\\b", "backslash"),
        (" a", "space"),
        ("a ", "space"),
        ("/a", "'/'"),
        ("a/", "'/'"),
        ("a//b", "'/'"),
        ("a/./b", "'/'"),
        ("a/../b", "'/'"),
        ("a /b", "'/'"),
        (7, "not text"),
    ],
)
def test_ids_outside_the_rule_are_refused_saying_why(value, words):
    with pytest.raises(InvalidItemId) as caught:
        check_item_id(value)
    assert words in str(caught.value) and "ids are 1 to" in str(caught.value)
    assert not is_item_id(value)
