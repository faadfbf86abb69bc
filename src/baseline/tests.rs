use super::*;

/// The numpy reference's fixture (`tests/reference/baseline_ref.py`).
#[derive(serde::Deserialize)]
struct Reference {
    components: usize,
    quantile: f64,
    t2_margin: f64,
    q_margin: f64,
    warmup: Vec<Vec<f64>>,
    test: Vec<Vec<f64>>,
    mean: Vec<f64>,
    scale: Vec<f64>,
    shrinkage: f64,
    eigenvalues: Vec<f64>,
    t2_limit: f64,
    q_limit: f64,
    t2: Vec<f64>,
    q: Vec<f64>,
    shares: Vec<Vec<f64>>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("../../tests/fixtures/baseline.json")).expect("fixture")
}

fn close(a: f64, b: f64, what: &str) {
    let tol = 1e-9 * a.abs().max(b.abs()).max(1.0);
    assert!((a - b).abs() <= tol, "{what}: {a} against numpy's {b}");
}

fn close_all(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        close(*x, *y, &format!("{what}[{i}]"));
    }
}

fn cfg(r: &Reference) -> FitConfig {
    FitConfig { components: r.components, quantile: r.quantile, t2_margin: r.t2_margin, q_margin: r.q_margin }
}

#[test]
fn fit_and_scores_match_the_numpy_reference() {
    let r = reference();
    let f = Fitted::fit(&r.warmup, &cfg(&r)).unwrap();
    close_all(&f.mean, &r.mean, "mean");
    close_all(&f.scale, &r.scale, "scale");
    close(f.shrinkage, r.shrinkage, "shrinkage");
    close_all(&f.eigenvalues, &r.eigenvalues, "eigenvalues");
    close(f.t2_limit, r.t2_limit, "T² limit");
    close(f.q_limit, r.q_limit, "Q limit");
    for (i, x) in r.test.iter().enumerate() {
        let s = f.score(x);
        close(s.t2, r.t2[i], &format!("T² of row {i}"));
        close(s.q, r.q[i], &format!("Q of row {i}"));
        close_all(&s.shares, &r.shares[i], &format!("shares of row {i}"));
    }
    // The reference's last four rows are shifted in one feature: Q sees it.
    assert!(r.test[4..].iter().all(|x| f.score(x).q_ratio > 1.0));
    assert!(r.test[..4].iter().all(|x| f.score(x).ratio() < 1.0));
}

#[test]
fn shares_sum_to_one_and_name_the_feature_that_moved() {
    let r = reference();
    let f = Fitted::fit(&r.warmup, &cfg(&r)).unwrap();
    for x in r.test.iter().chain(&r.warmup) {
        let s = f.score(x);
        close(s.shares.iter().sum(), 1.0, "sum of shares");
    }
    // Feature 3 was shifted in the last rows.
    for x in &r.test[4..] {
        let s = f.score(x);
        let top = (0..s.shares.len()).max_by(|&a, &b| s.shares[a].total_cmp(&s.shares[b])).unwrap();
        assert_eq!(top, 3, "{:?}", s.shares);
    }
}

#[test]
fn fitting_is_deterministic_and_the_model_round_trips() {
    let r = reference();
    let a = Fitted::fit(&r.warmup, &cfg(&r)).unwrap();
    let b = Fitted::fit(&r.warmup, &cfg(&r)).unwrap();
    assert_eq!(a, b);
    let bytes = postcard::to_allocvec(&a).unwrap();
    let back: Fitted = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, a);
    assert_eq!(back.score(&r.test[5]), a.score(&r.test[5]));
}

#[test]
fn the_limits_are_the_warmup_quantile_times_the_margin() {
    let r = reference();
    let f = Fitted::fit(&r.warmup, &FitConfig { components: 2, quantile: 1.0, t2_margin: 1.0, q_margin: 1.0 }).unwrap();
    // With the maximum and no margin, the warm-up's worst row sits on a limit.
    let worst = r.warmup.iter().map(|x| f.score(x).ratio()).fold(0.0, f64::max);
    close(worst, 1.0, "worst warm-up ratio");
    let g = Fitted::fit(&r.warmup, &FitConfig { components: 2, quantile: 1.0, t2_margin: 2.0, q_margin: 3.0 }).unwrap();
    close(g.t2_limit, 2.0 * f.t2_limit, "T² limit with margin 2");
    close(g.q_limit, 3.0 * f.q_limit, "Q limit with margin 3");
}

#[test]
fn quantiles_interpolate_as_numpy_does() {
    // numpy.quantile([1, 2, 3, 4], q) for q = 0, 0.5, 0.99, 1.
    for (q, want) in [(0.0, 1.0), (0.5, 2.5), (0.99, 3.97), (1.0, 4.0)] {
        close(quantile(&mut [4.0, 1.0, 3.0, 2.0], q), want, &format!("q={q}"));
    }
    assert!(quantile(&mut [], 0.5).is_nan());
}

