//! Compiled tree ensembles: the evaluator behind faultline's own versions of
//! the ONNX-ML operators `TreeEnsembleClassifier`, `TreeEnsembleRegressor`
//! (v1/v3) and `TreeEnsemble` (v5).
//!
//! Stock tract gets these wrong or slow (see issue 3): binary boosted
//! classifiers are refused, `BRANCH_GTE` is evaluated wrongly, labels are
//! inverted, and the walk is two orders of magnitude slower than
//! onnxruntime. Here every tree is flattened into one array of 16-byte
//! nodes, and every split is normalised when the model loads to the single
//! test `x <= c` in f32: `<`, `>=` and `>` become `<=` against the adjacent
//! f32 with the children swapped as needed, and the missing-value direction
//! becomes one flag. The hot loop then has one comparison and no mode
//! switch. Splits that cannot be normalised (`==`, `!=`, set membership, NaN
//! thresholds) send the whole ensemble to a general loop.
//!
//! Semantics follow onnxruntime, the reference data teams validate with:
//! `x CMP threshold || (missing_tracks_true && x is NaN)` takes the true
//! branch; the binary classifier's single score column becomes two columns
//! by its rules (see [`Ensemble::finish_classifier`]).

use std::fmt;

/// A split's comparison (ONNX `nodes_modes`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    /// v5 `BRANCH_MEMBER`: index into [`Spec::member_sets`].
    Member(usize),
}

/// ONNX `post_transform`. PROBIT is refused when the model loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
}

/// ONNX `aggregate_function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

/// A node of the neutral description, before compilation.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecNode {
    Branch {
        feature: usize,
        mode: Mode,
        threshold: f64,
        nan_true: bool,
        if_true: usize,
        if_false: usize,
    },
    /// `(target, weight)` contributions.
    Leaf(Vec<(usize, f64)>),
}

/// Class labels of a classifier.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl Labels {
    pub fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tree ensemble as the operator attributes describe it, in either layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// All trees' nodes; each tree is reached from its root in `roots`.
    pub nodes: Vec<SpecNode>,
    pub roots: Vec<usize>,
    /// Targets (regressor) or classes (classifier).
    pub n_targets: usize,
    pub base_values: Vec<f64>,
    pub aggregate: Aggregate,
    pub post_transform: PostTransform,
    pub member_sets: Vec<Vec<f64>>,
    /// Present for classifiers.
    pub labels: Option<Labels>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TreeError {
    #[error("tree ensemble has no trees")]
    Empty,
    #[error("node {node}: child {child} does not exist")]
    BadChild { node: usize, child: usize },
    #[error("tree {tree}: a node is reached twice (the tree has a cycle or shared nodes)")]
    NotATree { tree: usize },
    #[error("leaf {node}: target {target} is out of range (n_targets {n})")]
    BadTarget { node: usize, target: usize, n: usize },
    #[error("node {node}: set membership index {set} is out of range")]
    BadSet { node: usize, set: usize },
    #[error("base_values has {got} entries, expected 0, 1 or {n}")]
    BadBase { got: usize, n: usize },
    #[error("classifier has {got} labels for {n} classes")]
    BadLabels { got: usize, n: usize },
    #[error("more than {max} nodes")]
    TooLarge { max: usize },
}

const LEAF: u32 = 1 << 31;
const NAN_A: u32 = 1 << 31;

/// A normalised split: go to `a` when `x <= threshold`, or when `x` is NaN
/// and the `NAN_A` bit of `feature` is set; otherwise to `b`. Children with
/// the `LEAF` bit are leaf indices.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Node {
    threshold: f32,
    feature: u32,
    a: u32,
    b: u32,
}

/// A split the fast form cannot express, for the general loop.
#[derive(Debug, Clone, PartialEq)]
struct General {
    feature: u32,
    mode: Mode,
    /// In f32, as onnxruntime compares float inputs with float thresholds.
    threshold: f32,
    nan_true: bool,
    if_true: u32,
    if_false: u32,
}

#[derive(Debug, Clone, PartialEq)]
enum Walk {
    Fast(Vec<Node>),
    General(Vec<General>),
}

