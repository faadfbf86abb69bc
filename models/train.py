#!/usr/bin/env python3
"""Trains faultline's shipped pump model on SKAB and writes the package.

    python3 models/train.py --data ../shared/data/skab --faultline target/release/faultline \
        --out models/pump-skab

Features come from `faultline features` (the daemon's own window code, never
features computed here), probabilities on held-out data from `faultline model
score` (the daemon's own runtime), so what is reported is what the daemon does.

Split (../shared/data/README.md): train and tune on valve1/ and anomaly-free/
only; valve2/ and other/ are held out and only evaluated, never used to choose
anything. Cross-validation is grouped by run (one SKAB file = one device run),
never by random row, since neighbouring windows of one run are nearly alike.

Writes into --out: model.onnx, model.toml (with training metadata and each
feature's reference distribution on normal windows), and evaluation/:
summary.json, cv.csv (the choices and their cross-validated scores) and
heldout-alerts.csv (every alert transition on the held-out runs, which
tests/pump_skab.rs reproduces with the Rust pipeline).
"""
import argparse
import csv
import datetime
import glob
import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np

warnings.filterwarnings("ignore")

SIGNALS = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature",
           "Thermocouple", "Voltage", "Volume Flow RateRMS"]
STATS = ["mean", "std", "ptp", "rms", "skew", "kurtosis", "slope"]
FEATURES = [f"{s}.{t}" for s in SIGNALS for t in STATS]
WINDOWS = ["30s", "1m", "2m"]
# The daemon's alert policy defaults (config [alerts]); the held-out alerts use them.
RAISE_AFTER, CLEAR_AFTER, HYSTERESIS = 1, 2, 0.1
SEED = 0


def run_id(path):
    folder = os.path.basename(os.path.dirname(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    return f"skab-{folder}-{stem}"


def files(data, folders):
    out = []
    for f in folders:
        out += sorted(glob.glob(os.path.join(data, f, "*.csv")), key=lambda p: (len(p), p))
    return out


def features(faultline, path, window, tmp):
    """Window features of one run, computed by `faultline features`."""
    out = os.path.join(tmp, f"{run_id(path)}-{window}.csv")
    with open(path) as f:
        labelled = "anomaly" in f.readline()
    cmd = [faultline, "features", "--input", path, "--time-column", "datetime", "--delimiter", ";",
           "--device", run_id(path), "--window", window, "--signals", ",".join(SIGNALS), "--output", out]
    if labelled:
        cmd += ["--label-column", "anomaly"]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def load(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    X = np.array([[float(r[c]) for c in FEATURES] for r in rows], dtype=np.float32)
    y = np.array([float(r.get("anomaly", 0) or 0) for r in rows]) > 0.5
    keys = [(r["device_id"], r["window_start"], r["window_end"]) for r in rows]
    return X, y, keys


def dataset(faultline, paths, window, tmp):
    parts = [load(features(faultline, p, window, tmp)) for p in paths]
    X = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    groups = np.concatenate([[run_id(pth)] * len(p[1]) for pth, p in zip(paths, parts)])
    keys = [k for p in parts for k in p[2]]
    return X, y, groups, keys


def make_model(kind):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    if kind == "hgb":
        return HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, random_state=SEED)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))


def out_of_fold(kind, X, y, groups):
    """Leave-one-run-out probabilities."""
    from sklearn.model_selection import LeaveOneGroupOut
    p = np.zeros(len(y))
    for tr, te in LeaveOneGroupOut().split(X, y, groups):
        m = make_model(kind).fit(X[tr], y[tr])
        p[te] = m.predict_proba(X[te])[:, 1]
    return p


def best_threshold(p, y):
    from sklearn.metrics import f1_score
    grid = np.round(np.arange(0.1, 0.95, 0.05), 2)
    scores = [f1_score(y, p >= t) for t in grid]
    i = int(np.argmax(scores))
    return float(grid[i]), float(scores[i])


def alerts(keys, probs, threshold):
    """The daemon's alert policy (src/alerts) replayed per run: returns
    (run, alert window start, status, at window end) transitions."""
    out = []
    by_run = {}
    for k, p in zip(keys, probs):
        by_run.setdefault(k[0], []).append((k[1], k[2], p))
    for run, wins in by_run.items():
        wins.sort()
        open_id, bad, good = None, 0, 0
        for start, end, p in wins:
            if np.isnan(p):
                continue
            bad = bad + 1 if p >= threshold else 0
            good = good + 1 if p < threshold - HYSTERESIS else 0
            if open_id is None and bad >= RAISE_AFTER:
                open_id = start
                out.append((run, open_id, "open", end))
            elif open_id is not None and good >= CLEAR_AFTER:
                out.append((run, open_id, "cleared", end))
                open_id = None
    return out


