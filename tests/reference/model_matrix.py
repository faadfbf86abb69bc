#!/usr/bin/env python3
"""Builds one model package per kind that data teams export, for faultline's
model-runtime tests and benchmark, with onnxruntime as the reference.

    python3 tests/reference/model_matrix.py OUTDIR

For each kind, OUTDIR/<kind>/ gets:
  model.onnx     exported with the exporter's *default* options
  model.toml     a faultline package description (SPEC 3)
  rows.csv       test rows, about a fifth of them with NaN features, plus extremes
  expected.csv   onnxruntime's output for those rows (the package's output)
  ort.json       onnxruntime timings, single thread: per row and per batch of 256

Kinds: scikit-learn (skl2onnx) logistic regression and MLP inside a
StandardScaler pipeline, random forest, gradient boosting, histogram gradient
boosting, a gradient-boosting regressor; XGBoost and LightGBM (onnxmltools); a
plain neural network written with onnx.helper (Gemm/Relu/Sigmoid); the random
forest rewritten to BRANCH_GTE splits; the gradient-boosting model rewritten
as the ai.onnx.ml v5 TreeEnsemble operator (no exporter emits it by default).
Deterministic: fixed seeds throughout.
"""
import json
import os
import sys
import time
import warnings

import numpy as np
import onnx
import onnx.helper as oh
import onnxruntime as ort
from onnx import TensorProto, numpy_helper

warnings.filterwarnings("ignore")
# Dynamic batch sizes against the exporters' declared [1] label shapes are fine; say so once, not per run.
ort.set_default_logger_severity(3)

N_FEATURES = 16
FEATURES = [f"s{i:02d}.mean" for i in range(N_FEATURES)]


def data():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=6000, n_features=N_FEATURES, n_informative=8,
                               n_redundant=4, flip_y=0.02, random_state=7)
    X = X.astype(np.float32)
    rng = np.random.default_rng(11)
    Xtr, ytr, Xte = X[:5000], y[:5000], X[5000:5300].copy()
    # Training data with holes, for learners that learn where missing values go.
    Xtr_nan = Xtr.copy()
    Xtr_nan[rng.random(Xtr.shape) < 0.05] = np.nan
    # Test rows: a fifth with 1-3 NaN features, and a few extremes.
    for i in rng.choice(len(Xte), size=len(Xte) // 5, replace=False):
        Xte[i, rng.choice(N_FEATURES, size=rng.integers(1, 4), replace=False)] = np.nan
    extremes = np.array([[0.0] * N_FEATURES, [-0.0] * N_FEATURES, [1e30] * N_FEATURES,
                         [-1e30] * N_FEATURES, [np.nan] * N_FEATURES], dtype=np.float32)
    return Xtr, Xtr_nan, ytr, np.vstack([Xte, extremes])


def sklearn_kinds(Xtr, Xtr_nan, y):
    from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor,
                                  HistGradientBoostingClassifier, RandomForestClassifier)
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skl2onnx import to_onnx

    out = {}
    lr = make_pipeline(StandardScaler(), LogisticRegression()).fit(Xtr, y)
    out["lr"] = (to_onnx(lr, Xtr[:1]), "output_probability", 1)
    mlp = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=400,
                                                        random_state=0)).fit(Xtr, y)
    out["mlp"] = (to_onnx(mlp, Xtr[:1]), "output_probability", 1)
    rf = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(Xtr_nan, y)
    out["rf"] = (to_onnx(rf, Xtr[:1]), "output_probability", 1)
    gb = GradientBoostingClassifier(random_state=0).fit(Xtr, y)
    out["gb"] = (to_onnx(gb, Xtr[:1]), "output_probability", 1)
    hgb = HistGradientBoostingClassifier(random_state=0).fit(Xtr_nan, y)
    out["hgb"] = (to_onnx(hgb, Xtr[:1]), "output_probability", 1)
    # Remaining useful life style: a continuous target.
    rul = (Xtr[:, 0] * 40 + Xtr[:, 3] * 25 + 120).astype(np.float32)
    gbr = GradientBoostingRegressor(random_state=0).fit(Xtr, rul)
    out["gbr"] = (to_onnx(gbr, Xtr[:1]), "variable", None)
    return out, mlp


def boosting_kinds(Xtr_nan, y):
    import lightgbm
    import xgboost
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [("input", FloatTensorType([None, N_FEATURES]))]
    xgb = xgboost.XGBClassifier(random_state=0).fit(Xtr_nan, y)
    lgbm = lightgbm.LGBMClassifier(random_state=0, verbose=-1).fit(Xtr_nan, y)
    return {
        "xgb": (convert_xgboost(xgb, initial_types=types), "probabilities", 1),
        "lgbm": (convert_lightgbm(lgbm, initial_types=types), "probabilities", 1),
    }


