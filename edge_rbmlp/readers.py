"""Readers: a number from digit regions of a camera frame (a meter, a counter, a display).

A reader (``[[readers]]`` in the config, :class:`edge_rbmlp.server.config.ReaderConfig`) has one
region of interest ``[x, y, w, h]`` per digit, left to right. Every frame gives every reader a
:class:`Reading`:

1. the raw reading of this frame: every ROI is cropped and all ROIs of all readers that use one
   model go through that model's engine in one ``predict_images`` batch; a digit that is refused
   (no digit in the region) or below ``min_confidence`` makes the raw reading invalid;
2. the vote: the value published is the one that most of the last ``vote`` frames read (a strict
   majority of the window, e.g. 2 of 3), so a single misread frame never reaches the output and a
   change is published only once it has been seen in most of the window;
3. plausibility: with ``monotonic`` a counter never goes down; with ``max_rate_per_hour`` a value
   may not change by more than that rate allows since it last changed.

A reading that fails any step is ``valid = false`` with a ``reason``; the last accepted value is
kept for the plausibility rules. The rules compare with the last accepted value, so one accepted
misread (the first value read as 0927 on a meter at 0427) would make ``monotonic`` refuse every true
reading until the meter passes it. Hence re-anchoring: when ``reanchor_after`` voted readings in a row
are refused by the rules and each is plausible against the one before it (a consistent story that
disagrees only with the last accepted value), the latest of them becomes the accepted value and is
published, with ``reanchored`` giving the value it replaced.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np


@dataclass
class Reading:
    reader: str
    value: Optional[str]  # the digits as a string ("0427"); '?' for a refused digit; None: nothing read
    digits: List[dict]  # [{"label", "confidence"}] of the frame the value comes from
    confidence: float  # the lowest digit confidence
    valid: bool
    reason: Optional[str] = None
    latency_us: float = 0.0
    ts: float = 0.0  # time.time() of the frame
    frame: int = 0
    raw_value: Optional[str] = None  # this frame's own reading, before the vote
    votes: int = 0  # frames of the window that read `value`
    window: int = 1
    reanchored: Optional[str] = None  # the accepted value this reading replaced by re-anchoring

    def to_dict(self) -> dict:
        out = {"reader": self.reader, "value": self.value, "valid": self.valid,
               "confidence": round(self.confidence, 4), "digits": self.digits,
               "latency_us": round(self.latency_us, 1), "ts": round(self.ts, 3), "frame": self.frame,
               "raw_value": self.raw_value, "votes": self.votes, "window": self.window}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.reanchored is not None:
            out["reanchored"] = self.reanchored
        return out

    def state_payload(self) -> dict:
        """What ``<topic_prefix>/<reader>/state`` (or ``/error``) carries."""
        out = {"value": self.value, "valid": self.valid, "confidence": round(self.confidence, 4),
               "digits": self.digits, "latency_us": round(self.latency_us, 1), "ts": round(self.ts, 3)}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def crop(frame: np.ndarray, roi) -> Optional[np.ndarray]:
    """The ``[x, y, w, h]`` region of ``frame`` (a contiguous copy), or None when it is not inside."""
    x, y, w, h = roi
    height, width = frame.shape[:2]
    if x + w > width or y + h > height:
        return None
    return np.ascontiguousarray(frame[y:y + h, x:x + w])


class Reader:
    """One ``[[readers]]`` entry: the raw reading of a frame's predictions, the vote, the rules."""

    def __init__(self, config):
        self.config = config
        self.name = config.name
        self.window: collections.deque = collections.deque(maxlen=config.vote)
        self.accepted: Optional[str] = None  # the last valid value
        self.changed_ts: Optional[float] = None  # when the accepted value last changed
        # the refused readings in a row that agree with each other: (latest value, when it changed, count)
        self.refused_run: Optional[tuple] = None
        self.last: Optional[Reading] = None
        self.last_raw: Optional[Reading] = None

    # -- 1. this frame ---------------------------------------------------------------------------------
    def raw(self, preds: Sequence, latency_us: float, ts: float, frame: int,
            outside: Optional[str] = None) -> Reading:
        """The reading of one frame from one Prediction per ROI (``outside``: why there are none)."""
        c = self.config
        if outside is not None:
            return Reading(self.name, None, [], 0.0, False, outside, latency_us, ts, frame)
        digits, reason = [], None
        for i, p in enumerate(preds, 1):
            digits.append({"label": p.label, "confidence": round(p.confidence, 4)})
            if reason is None:
                if p.label is None:
                    reason = f"digit {i}: {p.reason}"
                elif p.confidence < c.min_confidence:
                    reason = f"digit {i}: confidence {p.confidence:.2f} is below min_confidence {c.min_confidence:g}"
        value = "".join(p.label if p.label is not None else "?" for p in preds)
        confidence = min(p.confidence for p in preds) if preds else 0.0
        return Reading(self.name, value, digits, confidence, reason is None, reason, latency_us, ts, frame,
                       raw_value=value, votes=1 if reason is None else 0)

    # -- 2. the vote and 3. the rules --------------------------------------------------------------------
    def update(self, raw: Reading) -> Reading:
        """Add this frame's raw reading to the window; the voted, checked reading."""
        c = self.config
        self.last_raw = raw
        self.window.append(raw)
        need = c.vote // 2 + 1
        counts = collections.Counter(r.value for r in self.window if r.valid)
        reading = None
        if counts:
            value, votes = max(counts.items(), key=lambda kv: (kv[1], self._latest_index(kv[0])))
            if votes >= need:
                source = next(r for r in reversed(self.window) if r.valid and r.value == value)
                reading = Reading(self.name, value, source.digits, source.confidence, True, None, raw.latency_us,
                                  raw.ts, raw.frame, raw.value, votes, c.vote)
        if reading is None:
            if not raw.valid:
                reason = raw.reason
            else:
                best = counts.most_common(1)[0][1]
                reason = (f"no majority yet: the most frequent value was read in {best} of the last {c.vote} "
                          f"frames (needs {need})")
            reading = Reading(self.name, raw.value, raw.digits, raw.confidence, False, reason, raw.latency_us,
                              raw.ts, raw.frame, raw.value, counts.get(raw.value, 0), c.vote)
        else:
            problem = self._implausible(reading.value, reading.ts, self.accepted, self.changed_ts)
            if problem is not None and self._refused_in_a_row(reading) >= c.reanchor_after > 0:
                # a consistent story that disagrees only with the last accepted value: that value was wrong
                reading.reanchored, problem = self.accepted, None
                self.accepted, self.changed_ts = reading.value, self.refused_run[1]
            if problem is not None:
                reading.valid, reading.reason = False, problem
            else:
                self.refused_run = None
                if reading.value != self.accepted:
                    self.changed_ts = reading.ts
                self.accepted = reading.value
        self.last = reading
        return reading

    def _refused_in_a_row(self, reading: Reading) -> int:
        """Count ``reading`` into the run of refused readings that agree with each other; its length."""
        run = self.refused_run
        if not reading.value.isdigit():  # the rules compare numbers: nothing else can replace one
            self.refused_run = None
            return 0
        if run is not None and self._implausible(reading.value, reading.ts, run[0], run[1]) is None:
            changed = run[1] if reading.value == run[0] else reading.ts
            self.refused_run = (reading.value, changed, run[2] + 1)
        else:
            self.refused_run = (reading.value, reading.ts, 1)
        return self.refused_run[2]

    def _latest_index(self, value) -> int:
        for i in range(len(self.window) - 1, -1, -1):
            if self.window[i].valid and self.window[i].value == value:
                return i
        return -1

    def _implausible(self, value: str, ts: float, accepted: Optional[str],
                     changed_ts: Optional[float]) -> Optional[str]:
        """Why ``value`` at ``ts`` breaks the rules against ``accepted`` (which last changed at
        ``changed_ts``), or None."""
        c = self.config
        if accepted is None or value == accepted or not (c.monotonic or c.max_rate_per_hour):
            return None
        if not (value.isdigit() and accepted.isdigit()):
            return f"{value!r} is not a number (monotonic and max_rate_per_hour compare numbers)"
        new, old = int(value), int(accepted)
        if c.monotonic and new < old:
            return f"monotonic: {value} is below the last value {accepted}"
        if c.max_rate_per_hour:
            hours = max(0.0, ts - (changed_ts if changed_ts is not None else ts)) / 3600.0
            allowed = c.max_rate_per_hour * hours
            if abs(new - old) > allowed:
                return (f"max_rate_per_hour: {accepted} -> {value} is a change of {abs(new - old)} in "
                        f"{hours * 60:.1f} min, more than {c.max_rate_per_hour:g}/h allows ({allowed:.2f})")
        return None