#[test]
fn bad_warmups_are_refused_and_constant_features_stay_finite() {
    let c = FitConfig { components: 2, quantile: 0.99, t2_margin: 1.5, q_margin: 1.5 };
    let rows = |n: usize| (0..n).map(|i| vec![i as f64, (i * i) as f64 % 7.0, 3.0]).collect::<Vec<_>>();
    assert_eq!(Fitted::fit(&rows(3), &c), Err(FitError::TooFew { rows: 3, features: 3, need: 4 }));
    let mut nan = rows(10);
    nan[4][1] = f64::NAN;
    assert_eq!(Fitted::fit(&nan, &c), Err(FitError::NotFinite { row: 4 }));
    let mut ragged = rows(10);
    ragged[2].pop();
    assert_eq!(Fitted::fit(&ragged, &c), Err(FitError::Width { got: 2, features: 3 }));
    // The third feature is constant at 3: its scale is the floor, 3e-3.
    let f = Fitted::fit(&rows(10), &c).unwrap();
    close(f.scale[2], 3e-3, "floored scale");
    let s = f.score(&[4.0, 2.0, 3.3]);
    assert!(s.ratio().is_finite() && s.ratio() > 1.0, "{s:?}");
    // A missing feature counts as normal.
    let s = f.score(&[4.5, f64::NAN, 3.0]);
    assert!(s.t2.is_finite() && s.q.is_finite());
}

#[test]
fn a_device_learns_then_scores_and_a_reset_learns_again() {
    let r = reference();
    let cfg = BaselineConfig {
        features: (0..6).map(|i| format!("f{i}.mean")).collect(),
        warmup_windows: r.warmup.len(),
        fit: cfg(&r),
        adapt_rate: 0.0,
        adapt_below: 0.5,
    };
    let mut d = DeviceBaseline::default();
    for (i, x) in r.warmup.iter().enumerate() {
        let got = d.observe(&cfg, x.clone(), i as i64);
        if i + 1 < r.warmup.len() {
            assert_eq!(got, Observed::Learning { have: i + 1, need: r.warmup.len() });
            // Incomplete windows are left out of the warm-up.
            let mut gap = x.clone();
            gap[2] = f64::NAN;
            assert_eq!(d.observe(&cfg, gap, i as i64), Observed::Incomplete);
        } else {
            assert_eq!(got, Observed::Fitted { version: 1 });
        }
    }
    // The same model as fitted from the rows at once.
    let want = Fitted::fit(&r.warmup, &cfg.fit).unwrap();
    assert_eq!(d.phase, Phase::Active { fitted: want.clone(), since_ms: r.warmup.len() as i64 - 1 });
    assert_eq!(d.observe(&cfg, r.test[6].clone(), 100), Observed::Scored(want.score(&r.test[6])));
    // Persisted and back.
    let back: DeviceBaseline = postcard::from_bytes(&postcard::to_allocvec(&d).unwrap()).unwrap();
    assert_eq!(back, d);
    d.reset();
    assert_eq!((d.learning(), d.version), (Some(0), 1));
    assert_eq!(d.observe(&cfg, r.test[0].clone(), 101), Observed::Learning { have: 1, need: r.warmup.len() });
    for (i, x) in r.warmup.iter().enumerate().skip(1) {
        let got = d.observe(&cfg, x.clone(), 200 + i as i64);
        if i + 1 == r.warmup.len() {
            assert_eq!(got, Observed::Fitted { version: 2 });
        }
    }
}

#[test]
fn adaptation_follows_normal_windows_only() {
    let r = reference();
    let fit = Fitted::fit(&r.warmup, &cfg(&r)).unwrap();
    let active = || DeviceBaseline { version: 1, phase: Phase::Active { fitted: fit.clone(), since_ms: 0 } };
    let mean = |d: &DeviceBaseline| match &d.phase {
        Phase::Active { fitted, .. } => fitted.mean.clone(),
        Phase::Learning { .. } => panic!("learning"),
    };
    let mut c = BaselineConfig {
        features: (0..6).map(|i| format!("f{i}.mean")).collect(),
        warmup_windows: r.warmup.len(),
        fit: cfg(&r),
        adapt_rate: 0.0,
        adapt_below: 0.5,
    };
    // Off: the model does not move.
    let mut d = active();
    for x in &r.test {
        d.observe(&c, x.clone(), 0);
    }
    assert_eq!(mean(&d), fit.mean);
    // On: a normal window (ratio below the gate) pulls the mean a tenth of the way.
    c.adapt_rate = 0.1;
    let normal = r.test[..4].iter().find(|x| fit.score(x).ratio() < 0.5).expect("a normal test row");
    let mut d = active();
    d.observe(&c, normal.clone(), 0);
    let want: Vec<f64> = fit.mean.iter().zip(normal).map(|(m, x)| m + 0.1 * (x - m)).collect();
    close_all(&mean(&d), &want, "adapted mean");
    // A window past a limit leaves it, and so does an incomplete one.
    let mut d = active();
    d.observe(&c, r.test[6].clone(), 0);
    let mut gap = normal.clone();
    gap[0] = f64::NAN;
    d.observe(&c, gap, 0);
    assert_eq!(mean(&d), fit.mean);
}

#[test]
fn values_too_large_to_standardise_are_refused_not_fitted_as_nan() {
    // Finite readings whose sum overflows: the mean is infinite.
    let rows: Vec<Vec<f64>> = (0..10).map(|i| vec![1e307 + f64::from(i) * 1e300, 1.7e308, f64::from(i)]).collect();
    let cfg = FitConfig { components: 1, quantile: 0.99, t2_margin: 1.5, q_margin: 8.0 };
    assert_eq!(Fitted::fit(&rows, &cfg), Err(FitError::Overflow));
    // A device sending them keeps learning, bounded, and never scores NaN.
    let bc = BaselineConfig {
        features: vec!["a".into(), "b".into(), "c".into()],
        warmup_windows: 5,
        fit: cfg,
        adapt_rate: 0.0,
        adapt_below: 0.5,
    };
    let mut d = DeviceBaseline::default();
    for (i, r) in rows.iter().enumerate() {
        assert!(matches!(d.observe(&bc, r.clone(), i as i64), Observed::Learning { .. }));
    }
    assert!(d.learning().is_some_and(|n| n < 5));
}
