"""Bit packing of {-1, +1} vectors into 64-bit words: the one bit order of the project.

Convention (used by the packed file, the reference engine and every native kernel):

* a value ``v`` becomes bit 1 when ``v >= 0`` (sign(0) = +1, eq. 1) and bit 0 otherwise;
* element ``j`` of a row lands in word ``j // 64`` at bit ``j % 64`` (bit 0 = least
  significant); words are little-endian ``uint64``;
* a row of ``n`` elements takes ``ceil(n / 64)`` words; the padding bits past ``n``
  are always 0 (loaders reject files where they are not).

For two packed rows ``x`` and ``w`` of ``n`` real elements, the ±1 dot product is
``sum_j x_j * w_j = n - 2 * popcount(x XOR w)``: padding bits are 0 in both, so
they never count as a mismatch.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 64


def words_for(n: int) -> int:
    """Number of 64-bit words that hold ``n`` bits."""
    return (int(n) + WORD_BITS - 1) // WORD_BITS


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean array ``[..., n]`` into ``uint64 [..., ceil(n/64)]`` (LSB first)."""
    bits = np.asarray(bits, dtype=bool)
    n = bits.shape[-1]
    pad = words_for(n) * WORD_BITS - n
    if pad:
        bits = np.concatenate([bits, np.zeros(bits.shape[:-1] + (pad,), dtype=bool)], axis=-1)
    packed_bytes = np.packbits(bits, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed_bytes).view("<u8").astype(np.uint64, copy=False)


def pack_signs(values: np.ndarray) -> np.ndarray:
    """Pack the signs of a real array ``[..., n]``: bit 1 where ``value >= 0``."""
    return pack_bits(np.asarray(values) >= 0)


def unpack_bits(words: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``uint64 [..., w]`` -> ``bool [..., n]``."""
    words = np.ascontiguousarray(np.asarray(words, dtype="<u8"))
    as_bytes = words.view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=-1, bitorder="little")
    return bits[..., :n].astype(bool)


def unpack_signs(words: np.ndarray, n: int) -> np.ndarray:
    """``uint64 [..., w]`` -> ``int8 [..., n]`` of -1/+1."""
    return np.where(unpack_bits(words, n), 1, -1).astype(np.int8)


def padding_is_zero(words: np.ndarray, n: int) -> bool:
    """True when every bit past ``n`` in each row of ``words`` is 0."""
    words = np.asarray(words, dtype=np.uint64)
    if words.size == 0:
        return True
    tail_bits = n % WORD_BITS
    if tail_bits == 0:
        return True
    mask = np.uint64(~((1 << tail_bits) - 1) & 0xFFFFFFFFFFFFFFFF)
    return not np.any(words[..., -1] & mask)
