#!/usr/bin/env python3
"""Independent reference for `faultline features` (SPEC 2 and 5).

Written from the specification alone, with textbook two-pass numpy formulas
instead of the daemon's one-pass updates, so that the golden test compares
two separate implementations. Only for in-order input (every row is on
time), which is what the SKAB files are.

    python3 tests/reference/features_ref.py INPUT.csv --window-seconds 60 \
        --time-column datetime --delimiter ';' --device skab-valve1-1 \
        --label-column anomaly > OUT.csv
"""
import argparse
import csv
import math
import sys
from datetime import datetime, timezone

import numpy as np

STATS = ["count", "mean", "std", "min", "max", "rms", "ptp", "skew", "kurtosis",
         "crest", "slope", "first", "last"]


def epoch_ms(text):
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)  # SKAB has whole seconds: exact


def rfc3339(ms):
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    s = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if ms % 1000:
        s += ".%03d" % (ms % 1000)
    return s + "Z"


def stats(ts_ms, xs, start_ms):
    n = len(xs)
    if n == 0:
        return [0.0] + [math.nan] * 12
    x = np.asarray(xs, dtype=np.float64)
    t = (np.asarray(ts_ms, dtype=np.int64) - start_ms) / 1000.0
    # Deviations from the first value keep the digits of large, nearly
    # constant signals in the two-pass formulas.
    d = x - x[0]
    dmean = d.mean()
    mean = x[0] + dmean
    lo, hi = x.min(), x.max()
    constant = lo == hi
    c = d - dmean
    # Products, not `c ** 3` and `c ** 4`: numpy's power takes SIMD paths
    # that differ by CPU (AVX-512 or not) in the last bit, and the fixture
    # must come out byte for byte the same on any machine.
    c2 = c * c
    m2 = np.mean(c2)
    m3 = np.mean(c2 * c)
    m4 = np.mean(c2 * c2)
    std = 0.0 if n < 2 or constant else math.sqrt(m2 * n / (n - 1))
    rms = math.sqrt(np.mean(x ** 2))
    skew, kurt = (0.0, 0.0) if constant else (m3 / (m2 * math.sqrt(m2)), m4 / (m2 * m2) - 3.0)
    crest = 0.0 if rms == 0 else max(abs(lo), abs(hi)) / rms
    tc = t - t.mean()
    sxx = np.sum(tc ** 2)
    slope = 0.0 if sxx == 0 else float(np.sum(tc * c) / sxx)
    order = np.argsort(np.asarray(ts_ms), kind="stable")
    return [float(n), mean, std, lo, hi, rms, hi - lo, skew, kurt, crest, slope,
            x[order[0]], x[order[-1]]]


def fmt(v):
    v = float(v)
    if math.isnan(v):
        return "NaN"
    return repr(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("--window-seconds", type=int, required=True)
    ap.add_argument("--time-column", required=True)
    ap.add_argument("--delimiter", default=",")
    ap.add_argument("--device", required=True)
    ap.add_argument("--label-column")
    args = ap.parse_args()

    with open(args.input, newline="") as f:
        rows = list(csv.reader(f, delimiter=args.delimiter))
    header, rows = rows[0], rows[1:]
    skip = {args.time_column, args.label_column}
    signals = [h for i, h in enumerate(header)
               if h not in skip and all(r[i].strip() == "" or _isnum(r[i]) for r in rows)]
    ti = header.index(args.time_column)
    li = header.index(args.label_column) if args.label_column else None
    size = args.window_seconds * 1000

    windows = {}
    for r in rows:
        ms = epoch_ms(r[ti])
        w = windows.setdefault((ms // size) * size, {"rows": []})
        w["rows"].append(r)

    out = csv.writer(sys.stdout, lineterminator="\n")
    cols = ["device_id", "window_start", "window_end"]
    cols += ["%s.%s" % (s, st) for s in signals for st in STATS]
    if li is not None:
        cols.append(args.label_column)
    out.writerow(cols)
    for start in sorted(windows):
        rs = windows[start]["rows"]
        line = [args.device, rfc3339(start), rfc3339(start + size)]
        for s in signals:
            i = header.index(s)
            pts = [(epoch_ms(r[ti]), float(r[i])) for r in rs if r[i].strip() != ""]
            line += [fmt(v) for v in stats([p[0] for p in pts], [p[1] for p in pts], start)]
        if li is not None:
            labels = [float(r[li]) for r in rs if r[li].strip() != ""]
            line.append(fmt(max(labels)) if labels else "NaN")
        out.writerow(line)


def _isnum(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


if __name__ == "__main__":
    main()
