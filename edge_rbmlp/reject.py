"""When a picture holds no digit, or not one digit: the one decision every front end gives.

The digit pipeline (:mod:`edge_rbmlp.digit_reference`) reports what it found
(:class:`~edge_rbmlp.digit_reference.DigitInfo`); a picture is refused, with the reason, when

1. nothing stands out from the background (a blank or uniform page: ``blank``);
2. the mark it kept has a contrast below :data:`MIN_CONTRAST` of 255 (sensor noise, a smudge);
3. another mark of at least a quarter of the digit's ink lies beside the digit, or the digit's mark
   is made of several pieces and is wider than tall (``far``: two digits side by side, a digit and a
   word; the pipeline first gathers the segments and dots of one display digit into one mark, see
   :func:`edge_rbmlp.digit_reference.group_marks`);
4. the mark is more than :data:`MAX_ASPECT` times wider than tall (a dash, an underline, a
   streak of noise: digits are at most about as wide as tall);
5. the mark is smaller than :data:`MIN_RELATIVE_SIZE` of the picture's longer side (a speck),
   or touches the picture's edge and is smaller than :data:`MIN_EDGE_SIZE` of it (what the
   background estimate leaves at the edges of a noisy picture; a digit cropped to its region
   touches the edges but fills much of the picture);

and once classified, when the most likely class has less than ``min_confidence``
(:data:`DEFAULT_MIN_CONFIDENCE`: calibrated on the bundled model; with the model of issue 11
(planes input, digit augmentation) 0.5 refuses 0.69 % of the full MNIST test set, 61 % of which it
would have got wrong, where the former 0.6 refused 1.71 %; the former int8-input model refused
0.91 % at 0.6). Texts keep their own :data:`TEXT_MIN_CONFIDENCE` for the ``low_confidence`` flag. The thresholds were measured on
blank and noise frames, MNIST test digits as 28x28 inputs and inside synthetic camera frames,
two digits side by side and letters (see the closing notes of the work that added them).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

MIN_CONTRAST = 32
MAX_ASPECT = 2
MIN_RELATIVE_SIZE = 1 / 32
MIN_EDGE_SIZE = 1 / 8
DEFAULT_MIN_CONFIDENCE = 0.5  # pictures: below this the digit is refused as "unsure"
TEXT_MIN_CONFIDENCE = 0.6  # texts: below this the label is flagged low_confidence (not refused)

NO_DIGIT = "no digit found: the image is blank or uniform"


def picture_reason(info, picture_shape: Tuple[int, int]) -> Optional[str]:
    """Why the picture holds no single digit (``None``: it does), from the pipeline's findings."""
    if info.blank:
        return NO_DIGIT
    if info.passthrough:  # an MNIST-like input, taken as it is
        return None
    if info.peak < MIN_CONTRAST:
        return f"no digit found: nothing stands out from the background (contrast {info.peak} of 255)"
    if info.far:
        return (f"not one digit: {info.far + 1} separate marks of similar size (several digits, or a digit "
                f"and something else; crop to one digit)")
    _, _, w, h = info.box
    if w > MAX_ASPECT * h:
        return f"not a digit: the mark is {w}x{h} pixels, much wider than tall"
    H, W = picture_shape
    if max(w, h) < MIN_RELATIVE_SIZE * max(H, W):
        return f"no digit found: the only mark is {w}x{h} pixels in a {W}x{H} picture (a speck)"
    x, y = info.box[0], info.box[1]
    at_edge = x == 0 or y == 0 or x + w >= W or y + h >= H
    if at_edge and max(w, h) < MIN_EDGE_SIZE * max(H, W):
        return f"no digit found: only a small mark ({w}x{h} pixels) at the edge of a {W}x{H} picture"
    return None


def confidence_reason(probabilities: Sequence[float], min_confidence: float) -> Optional[str]:
    """Why the classification is refused (``None``: it is sure enough)."""
    best = max(probabilities)
    if best < min_confidence:
        return f"unsure: the most likely class has {best:.2f}, below the {min_confidence:.2f} minimum"
    return None


#: a text with fewer known words than this is classified, but flagged ``low_confidence``
MIN_KNOWN_WORDS = 3


def text_is_low_confidence(known_words: int, confidence: float, min_confidence: float = TEXT_MIN_CONFIDENCE) -> bool:
    """A text's label is flagged (not refused) when the model knows few of its words or is unsure:
    with bag-of-words input, a text of one or two known words lands near the bias."""
    return known_words < MIN_KNOWN_WORDS or confidence < min_confidence