def parse(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def episode_report(transitions, windows_csv, runs):
    """Per held-out run: was the fault caught, how early or late, false alerts."""
    anomaly = {}
    with open(windows_csv) as f:
        for r in csv.DictReader(f):
            if r["anomaly_start"]:
                anomaly[r["device_id"]] = (parse(r["anomaly_start"] + "Z"), parse(r["anomaly_end"] + "Z"), r["file"])
    opened = {}
    for run, alert, status, at in transitions:
        if status == "open":
            opened.setdefault(run, []).append((parse(alert), parse(at)))
    caught, leads, false_alerts = 0, [], 0
    per_run = []
    for run in runs:
        a0, a1, _ = anomaly[run]
        hits = [(s, at) for s, at in opened.get(run, []) if a0 - datetime.timedelta(minutes=1) <= at <= a1 + datetime.timedelta(minutes=2)]
        false_alerts += len(opened.get(run, [])) - len(hits)
        if hits:
            caught += 1
            lead = (hits[0][1] - a0).total_seconds()
            leads.append(lead)
        per_run.append({"run": run, "caught": bool(hits), "delay_s": (hits[0][1] - a0).total_seconds() if hits else None,
                        "alerts": len(opened.get(run, []))})
    return caught, leads, false_alerts, per_run


def score_with_faultline(faultline, package, features_csv, tmp):
    out = os.path.join(tmp, "scores-" + os.path.basename(features_csv))
    subprocess.run([faultline, "model", "score", package, "--input", features_csv, "--output", out], check=True,
                   capture_output=True)
    with open(out) as f:
        return [float(r["probability"]) for r in csv.DictReader(f)]


def normal_hours(keys, y):
    seconds = sum((parse(k[2]) - parse(k[1])).total_seconds() for k, lab in zip(keys, y) if not lab)
    return seconds / 3600


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--faultline", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--trained-at", default=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    args = ap.parse_args()
    from sklearn.metrics import precision_score, recall_score, roc_auc_score
    from skl2onnx import to_onnx

    train_files = files(args.data, ["valve1", "anomaly-free"])
    valve1_files = files(args.data, ["valve1"])
    heldout_files = files(args.data, ["valve2", "other"])
    os.makedirs(os.path.join(args.out, "evaluation"), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # 1. Window size and model family: grouped CV on the training runs only.
        cv = []
        for window in WINDOWS:
            X, y, g, _ = dataset(args.faultline, train_files, window, tmp)
            for kind in ("lr", "hgb"):
                p = out_of_fold(kind, X, y, g)
                cv.append({"window": window, "model": kind, "auc": roc_auc_score(y, p), "windows": len(y)})
                print(f"cv  window {window:4} {kind:3}  AUC {cv[-1]['auc']:.3f}  ({len(y)} windows)", file=sys.stderr)
        best = max(cv, key=lambda r: (round(r["auc"], 3), -WINDOWS.index(r["window"])))
        window, kind = best["window"], best["model"]
        X, y, g, keys = dataset(args.faultline, train_files, window, tmp)
        oof = out_of_fold(kind, X, y, g)
        threshold, cv_f1 = best_threshold(oof, y)
        with open(os.path.join(args.out, "evaluation", "cv.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["window", "model", "auc", "windows"])
            w.writeheader()
            w.writerows({**r, "auc": f"{r['auc']:.4f}"} for r in cv)

        # 2. The model: all training runs, exported with skl2onnx's defaults.
        model = make_model(kind).fit(X, y)
        onx = to_onnx(model, X[:1])
        # skl2onnx lists opsets in set order (random per process): sort them,
        # so the same data gives the same bytes.
        opsets = sorted(onx.opset_import, key=lambda o: o.domain)
        del onx.opset_import[:]
        onx.opset_import.extend(opsets)
        with open(os.path.join(args.out, "model.onnx"), "wb") as f:
            f.write(onx.SerializeToString())
        normal = X[~y]
        ref = {}
        for i, name in enumerate(FEATURES):
            col = normal[:, i].astype(np.float64)
            q = np.quantile(col, [0.05, 0.5, 0.95])
            ref[name] = {"mean": float(col.mean()), "std": float(col.std()), "p05": float(q[0]), "p50": float(q[1]),
                         "p95": float(q[2])}
        write_toml(args, kind, window, threshold, cv_f1, best["auc"], len(y), ref)

        # 3. False alerts on anomaly-free, from a model that never saw it.
        Xv, yv, _, _ = dataset(args.faultline, valve1_files, window, tmp)
        Xa, ya, _, keys_a = dataset(args.faultline, files(args.data, ["anomaly-free"]), window, tmp)
        p_free = make_model(kind).fit(Xv, yv).predict_proba(Xa)[:, 1]
        free_alerts = [t for t in alerts(keys_a, p_free, threshold) if t[2] == "open"]
        free_hours = normal_hours(keys_a, ya)

        # 4. Held-out runs: scored by faultline itself, never used above.
        probs, hkeys, hy = [], [], []
        for path in heldout_files:
            fcsv = features(args.faultline, path, window, tmp)
            _, yy, kk = load(fcsv)
            probs += score_with_faultline(args.faultline, args.out, fcsv, tmp)
            hkeys += kk
            hy += list(yy)
        probs, hy = np.array(probs), np.array(hy)
        transitions = alerts(hkeys, probs, threshold)
        runs = [run_id(p) for p in heldout_files]
        caught, leads, false_alerts, per_run = episode_report(transitions, os.path.join(args.data, "anomaly_windows.csv"), runs)
        with open(os.path.join(args.out, "evaluation", "heldout-alerts.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["device_id", "alert_window_start", "status", "at_window_end"])
            w.writerows(transitions)
        summary = {
            "window": window,
            "model": kind,
            "threshold": threshold,
            "alert_policy": {"raise_after": RAISE_AFTER, "clear_after": CLEAR_AFTER, "hysteresis": HYSTERESIS},
            "cv": {"auc": best["auc"], "f1_at_threshold": cv_f1, "windows": int(len(y))},
            "anomaly_free": {"hours": free_hours, "false_alerts": len(free_alerts),
                             "false_alerts_per_hour": len(free_alerts) / free_hours},
            "heldout": {
                "runs": len(runs),
                "windows": int(len(hy)),
                "fault_windows": int(hy.sum()),
                "auc": float(roc_auc_score(hy, probs)),
                "precision": float(precision_score(hy, probs >= threshold)),
                "recall": float(recall_score(hy, probs >= threshold)),
                "faults_caught": caught,
                "median_delay_s": float(np.median(leads)) if leads else None,
                "false_alerts": false_alerts,
                "normal_hours": normal_hours(hkeys, hy),
                "false_alerts_per_hour": false_alerts / normal_hours(hkeys, hy),
                "per_run": per_run,
            },
        }
        with open(os.path.join(args.out, "evaluation", "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        print(json.dumps({k: v for k, v in summary.items() if k != "heldout"}, indent=1))
        print(json.dumps({k: v for k, v in summary["heldout"].items() if k != "per_run"}, indent=1))


def write_toml(args, kind, window, threshold, cv_f1, cv_auc, n, ref):
    import sklearn
    import skl2onnx
    name = {"hgb": "HistGradientBoostingClassifier", "lr": "StandardScaler + LogisticRegression"}[kind]
    lines = [
        'name = "pump-skab"',
        'version = "1"',
        "",
        "[input]",
        'name = "X"',
        "features = [",
        *[f'  "{f}",' for f in FEATURES],
        "]",
        "",
        "[output]",
        'name = "output_probability"',
        "positive_index = 1",
        "",
        "[alert]",
        f"threshold = {threshold}",
        "",
        "[training]",
        'dataset = "SKAB v0.9 (Skoltech Anomaly Benchmark, GPL-3.0): valve1/ and anomaly-free/"',
        'heldout = "valve2/ and other/ (evaluation only)"',
        f'window = "{window}"',
        f'model = "{name}"',
        f'exporter = "skl2onnx {skl2onnx.__version__}, scikit-learn {sklearn.__version__}, default options"',
        f'trained_at = "{args.trained_at}"',
        f"windows = {n}",
        f"metrics = {{ cv_auc = {cv_auc:.4f}, cv_f1 = {cv_f1:.4f} }}",
        'license = "GPL-3.0 (derived from SKAB data)"',
        "",
    ]
    for feat, r in ref.items():
        lines.append(f'[training.reference."{feat}"]')
        lines.append(", ".join(f"{k} = {v:.9g}" for k, v in r.items()).join(["", ""]))
    text = "\n".join(lines)
    # `k = v, k = v` lines become one inline table each for readability.
    out = []
    for line in text.splitlines():
        if line and "=" in line and line.count("=") > 1 and not line.startswith(("metrics", "[")):
            out.extend(part.strip() for part in line.split(", "))
        else:
            out.append(line)
    with open(os.path.join(args.out, "model.toml"), "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