/// A compiled ensemble.
#[derive(Clone, PartialEq)]
pub struct Ensemble {
    walk: Walk,
    /// Root reference of each tree.
    roots: Vec<u32>,
    /// Leaf `i`'s contributions are `weights[leaf_start[i]..leaf_start[i + 1]]`.
    leaf_start: Vec<u32>,
    weights: Vec<(u32, f32)>,
    /// When every leaf has exactly one contribution, to target 0.
    scalar_leaves: Option<Vec<f32>>,
    n_targets: usize,
    n_features: usize,
    base_values: Vec<f64>,
    aggregate: Aggregate,
    post_transform: PostTransform,
    member_sets: Vec<Vec<f32>>,
    labels: Option<Labels>,
    /// Classifier with two classes whose leaves feed one class only.
    binary_case: bool,
    weights_all_positive: bool,
}

impl fmt::Debug for Ensemble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, nodes) = match &self.walk {
            Walk::Fast(n) => ("fast", n.len()),
            Walk::General(n) => ("general", n.len()),
        };
        write!(
            f,
            "Ensemble({} trees, {nodes} nodes ({kind}), {} leaves, {} targets, {:?}, {:?})",
            self.roots.len(),
            self.leaf_start.len().saturating_sub(1),
            self.n_targets,
            self.aggregate,
            self.post_transform
        )
    }
}

/// Largest f32 not above `t`.
fn f32_at_most(t: f64) -> f32 {
    let c = t as f32;
    if f64::from(c) > t {
        c.next_down()
    } else {
        c
    }
}

/// Largest f32 strictly below `t`, if there is one (none below -inf).
fn f32_below(t: f64) -> Option<f32> {
    if t == f64::NEG_INFINITY {
        return None;
    }
    let c = f32_at_most(t);
    Some(if f64::from(c) == t { c.next_down() } else { c })
}

/// The fast form of a split, if it has one: `(threshold, true child is a, nan goes to a)`.
fn normalise(mode: Mode, threshold: f64, nan_true: bool) -> Option<(f32, bool, bool)> {
    if threshold.is_nan() {
        return None;
    }
    // For a non-NaN f32 x:  x <= t  <=>  x <= at_most(t);  x < t  <=>  x <= below(t).
    match mode {
        Mode::Leq => Some((f32_at_most(threshold), true, nan_true)),
        Mode::Lt => f32_below(threshold).map(|c| (c, true, nan_true)),
        // x > t  <=>  !(x <= t): the true child is the `b` side; NaN reaches
        // the true child exactly when it does not go to `a`.
        Mode::Gt => Some((f32_at_most(threshold), false, !nan_true)),
        Mode::Gte => f32_below(threshold).map(|c| (c, false, !nan_true)),
        Mode::Eq | Mode::Neq | Mode::Member(_) => None,
    }
}