def plain_nn(mlp):
    """The trained MLP written as plain ONNX: Sub/Div scaling, Gemm, Relu, Sigmoid."""
    scaler, net = mlp.steps[0][1], mlp.steps[1][1]
    inits = [numpy_helper.from_array(scaler.mean_.astype(np.float32), "mean"),
             numpy_helper.from_array(scaler.scale_.astype(np.float32), "scale")]
    nodes = [oh.make_node("Sub", ["X", "mean"], ["c"]), oh.make_node("Div", ["c", "scale"], ["h0"])]
    for i, (w, b) in enumerate(zip(net.coefs_, net.intercepts_)):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        nodes.append(oh.make_node("Gemm", [f"h{i}", f"w{i}", f"b{i}"], [f"z{i}"]))
        last = i == len(net.coefs_) - 1
        nodes.append(oh.make_node("Sigmoid" if last else "Relu", [f"z{i}"], ["probability" if last else f"h{i + 1}"]))
    graph = oh.make_graph(nodes, "plain_nn",
                          [oh.make_tensor_value_info("X", TensorProto.FLOAT, [None, N_FEATURES])],
                          [oh.make_tensor_value_info("probability", TensorProto.FLOAT, [None, 1])], inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def tree_node(model, op="TreeEnsembleClassifier"):
    return next(n for n in model.graph.node if n.op_type == op)


def with_gte_splits(model):
    """A copy whose every split is BRANCH_GTE instead of BRANCH_LEQ: a different
    model, exercising the mode stock tract evaluates wrongly."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    attr = next(a for a in tree_node(m).attribute if a.name == "nodes_modes")
    modes = [b"BRANCH_GTE" if s == b"BRANCH_LEQ" else s for s in attr.strings]
    del attr.strings[:]
    attr.strings.extend(modes)
    return m


def as_tree_ensemble_v5(model):
    """A binary gradient-boosting TreeEnsembleClassifier rewritten as the v5
    TreeEnsemble operator, followed by the base value and the logistic."""
    node = tree_node(model)
    a = {x.name: oh.get_attribute_value(x) for x in node.attribute}
    key = list(zip(a["nodes_treeids"], a["nodes_nodeids"]))
    modes = a["nodes_modes"]
    interior = [k for k, m in zip(key, modes) if m != b"LEAF"]
    node_ix = {k: i for i, k in enumerate(interior)}
    leaf_keys = [k for k, m in zip(key, modes) if m == b"LEAF"]
    leaf_ix = {k: i for i, k in enumerate(leaf_keys)}
    weight = {(t, n): w for t, n, w in zip(a["class_treeids"], a["class_nodeids"], a["class_weights"])}
    pos = {k: i for i, k in enumerate(key)}
    t_ids, t_leaf, f_ids, f_leaf, feats, splits, mtrue, mode_codes = [], [], [], [], [], [], [], []
    code = {b"BRANCH_LEQ": 0, b"BRANCH_LT": 1, b"BRANCH_GTE": 2, b"BRANCH_GT": 3}
    for k in interior:
        i = pos[k]
        for child, ids, leafs in ((a["nodes_truenodeids"][i], t_ids, t_leaf), (a["nodes_falsenodeids"][i], f_ids, f_leaf)):
            ck = (k[0], child)
            if ck in leaf_ix:
                ids.append(leaf_ix[ck]); leafs.append(1)
            else:
                ids.append(node_ix[ck]); leafs.append(0)
        feats.append(a["nodes_featureids"][i]); splits.append(a["nodes_values"][i])
        mtrue.append(a.get("nodes_missing_value_tracks_true", [0] * len(key))[i]); mode_codes.append(code[modes[i]])
    roots = sorted({t for t, _ in key})
    tree_roots = [node_ix[(t, 0)] for t in roots]
    te = oh.make_node(
        "TreeEnsemble", ["X"], ["score"], domain="ai.onnx.ml", n_targets=1, aggregate_function=1, post_transform=0,
        tree_roots=tree_roots, nodes_featureids=feats, nodes_truenodeids=t_ids, nodes_trueleafs=t_leaf,
        nodes_falsenodeids=f_ids, nodes_falseleafs=f_leaf, nodes_missing_value_tracks_true=mtrue,
        nodes_modes=oh.make_tensor("modes", TensorProto.UINT8, [len(mode_codes)], mode_codes),
        nodes_splits=oh.make_tensor("splits", TensorProto.FLOAT, [len(splits)], splits),
        leaf_targetids=[0] * len(leaf_keys),
        leaf_weights=oh.make_tensor("weights", TensorProto.FLOAT, [len(leaf_keys)], [weight[k] for k in leaf_keys]))
    base = numpy_helper.from_array(np.array([a["base_values"][0]], dtype=np.float32), "base")
    graph = oh.make_graph(
        [te, oh.make_node("Add", ["score", "base"], ["logit"]), oh.make_node("Sigmoid", ["logit"], ["probability"])],
        "tree_ensemble_v5", [oh.make_tensor_value_info("X", TensorProto.FLOAT, [None, N_FEATURES])],
        [oh.make_tensor_value_info("probability", TensorProto.FLOAT, [None, 1])], [base])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 21), oh.make_opsetid("ai.onnx.ml", 5)])


def session(model):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def as_matrix(value):
    """A ZipMap output (list of {class: p}) or a tensor, as a 2-D float array."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys = sorted(value[0])
        return np.array([[row[k] for k in keys] for row in value], dtype=np.float64)
    arr = np.asarray(value, dtype=np.float64)
    return arr.reshape(len(arr), -1)


def median_us(fn, n):
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e6)