class ReaderSet:
    """Every reader of the config; ``read(frame)`` gives one Reading each. ``engine_for(model)`` returns
    the engine to use (looked up per frame, so a model reloaded by SIGHUP is used at once)."""

    def __init__(self, configs, engine_for: Callable[[str], object],
                 on_predictions: Optional[Callable[[str, list], None]] = None):
        self.readers = [Reader(c) for c in configs]
        self.engine_for = engine_for
        self.on_predictions = on_predictions  # (model, predictions) of each batch: metrics
        self.frames = 0

    def __iter__(self):
        return iter(self.readers)

    def __len__(self):
        return len(self.readers)

    def read(self, frame, ts: Optional[float] = None) -> List[Reading]:
        """One frame (uint8 HxW or HxWx3) -> the voted Reading of every reader, in config order."""
        frame = np.asarray(frame)
        ts = time.time() if ts is None else ts
        self.frames += 1
        by_model: Dict[str, list] = collections.defaultdict(list)
        for reader in self.readers:
            by_model[reader.config.model].append(reader)
        raws: Dict[str, Reading] = {}
        for model, readers in by_model.items():
            t0 = time.perf_counter()
            crops, owners, outside = [], [], {}
            for reader in readers:
                regions = [crop(frame, roi) for roi in reader.config.rois]
                bad = [i for i, r in enumerate(regions, 1) if r is None]
                if bad:
                    roi = reader.config.rois[bad[0] - 1]
                    outside[reader.name] = (f"roi {bad[0]} {list(roi)} is outside the "
                                            f"{frame.shape[1]}x{frame.shape[0]} frame")
                    continue
                crops.extend(regions)
                owners.append((reader, len(regions)))
            preds = self.engine_for(model).predict_images(crops) if crops else []  # one batch per model
            latency = (time.perf_counter() - t0) * 1e6
            if preds and self.on_predictions is not None:
                self.on_predictions(model, preds)
            at = 0
            for reader, n in owners:
                raws[reader.name] = reader.raw(preds[at:at + n], latency, ts, self.frames)
                at += n
            for name, why in outside.items():
                reader = next(r for r in readers if r.name == name)
                raws[name] = reader.raw([], latency, ts, self.frames, outside=why)
        return [reader.update(raws[reader.name]) for reader in self.readers]

    def failed(self, reason: str, ts: Optional[float] = None) -> List[Reading]:
        """No frame (the camera failed): an invalid reading per reader, not added to the vote."""
        ts = time.time() if ts is None else ts
        return [Reading(r.name, None, [], 0.0, False, reason, 0.0, ts, self.frames) for r in self.readers]