impl Ensemble {
    /// Checks and compiles `spec`. `n_features` is the input width the
    /// model will be given (features beyond it are an error at run time).
    pub fn compile(spec: &Spec) -> Result<Ensemble, TreeError> {
        if spec.roots.is_empty() {
            return Err(TreeError::Empty);
        }
        if spec.nodes.len() >= (LEAF as usize) {
            return Err(TreeError::TooLarge { max: LEAF as usize });
        }
        let n = spec.n_targets.max(1);
        if !(spec.base_values.is_empty() || spec.base_values.len() == 1 || spec.base_values.len() == n) {
            return Err(TreeError::BadBase { got: spec.base_values.len(), n });
        }
        if let Some(l) = &spec.labels {
            if l.len() != n {
                return Err(TreeError::BadLabels { got: l.len(), n });
            }
        }
        let fast = spec.nodes.iter().all(|node| match node {
            SpecNode::Branch { mode, threshold, nan_true, .. } => normalise(*mode, *threshold, *nan_true).is_some(),
            SpecNode::Leaf(_) => true,
        });

        // Flatten tree by tree, depth first, so a walk moves forward in memory.
        let mut interior: Vec<usize> = Vec::new();
        let mut leaves: Vec<usize> = Vec::new();
        let mut reference = vec![u32::MAX; spec.nodes.len()];
        let mut roots = Vec::with_capacity(spec.roots.len());
        let mut n_features = 0;
        for (tree, &root) in spec.roots.iter().enumerate() {
            if root >= spec.nodes.len() {
                return Err(TreeError::BadChild { node: root, child: root });
            }
            let mut stack = vec![root];
            while let Some(i) = stack.pop() {
                if reference[i] != u32::MAX {
                    return Err(TreeError::NotATree { tree });
                }
                match &spec.nodes[i] {
                    SpecNode::Leaf(w) => {
                        for &(target, _) in w {
                            if target >= n {
                                return Err(TreeError::BadTarget { node: i, target, n });
                            }
                        }
                        reference[i] = LEAF | leaves.len() as u32;
                        leaves.push(i);
                    }
                    SpecNode::Branch { feature, mode, if_true, if_false, .. } => {
                        for c in [*if_true, *if_false] {
                            if c >= spec.nodes.len() {
                                return Err(TreeError::BadChild { node: i, child: c });
                            }
                        }
                        if let Mode::Member(s) = mode {
                            if *s >= spec.member_sets.len() {
                                return Err(TreeError::BadSet { node: i, set: *s });
                            }
                        }
                        n_features = n_features.max(feature + 1);
                        reference[i] = interior.len() as u32;
                        interior.push(i);
                        // Pushed last is walked next: the true side follows its parent.
                        stack.push(*if_false);
                        stack.push(*if_true);
                    }
                }
            }
            roots.push(reference[root]);
        }
        if n_features > (NAN_A - 1) as usize {
            return Err(TreeError::TooLarge { max: (NAN_A - 1) as usize });
        }

        let walk = if fast {
            Walk::Fast(
                interior
                    .iter()
                    .map(|&i| match &spec.nodes[i] {
                        SpecNode::Branch { feature, mode, threshold, nan_true, if_true, if_false } => {
                            let (c, true_is_a, nan_a) = normalise(*mode, *threshold, *nan_true).unwrap_or_default();
                            let (t, f) = (reference[*if_true], reference[*if_false]);
                            let (a, b) = if true_is_a { (t, f) } else { (f, t) };
                            Node { threshold: c, feature: *feature as u32 | if nan_a { NAN_A } else { 0 }, a, b }
                        }
                        SpecNode::Leaf(_) => Node { threshold: 0.0, feature: 0, a: LEAF, b: LEAF },
                    })
                    .collect(),
            )
        } else {
            Walk::General(
                interior
                    .iter()
                    .map(|&i| match &spec.nodes[i] {
                        SpecNode::Branch { feature, mode, threshold, nan_true, if_true, if_false } => General {
                            feature: *feature as u32,
                            mode: *mode,
                            threshold: *threshold as f32,
                            nan_true: *nan_true,
                            if_true: reference[*if_true],
                            if_false: reference[*if_false],
                        },
                        SpecNode::Leaf(_) => General {
                            feature: 0,
                            mode: Mode::Leq,
                            threshold: 0.0,
                            nan_true: false,
                            if_true: LEAF,
                            if_false: LEAF,
                        },
                    })
                    .collect(),
            )
        };

        let mut leaf_start = Vec::with_capacity(leaves.len() + 1);
        let mut weights = Vec::new();
        let mut targets_seen = std::collections::BTreeSet::new();
        let mut weights_all_positive = true;
        for &i in &leaves {
            leaf_start.push(weights.len() as u32);
            if let SpecNode::Leaf(w) = &spec.nodes[i] {
                for &(t, v) in w {
                    targets_seen.insert(t);
                    weights_all_positive &= v >= 0.0;
                    weights.push((t as u32, v as f32));
                }
            }
        }
        leaf_start.push(weights.len() as u32);
        let scalar_leaves = (n == 1 || spec.labels.is_some())
            .then(|| {
                leaf_start
                    .windows(2)
                    .zip(&leaves)
                    .map(|(r, _)| {
                        let w = &weights[r[0] as usize..r[1] as usize];
                        (w.len() == 1 && w[0].0 == 0).then(|| w[0].1)
                    })
                    .collect::<Option<Vec<f32>>>()
            })
            .flatten()
            // The aggregates other than sums need to know which targets scored.
            .filter(|_| matches!(spec.aggregate, Aggregate::Sum | Aggregate::Average));
        Ok(Ensemble {
            walk,
            roots,
            leaf_start,
            weights,
            scalar_leaves,
            n_targets: n,
            n_features,
            base_values: spec.base_values.clone(),
            aggregate: spec.aggregate,
            post_transform: spec.post_transform,
            member_sets: spec.member_sets.iter().map(|s| s.iter().map(|&v| v as f32).collect()).collect(),
            binary_case: spec.labels.is_some() && n == 2 && targets_seen.len() == 1,
            weights_all_positive,
            labels: spec.labels.clone(),
        })
    }