def timings(sess, output, rows):
    # A ZipMap output is a list of Python dicts: timing it would measure Python.
    # onnxruntime runs only what the requested output needs, so time the label
    # output of those models, which the tree or linear node itself produces.
    names = [o.name for o in sess.get_outputs()]
    out = output
    if sess.get_outputs()[names.index(output)].type.startswith("seq"):
        out = names[0]
    x1 = rows[:1]
    rng = np.random.default_rng(3)
    x256 = rows[rng.integers(0, len(rows), 256)]
    name = sess.get_inputs()[0].name
    return {
        "timed_output": out,
        "per_row_us": median_us(lambda: sess.run([out], {name: x1}), 3000),
        "batch256_us": median_us(lambda: sess.run([out], {name: x256}), 300),
        "onnxruntime": ort.__version__,
        "threads": 1,
    }


def write_package(dirname, kind, model, output, positive, rows):
    os.makedirs(dirname, exist_ok=True)
    onnx.save(model, os.path.join(dirname, "model.onnx"))
    sess = session(model)
    input_name = sess.get_inputs()[0].name
    expected = as_matrix(sess.run([output], {input_name: rows})[0])
    producer = f"{model.producer_name} {model.producer_version}".strip() or "onnx.helper"
    lines = [f'name = "matrix-{kind}"', 'version = "1"', "[input]", f'name = "{input_name}"',
             "features = [" + ", ".join(f'"{f}"' for f in FEATURES) + "]", "[output]", f'name = "{output}"']
    if positive is None:
        lines.append('kind = "value"')
    else:
        lines.append(f"positive_index = {positive}")
        lines += ["[alert]", "threshold = 0.5"]
    lines += ["[training]", f'exporter = "{producer}"', 'dataset = "sklearn make_classification, seed 7"']
    with open(os.path.join(dirname, "model.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    np.savetxt(os.path.join(dirname, "rows.csv"), rows, delimiter=",", fmt="%.9g", header=",".join(FEATURES),
               comments="")
    np.savetxt(os.path.join(dirname, "expected.csv"), expected, delimiter=",", fmt="%.9g",
               header=",".join(f"out{i}" for i in range(expected.shape[1])), comments="")
    with open(os.path.join(dirname, "ort.json"), "w") as f:
        json.dump(timings(sess, output, rows), f, indent=1)
    print(f"{kind:5} {producer:24} output {output!r} {expected.shape}")


def main():
    outdir = sys.argv[1]
    Xtr, Xtr_nan, y, rows = data()
    kinds, mlp = sklearn_kinds(Xtr, Xtr_nan, y)
    kinds.update(boosting_kinds(Xtr_nan, y))
    kinds["nn"] = (plain_nn(mlp), "probability", 0)
    kinds["gte"] = (with_gte_splits(kinds["rf"][0]), "output_probability", 1)
    kinds["v5"] = (as_tree_ensemble_v5(kinds["gb"][0]), "probability", 0)
    for kind, (model, output, positive) in kinds.items():
        write_package(os.path.join(outdir, kind), kind, model, output, positive, rows)


if __name__ == "__main__":
    main()
