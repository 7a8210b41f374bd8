"""The paper's variant notation (eq. 8) as a structured, validated architecture.

A variant string reads ``M-item,item,...``:

* ``M`` is the model type: ``F`` (floating point) or ``B`` (binary).
* A *block* is ``[D]width[N]``: an optional dropout before a dense layer of
  ``width`` units, and an optional batch normalization after it.
* A *shortcut* is ``F``, ``Q`` or ``P`` (float dense, 8-bit quantized dense,
  max-pool + float dense) with an optional ``N`` right after it (batch
  normalization on the shortcut branch). It comes after the last block and is
  added to the last hidden layer.
* A final lone ``D`` is the dropout before the output layer.

Examples from the paper's tables: ``F-128,88``, ``B-D128N,D88N,PN``,
``B-128N,PN,D``, ``B-32N,D16N,D8,Q,D``.

What the notation does not say is carried as explicit options with the
paper's defaults: how the first binary layer sees its input
(``input_mode``), the pool size of a ``P`` shortcut and the bit width of a
``Q`` shortcut (Table II: 8 and 8).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

MODEL_TYPES = ("F", "B")
SHORTCUT_KINDS = ("F", "Q", "P")
# "sign": the first binary layer binarizes its (centred) input with sign, as the
# paper does. "int8": the first binary layer takes the real-valued input as
# 8-bit integers against its binary weights. "planes": the first binary layer takes the
# top ``input_bits`` bits of each 8-bit input, v = q >> (8 - input_bits), and computes
# sum_i v_i * w_i as input_bits AND-popcount passes over bit planes weighted by 2^b.
INPUT_MODES = ("sign", "int8", "planes")
PLANE_BITS = (1, 2, 3, 4, 5, 6, 7, 8)
MAX_WIDTH = 1 << 16
MAX_BLOCKS = 64


class ArchError(ValueError):
    """A malformed or invalid variant string, pointing at the offending character."""

    def __init__(self, message: str, text: str = "", position: Optional[int] = None):
        self.message = message
        self.text = text
        self.position = position
        if position is None:
            full = f"{message}: {text!r}" if text else message
        else:
            full = f"{message} at character {position + 1}\n  {text}\n  {' ' * position}^"
        super().__init__(full)


@dataclass(frozen=True)
class Block:
    """One hidden block: [dropout ->] dense(width) [-> batch norm]."""

    width: int
    dropout: bool = False
    batchnorm: bool = False

    def __str__(self) -> str:
        return f"{'D' if self.dropout else ''}{self.width}{'N' if self.batchnorm else ''}"


@dataclass(frozen=True)
class Shortcut:
    """The residual branch from the input to the last hidden layer."""

    kind: str  # "F" float dense, "Q" quantized dense, "P" max-pool + float dense
    batchnorm: bool = False

    def __str__(self) -> str:
        return f"{self.kind}{'N' if self.batchnorm else ''}"


@dataclass(frozen=True)
class Architecture:
    """A parsed variant: model type, hidden blocks, shortcut, output dropout, options."""

    model_type: str
    blocks: Tuple[Block, ...]
    shortcut: Optional[Shortcut] = None
    output_dropout: bool = False
    input_mode: str = "sign"
    pool_size: int = 8
    quant_bits: int = 8
    input_bits: int = 2  # "planes" input mode only: bits per input value (bit planes of layer 0)

    def __post_init__(self) -> None:
        text = self.notation()
        if self.model_type not in MODEL_TYPES:
            raise ArchError(f"model type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if not self.blocks:
            raise ArchError("a variant needs at least one hidden block", text)
        if len(self.blocks) > MAX_BLOCKS:
            raise ArchError(f"at most {MAX_BLOCKS} hidden blocks are supported", text)
        for block in self.blocks:
            if not 1 <= block.width <= MAX_WIDTH:
                raise ArchError(f"block width must be between 1 and {MAX_WIDTH}, got {block.width}", text)
        if self.shortcut is not None and self.shortcut.kind not in SHORTCUT_KINDS:
            raise ArchError(f"shortcut must be one of {SHORTCUT_KINDS}, got {self.shortcut.kind!r}", text)
        if self.input_mode not in INPUT_MODES:
            raise ArchError(f"input_mode must be one of {INPUT_MODES}, got {self.input_mode!r}")
        if not 1 <= self.pool_size <= 4096:
            raise ArchError(f"pool_size must be between 1 and 4096, got {self.pool_size}")
        if not 2 <= self.quant_bits <= 8:
            raise ArchError(f"quant_bits must be between 2 and 8, got {self.quant_bits}")
        if not isinstance(self.input_bits, int) or isinstance(self.input_bits, bool) \
                or self.input_bits not in PLANE_BITS:
            raise ArchError(f"input_bits must be an integer between 1 and 8, got {self.input_bits!r}")
        if self.input_mode == "planes" and self.model_type != "B":
            raise ArchError("the planes input mode is for binary (B-) variants", text)

    # -- derived -----------------------------------------------------------
    @property
    def widths(self) -> Tuple[int, ...]:
        return tuple(b.width for b in self.blocks)

    @property
    def last_width(self) -> int:
        return self.blocks[-1].width

    @property
    def is_binary(self) -> bool:
        return self.model_type == "B"

    def notation(self) -> str:
        """The canonical variant string (options are not part of the notation)."""
        items = [str(b) for b in self.blocks]
        if self.shortcut is not None:
            items.append(str(self.shortcut))
        if self.output_dropout:
            items.append("D")
        return f"{self.model_type}-{','.join(items)}"

    __str__ = notation

    def options(self) -> dict:
        """The options the notation does not express, with their values (``input_bits`` only in
        the ``planes`` input mode, where it means something)."""
        options = {"input_mode": self.input_mode, "pool_size": self.pool_size, "quant_bits": self.quant_bits}
        if self.input_mode == "planes":
            options["input_bits"] = self.input_bits
        return options

    def with_options(self, **options) -> "Architecture":
        return dataclasses.replace(self, **options)

    def to_dict(self) -> dict:
        return {"notation": self.notation(), **self.options()}

    @classmethod
    def from_dict(cls, data: dict) -> "Architecture":
        if not isinstance(data, dict) or not isinstance(data.get("notation"), str):
            raise ArchError("architecture must be an object with a 'notation' string")
        options = {k: data[k] for k in ("input_mode", "pool_size", "quant_bits", "input_bits") if k in data}
        if "input_bits" in options and options.get("input_mode") != "planes":
            raise ArchError("input_bits is an option of the planes input mode only")
        for key in ("pool_size", "quant_bits", "input_bits"):
            if key in options and (not isinstance(options[key], int) or isinstance(options[key], bool)):
                raise ArchError(f"{key} must be an integer, got {options[key]!r}")
        return parse(data["notation"], **options)


def parse(text: str, **options) -> Architecture:
    """Parse a variant string such as ``B-D128N,D88N,PN`` into an :class:`Architecture`.

    Keyword options (``input_mode``, ``pool_size``, ``quant_bits``, ``input_bits``) set what the
    notation does not express. Raises :class:`ArchError` pointing at the first
    offending character.
    """
    if not isinstance(text, str):
        raise ArchError(f"a variant must be a string, got {type(text).__name__}")
    if not text:
        raise ArchError("empty variant string", text, 0)
    if len(text) > 1000:
        raise ArchError("variant string is too long (over 1000 characters)")
    pos = 0
    if text[0] not in MODEL_TYPES:
        raise ArchError("expected the model type 'F' or 'B'", text, 0)
    model_type = text[0]
    if len(text) < 2 or text[1] != "-":
        raise ArchError("expected '-' after the model type", text, 1)
    pos = 2
    blocks = []
    shortcut = None
    output_dropout = False
    while True:
        start = pos
        if pos >= len(text):
            raise ArchError("expected a block, a shortcut or 'D'", text, pos)
        ch = text[pos]
        if output_dropout:
            raise ArchError("the output dropout 'D' must be the last item", text, start)
        dropout = False
        if ch == "D":
            dropout = True
            pos += 1
        if pos < len(text) and text[pos].isdigit():
            if shortcut is not None:
                raise ArchError("hidden blocks must come before the shortcut", text, start)
            digits_start = pos
            while pos < len(text) and text[pos].isdigit():
                pos += 1
            digits = text[digits_start:pos]
            if digits.startswith("0"):
                raise ArchError("a width must be a positive number without leading zeros", text, digits_start)
            width = int(digits)
            if width > MAX_WIDTH:
                raise ArchError(f"width {width} is larger than the maximum {MAX_WIDTH}", text, digits_start)
            batchnorm = pos < len(text) and text[pos] == "N"
            if batchnorm:
                pos += 1
            blocks.append(Block(width=width, dropout=dropout, batchnorm=batchnorm))
        elif dropout:
            # a lone D: dropout before the output layer
            if not blocks:
                raise ArchError("expected a width after 'D'", text, pos)
            output_dropout = True
        elif ch in SHORTCUT_KINDS:
            if not blocks:
                raise ArchError("a shortcut needs at least one hidden block before it", text, pos)
            if shortcut is not None:
                raise ArchError("only one shortcut is allowed", text, pos)
            pos += 1
            batchnorm = pos < len(text) and text[pos] == "N"
            if batchnorm:
                pos += 1
            shortcut = Shortcut(kind=ch, batchnorm=batchnorm)
        elif ch == "N":
            raise ArchError("'N' must follow a width or a shortcut letter directly (e.g. '128N', 'PN')", text, pos)
        else:
            raise ArchError("expected a width, 'D', or a shortcut 'F', 'Q' or 'P'", text, pos)
        if pos == len(text):
            break
        if text[pos] != ",":
            raise ArchError("expected ',' between items", text, pos)
        pos += 1
        if pos == len(text):
            raise ArchError("trailing ',' without an item after it", text, pos - 1)
    return Architecture(
        model_type=model_type,
        blocks=tuple(blocks),
        shortcut=shortcut,
        output_dropout=output_dropout,
        **options,
    )
