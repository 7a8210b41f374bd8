"""The paper's variant notation (eq. 8): parsing, printing, validation, error positions."""

import pytest

from edge_rbmlp.arch import Architecture, ArchError, Block, Shortcut, parse
from edge_rbmlp.size import PAPER_TABLE_ROWS

TABLE_STRINGS = sorted({row[4] for row in PAPER_TABLE_ROWS})


@pytest.mark.parametrize("text", TABLE_STRINGS)
def test_every_table_string_round_trips(text):
    # Tables IV, V and VII: every printed variant parses and prints back unchanged
    assert parse(text).notation() == text
    assert str(parse(text)) == text


def test_structure_of_a_full_variant():
    a = parse("B-D32N,D16N,D8,Q,D")
    assert a.model_type == "B"
    assert a.blocks == (Block(32, True, True), Block(16, True, True), Block(8, True, False))
    assert a.shortcut == Shortcut("Q", False)
    assert a.output_dropout is True
    assert a.widths == (32, 16, 8)


def test_shortcut_batchnorm_and_output_dropout():
    a = parse("B-128N,PN,D")
    assert a.blocks == (Block(128, False, True),)
    assert a.shortcut == Shortcut("P", True)
    assert a.output_dropout


def test_float_model_and_plain_binary():
    assert parse("F-128,88").model_type == "F"
    assert parse("F-128,88").shortcut is None
    assert parse("B-128,88").blocks == (Block(128), Block(88))


def test_options_have_paper_defaults_and_are_explicit():
    a = parse("B-D128N,D88N,PN")
    assert a.options() == {"input_mode": "sign", "pool_size": 8, "quant_bits": 8}
    b = parse("B-D128N,D88N,PN", input_mode="int8", pool_size=9, quant_bits=4)
    assert b.options() == {"input_mode": "int8", "pool_size": 9, "quant_bits": 4}
    assert Architecture.from_dict(b.to_dict()) == b


@pytest.mark.parametrize(
    "text, position, fragment",
    [
        ("", 0, "empty"),
        ("X-128", 0, "model type"),
        ("B128", 1, "'-'"),
        ("B-", 2, "expected a block"),
        ("B-128,", 5, "trailing"),
        ("B-128;88", 5, "','"),
        ("B-128,x", 6, "expected a width"),
        ("B-0", 2, "leading zeros"),
        ("B-P", 2, "at least one hidden block"),
        ("B-128,P,88", 8, "before the shortcut"),
        ("B-128,P,Q", 8, "only one shortcut"),
        ("B-128,D,88", 8, "last item"),
        ("B-128,N", 6, "'N' must follow"),
        ("B-D", 3, "width after 'D'"),
        ("B-128NN", 6, "','"),
        ("B-99999999", 2, "larger than the maximum"),
    ],
)
def test_malformed_strings_point_at_the_offending_character(text, position, fragment):
    with pytest.raises(ArchError) as info:
        parse(text)
    assert info.value.position == position
    assert fragment in str(info.value)
    if text:
        # the message shows the string with a caret under the character
        lines = str(info.value).splitlines()
        assert lines[1].strip() == text
        assert lines[2].index("^") - 2 == position


@pytest.mark.parametrize("options", [{"input_mode": "float"}, {"pool_size": 0}, {"quant_bits": 1},
                                     {"quant_bits": 9}])
def test_invalid_options_are_rejected(options):
    with pytest.raises(ArchError):
        parse("B-128,P", **options)


def test_non_string_is_rejected():
    with pytest.raises(ArchError):
        parse(128)


def test_planes_input_mode_carries_its_bits():
    a = parse("B-D256N,D64N,PN", input_mode="planes", input_bits=3)
    assert a.to_dict() == {"notation": "B-D256N,D64N,PN", "input_mode": "planes", "pool_size": 8, "quant_bits": 8,
                           "input_bits": 3}
    assert Architecture.from_dict(a.to_dict()) == a
    # the other modes keep their dictionaries as before (no input_bits)
    assert "input_bits" not in parse("B-32,Q", input_mode="int8").to_dict()
    for bad in (0, 9, True, "2"):
        with pytest.raises(ArchError):
            parse("B-32", input_mode="planes", input_bits=bad)
    with pytest.raises(ArchError):
        parse("F-32", input_mode="planes")
    with pytest.raises(ArchError):
        Architecture.from_dict({"notation": "B-32", "input_mode": "sign", "input_bits": 2})