    pub fn n_targets(&self) -> usize {
        self.n_targets
    }

    /// The smallest input width this ensemble reads.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn labels(&self) -> Option<&Labels> {
        self.labels.as_ref()
    }

    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// The leaf a row reaches in the tree starting at `root`.
    #[inline]
    fn leaf(&self, root: u32, x: &[f32]) -> usize {
        let mut r = root;
        match &self.walk {
            Walk::Fast(nodes) => {
                while r & LEAF == 0 {
                    let n = &nodes[r as usize];
                    let v = x[(n.feature & !NAN_A) as usize];
                    let go_a = v <= n.threshold || (n.feature & NAN_A != 0 && v.is_nan());
                    r = if go_a { n.a } else { n.b };
                }
            }
            Walk::General(nodes) => {
                while r & LEAF == 0 {
                    let n = &nodes[r as usize];
                    let v = x[n.feature as usize];
                    let t = n.threshold;
                    let hit = match n.mode {
                        Mode::Leq => v <= t,
                        Mode::Lt => v < t,
                        Mode::Gte => v >= t,
                        Mode::Gt => v > t,
                        Mode::Eq => v == t,
                        Mode::Neq => v != t,
                        Mode::Member(s) => self.member_sets[s].contains(&v),
                    };
                    r = if hit || (n.nan_true && v.is_nan()) { n.if_true } else { n.if_false };
                }
            }
        }
        (r & !LEAF) as usize
    }

    /// Raw aggregated scores of one row (before base values and transform)
    /// into `scores`, with which targets received anything into `has`.
    /// Sums run in f32, tree by tree, as onnxruntime's do: the data team's
    /// reference numbers are reproduced instead of being "improved" on.
    fn accumulate(&self, x: &[f32], scores: &mut [f64], has: &mut [bool]) {
        has.fill(false);
        if let Some(values) = &self.scalar_leaves {
            let mut s = 0f32;
            for &root in &self.roots {
                s += values[self.leaf(root, x)];
            }
            scores.fill(0.0);
            scores[0] = f64::from(s);
            has[0] = true;
            return;
        }
        let mut acc = [0f32; 8];
        let mut big = Vec::new();
        let acc: &mut [f32] = if scores.len() <= acc.len() {
            &mut acc[..scores.len()]
        } else {
            big.resize(scores.len(), 0f32);
            &mut big
        };
        for &root in &self.roots {
            let leaf = self.leaf(root, x);
            let range = self.leaf_start[leaf] as usize..self.leaf_start[leaf + 1] as usize;
            for &(t, w) in &self.weights[range] {
                let (t, s) = (t as usize, &mut acc[t as usize]);
                match self.aggregate {
                    Aggregate::Sum | Aggregate::Average => *s += w,
                    Aggregate::Min => *s = if has[t] { s.min(w) } else { w },
                    Aggregate::Max => *s = if has[t] { s.max(w) } else { w },
                }
                has[t] = true;
            }
        }
        for (s, a) in scores.iter_mut().zip(acc.iter()) {
            *s = f64::from(*a);
        }
    }

    /// Evaluates `rows` (row-major, `width` features each) into `out`
    /// (`n_targets` scores per row) and, for classifiers, `labels_out`
    /// (the winning class index per row).
    pub fn eval(&self, rows: &[f32], width: usize, out: &mut [f32], mut labels_out: Option<&mut [usize]>) {
        let n = self.n_targets;
        let mut scores = vec![0.0; n];
        let mut has = vec![false; n];
        if width == 0 {
            return;
        }
        for (i, x) in rows.chunks_exact(width).enumerate() {
            self.accumulate(x, &mut scores, &mut has);
            let o = &mut out[i * n..(i + 1) * n];
            let label = if self.labels.is_some() {
                self.finish_classifier(&mut scores, &has, o)
            } else {
                self.finish_regressor(&mut scores, &has, o);
                0
            };
            if let Some(l) = labels_out.as_deref_mut() {
                l[i] = label;
            }
        }
    }

    fn finish_regressor(&self, s: &mut [f64], has: &[bool], out: &mut [f32]) {
        let n_trees = self.roots.len() as f64;
        let base = |k: usize| match self.base_values.len() {
            0 => 0.0,
            1 => self.base_values[0],
            _ => self.base_values[k],
        };
        for (k, v) in s.iter_mut().enumerate() {
            let raw = match self.aggregate {
                Aggregate::Average => *v / n_trees,
                Aggregate::Sum => *v,
                Aggregate::Min | Aggregate::Max if has[k] => *v,
                Aggregate::Min | Aggregate::Max => 0.0,
            };
            *v = raw + base(k);
        }
        transform(self.post_transform, s);
        for (o, v) in out.iter_mut().zip(s.iter()) {
            *o = *v as f32;
        }
    }

    /// Class scores of one row, as onnxruntime forms them; returns the
    /// winning class index.
    ///
    /// With more than two classes: base values added, the transform over
    /// all classes, the label the highest score. With two classes whose
    /// leaves feed only one score column `s` (the usual binary export):
    /// all-positive leaf weights (random forest probabilities) give
    /// `[1 - s, s]`; otherwise `s` is a logit and LOGISTIC gives
    /// `[σ(-s), σ(s)]` (NONE gives `[-s, s]`).
    fn finish_classifier(&self, s: &mut [f64], has: &[bool], out: &mut [f32]) -> usize {
        let n = self.n_targets;
        let bv = &self.base_values;
        if self.aggregate == Aggregate::Average {
            let n_trees = self.roots.len() as f64;
            s.iter_mut().for_each(|v| *v /= n_trees);
        }
        if n != 2 {
            // onnxruntime adds base value k to class k; a class without a
            // score takes part in the vote only once it has a base value.
            for (k, v) in s.iter_mut().enumerate() {
                *v += bv.get(k).copied().unwrap_or(0.0);
            }
            let best = (0..n)
                .filter(|&k| has[k] || k < bv.len())
                .fold(None, |b: Option<usize>, k| match b {
                    Some(j) if s[j] >= s[k] => Some(j),
                    _ => Some(k),
                })
                .unwrap_or(0);
            transform(self.post_transform, s);
            for (o, v) in out.iter_mut().zip(s.iter()) {
                *o = *v as f32;
            }
            return best;
        }
        // Two classes.
        let single = match bv.len() {
            // As onnxruntime: with two base values and class-1 leaves, the
            // class-0 sum is taken as the logit and mirrored.
            2 if has[1] => {
                s[1] = bv[1] + s[0];
                s[0] = -s[1];
                false
            }
            2 => {
                s[1] += bv[1];
                s[0] += bv[0];
                false
            }
            1 => {
                s[0] += bv[0];
                !has[1]
            }
            _ => !has[1],
        };
        let positive = if has[1] && !single { s[1] } else { s[0] };
        let label =
            usize::from(if self.binary_case && self.weights_all_positive { positive > 0.5 } else { positive > 0.0 });
        if !single {
            transform(self.post_transform, s);
            out[0] = s[0] as f32;
            out[1] = s[1] as f32;
            return label;
        }
        let v = s[0];
        if self.binary_case && self.weights_all_positive {
            out[0] = (1.0 - v) as f32;
            out[1] = v as f32;
        } else if self.post_transform == PostTransform::Logistic {
            out[0] = logistic(-v) as f32;
            out[1] = logistic(v) as f32;
        } else {
            out[0] = (-v) as f32;
            out[1] = v as f32;
        }
        label
    }
}

fn logistic(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

fn transform(t: PostTransform, s: &mut [f64]) {
    match t {
        PostTransform::None => {}
        PostTransform::Logistic => s.iter_mut().for_each(|v| *v = logistic(*v)),
        PostTransform::Softmax => {
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = s
                .iter_mut()
                .map(|v| {
                    *v = (*v - max).exp();
                    *v
                })
                .sum();
            s.iter_mut().for_each(|v| *v /= sum);
        }
        PostTransform::SoftmaxZero => {
            // As onnxruntime: zero scores stay zero instead of becoming exp(0).
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut sum = 0.0;
            for v in s.iter_mut() {
                if v.abs() > 1e-7 {
                    *v = (*v - max).exp();
                    sum += *v;
                } else {
                    *v *= (-max).exp();
                }
            }
            s.iter_mut().for_each(|v| *v /= sum);
        }
    }
}
