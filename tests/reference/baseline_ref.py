#!/usr/bin/env python3
"""Independent numpy reference for the per-device baseline (issue 8).

Fits a model of normal to warm-up rows and scores later rows, written from
the textbook formulas with numpy's dense routines (and scikit-learn's
Ledoit-Wolf estimator as a second opinion on the shrinkage), so that the
Rust code and this script are two separate implementations:

- standardisation by the warm-up mean and population standard deviation
  (a deviation below 1e-3 * max(|mean|, 1) is raised to that floor);
- the Ledoit-Wolf shrunk covariance of the standardised rows;
- PCA on it: the `k` largest eigenvalues and their vectors;
- Hotelling's T^2 on the k components and Q (SPE), the squared residual;
- limits: the warm-up scores' `quantile` (linear interpolation) times a
  margin of its own for each statistic;
- contributions: T^2 = sum_j z_j * sum_a v_ja t_a / l_a, Q = sum_j r_j^2,
  and each feature's share of (T^2/T2_limit + Q/Q_limit).

    python3 tests/reference/baseline_ref.py > tests/fixtures/baseline.json

writes the committed fixture: its input rows (seeded, correlated, so that
the components mean something) and the expected results.
"""
import json
import sys

import numpy as np
from sklearn.covariance import ledoit_wolf


def fit(rows, k, quantile, t2_margin, q_margin):
    x = np.asarray(rows, dtype=np.float64)
    n, p = x.shape
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    scale = np.maximum(std, 1e-3 * np.maximum(np.abs(mean), 1.0))
    z = (x - mean) / scale
    zc = z - z.mean(axis=0)  # already centred; kept for the textbook form
    s = zc.T @ zc / n
    mu = np.trace(s) / p
    target = mu * np.eye(p)
    d2 = np.sum((s - target) ** 2)
    b2 = sum(np.sum((np.outer(r, r) - s) ** 2) for r in zc) / n**2
    b2 = min(b2, d2)
    shrinkage = 1.0 if d2 == 0 else b2 / d2
    cov = shrinkage * target + (1 - shrinkage) * s
    sk_cov, sk_shrinkage = ledoit_wolf(z)
    assert abs(sk_shrinkage - shrinkage) < 1e-9, (sk_shrinkage, shrinkage)
    assert np.allclose(sk_cov, cov, atol=1e-12)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    model = {
        "mean": mean,
        "scale": scale,
        "shrinkage": shrinkage,
        "eigenvalues": values[:k],
        "vectors": vectors[:, :k],
    }
    t2, q, _ = score(model, x)
    model["t2_limit"] = np.quantile(t2, quantile) * t2_margin
    model["q_limit"] = np.quantile(q, quantile) * q_margin
    return model


def score(model, rows):
    x = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    z = (x - model["mean"]) / model["scale"]
    v, lam = model["vectors"], model["eigenvalues"]
    t = z @ v
    t2 = np.sum(t**2 / lam, axis=1)
    resid = z - t @ v.T
    q = np.sum(resid**2, axis=1)
    contrib_t2 = z * ((t / lam) @ v.T)
    contrib_q = resid**2
    return t2, q, (contrib_t2, contrib_q)


def main():
    rng = np.random.default_rng(20261122)
    p, n_warm, n_test, k = 6, 60, 8, 2
    # Two latent factors drive six features, plus noise and offsets.
    loadings = rng.normal(size=(2, p))
    offsets = np.array([5.0, -2.0, 100.0, 0.5, 0.0, 1e3])
    def draw(n, shift=0.0):
        f = rng.normal(size=(n, 2))
        return offsets + f @ loadings + 0.3 * rng.normal(size=(n, p)) + shift

    warm = draw(n_warm)
    test = np.vstack([draw(4), draw(4, shift=np.array([0, 0, 0, 2.5, 0, 0]))])
    quantile, t2_margin, q_margin = 0.99, 1.5, 3.0
    model = fit(warm, k, quantile, t2_margin, q_margin)
    t2, q, (ct, cq) = score(model, test)
    ratio = t2 / model["t2_limit"] + q / model["q_limit"]
    shares = (ct / model["t2_limit"] + cq / model["q_limit"]) / ratio[:, None]
    out = {
        "source": "tests/reference/baseline_ref.py (numpy and scikit-learn, seeded)",
        "components": k,
        "quantile": quantile,
        "t2_margin": t2_margin,
        "q_margin": q_margin,
        "warmup": warm.tolist(),
        "test": test.tolist(),
        "mean": model["mean"].tolist(),
        "scale": model["scale"].tolist(),
        "shrinkage": model["shrinkage"],
        "eigenvalues": model["eigenvalues"].tolist(),
        "t2_limit": model["t2_limit"],
        "q_limit": model["q_limit"],
        "t2": t2.tolist(),
        "q": q.tolist(),
        "shares": shares.tolist(),
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
