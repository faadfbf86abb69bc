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
//! by its rules (see `Ensemble::finish_classifier`).

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

/// A normalised split: take `child[1]` when `x <= threshold`, or when `x`
/// is NaN and the `NAN_A` bit of `feature` is set; otherwise `child[0]`.
/// Leaves are nodes too, pointing at themselves, so a walk runs exactly its
/// tree's depth with no leaf test, and every step is branch-free.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Node {
    threshold: f32,
    feature: u32,
    child: [u32; 2],
}

#[derive(Debug, Clone, PartialEq)]
struct Fast {
    nodes: Vec<Node>,
    /// Leaf index of each leaf node (unused for splits).
    leaf_of: Vec<u32>,
    roots: Vec<u32>,
    /// Splits on the longest path of each tree.
    depth: Vec<u32>,
    /// Splits on the shortest path of each tree: no walk ends sooner.
    min_depth: Vec<u32>,
}

impl Fast {
    #[inline(always)]
    fn step(&self, r: u32, x: &[f32]) -> u32 {
        let n = &self.nodes[r as usize];
        let v = x[(n.feature & !NAN_A) as usize];
        let go = (v <= n.threshold) | ((n.feature & NAN_A != 0) & v.is_nan());
        n.child[usize::from(go)]
    }

    /// One row's walk: branch-free down to the shallowest leaf, then with a
    /// leaf test, so a lone row does not pay for the tree's deepest path.
    #[inline]
    fn leaf(&self, tree: usize, x: &[f32]) -> usize {
        let mut r = self.roots[tree];
        for _ in 0..self.min_depth[tree] {
            r = self.step(r, x);
        }
        while self.leaf_of[r as usize] == u32::MAX {
            r = self.step(r, x);
        }
        self.leaf_of[r as usize] as usize
    }
}

/// Rows walked through a tree together: independent walks overlap in the
/// processor instead of each waiting on its own chain of loads.
const BLOCK: usize = 8;

/// A split the fast form cannot express, for the general loop.
#[derive(Debug, Clone, PartialEq)]
struct General {
    feature: u32,
    mode: Mode,
    /// Compared in f64: exact for f32 inputs, and the same as onnxruntime
    /// for float thresholds (exact in f64) and for double ones.
    threshold: f64,
    nan_true: bool,
    if_true: u32,
    if_false: u32,
}

#[derive(Debug, Clone, PartialEq)]
enum Walk {
    Fast(Fast),
    General(Vec<General>),
}

/// A compiled ensemble.
#[derive(Clone, PartialEq)]
pub struct Ensemble {
    walk: Walk,
    /// Root reference of each tree (for the general walk: leaves carry the `LEAF` bit).
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
            Walk::Fast(f) => ("fast", f.nodes.len()),
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
        let mut depths = Vec::with_capacity(spec.roots.len());
        let mut min_depths = Vec::with_capacity(spec.roots.len());
        for (tree, &root) in spec.roots.iter().enumerate() {
            if root >= spec.nodes.len() {
                return Err(TreeError::BadChild { node: root, child: root });
            }
            let (mut depth, mut min_depth) = (0u32, u32::MAX);
            let mut stack = vec![(root, 0u32)];
            while let Some((i, d)) = stack.pop() {
                depth = depth.max(d);
                if matches!(spec.nodes[i], SpecNode::Leaf(_)) {
                    min_depth = min_depth.min(d);
                }
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
                        stack.push((*if_false, d + 1));
                        stack.push((*if_true, d + 1));
                    }
                }
            }
            roots.push(reference[root]);
            depths.push(depth);
            min_depths.push(min_depth.min(depth));
        }
        if n_features > (NAN_A - 1) as usize {
            return Err(TreeError::TooLarge { max: (NAN_A - 1) as usize });
        }

        let walk = if fast {
            // Leaf k becomes node interior.len() + k.
            let fast_ref = |r: u32| if r & LEAF != 0 { interior.len() as u32 + (r & !LEAF) } else { r };
            let mut nodes: Vec<Node> = interior
                .iter()
                .map(|&i| match &spec.nodes[i] {
                    SpecNode::Branch { feature, mode, threshold, nan_true, if_true, if_false } => {
                        let (c, true_is_a, nan_a) = normalise(*mode, *threshold, *nan_true).unwrap_or_default();
                        let (t, f) = (fast_ref(reference[*if_true]), fast_ref(reference[*if_false]));
                        let child = if true_is_a { [f, t] } else { [t, f] };
                        Node { threshold: c, feature: *feature as u32 | if nan_a { NAN_A } else { 0 }, child }
                    }
                    SpecNode::Leaf(_) => Node { threshold: 0.0, feature: 0, child: [0, 0] },
                })
                .collect();
            let mut leaf_of = vec![u32::MAX; interior.len()];
            for k in 0..leaves.len() {
                let me = (interior.len() + k) as u32;
                nodes.push(Node { threshold: f32::INFINITY, feature: 0, child: [me, me] });
                leaf_of.push(k as u32);
            }
            Walk::Fast(Fast {
                nodes,
                leaf_of,
                roots: roots.iter().map(|&r| fast_ref(r)).collect(),
                depth: depths,
                min_depth: min_depths,
            })
        } else {
            Walk::General(
                interior
                    .iter()
                    .map(|&i| match &spec.nodes[i] {
                        SpecNode::Branch { feature, mode, threshold, nan_true, if_true, if_false } => General {
                            feature: *feature as u32,
                            mode: *mode,
                            threshold: *threshold,
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
                    .map(|r| {
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

    /// The leaf a row reaches in tree `tree`.
    #[inline]
    fn leaf(&self, tree: usize, x: &[f32]) -> usize {
        let mut r = self.roots[tree];
        match &self.walk {
            Walk::Fast(f) => return f.leaf(tree, x),
            Walk::General(nodes) => {
                while r & LEAF == 0 {
                    let n = &nodes[r as usize];
                    let v = x[n.feature as usize];
                    let (w, t) = (f64::from(v), n.threshold);
                    let hit = match n.mode {
                        Mode::Leq => w <= t,
                        Mode::Lt => w < t,
                        Mode::Gte => w >= t,
                        Mode::Gt => w > t,
                        Mode::Eq => w == t,
                        Mode::Neq => w != t,
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
            for tree in 0..self.roots.len() {
                s += values[self.leaf(tree, x)];
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
        for tree in 0..self.roots.len() {
            let leaf = self.leaf(tree, x);
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
        let mut finish = |i: usize, scores: &mut [f64], has: &[bool]| {
            let o = &mut out[i * n..(i + 1) * n];
            let label = if self.labels.is_some() {
                self.finish_classifier(scores, has, o)
            } else {
                self.finish_regressor(scores, has, o);
                0
            };
            if let Some(l) = labels_out.as_deref_mut() {
                l[i] = label;
            }
        };
        let n_rows = rows.len() / width;
        if let (Walk::Fast(fast), Some(values), true) = (&self.walk, &self.scalar_leaves, n_rows > 1) {
            // The common case (binary classifiers, single regressors): rows in
            // blocks, each tree walked for the whole block at once.
            let rows: Vec<&[f32]> = rows.chunks_exact(width).collect();
            for (b, block) in rows.chunks(BLOCK).enumerate() {
                let mut acc = [0f32; BLOCK];
                for tree in 0..fast.roots.len() {
                    let mut r = [fast.roots[tree]; BLOCK];
                    for _ in 0..fast.depth[tree] {
                        for (rj, x) in r.iter_mut().zip(block) {
                            *rj = fast.step(*rj, x);
                        }
                    }
                    for (a, rj) in acc.iter_mut().zip(&r[..block.len()]) {
                        *a += values[fast.leaf_of[*rj as usize] as usize];
                    }
                }
                for (j, a) in acc[..block.len()].iter().enumerate() {
                    scores.fill(0.0);
                    has.fill(false);
                    scores[0] = f64::from(*a);
                    has[0] = true;
                    finish(b * BLOCK + j, &mut scores, &has);
                }
            }
            return;
        }
        for (i, x) in rows.chunks_exact(width).enumerate() {
            self.accumulate(x, &mut scores, &mut has);
            finish(i, &mut scores, &has);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaf(w: f64) -> SpecNode {
        SpecNode::Leaf(vec![(0, w)])
    }

    fn branch(feature: usize, mode: Mode, threshold: f64, nan_true: bool, if_true: usize, if_false: usize) -> SpecNode {
        SpecNode::Branch { feature, mode, threshold, nan_true, if_true, if_false }
    }

    fn regressor(nodes: Vec<SpecNode>, roots: Vec<usize>) -> Spec {
        Spec {
            nodes,
            roots,
            n_targets: 1,
            base_values: vec![],
            aggregate: Aggregate::Sum,
            post_transform: PostTransform::None,
            member_sets: vec![vec![1.0, 3.0]],
            labels: None,
        }
    }

    fn eval1(spec: &Spec, x: &[f32]) -> f32 {
        let e = Ensemble::compile(spec).unwrap();
        let mut out = vec![0f32; e.n_targets()];
        e.eval(x, x.len(), &mut out, None);
        out[0]
    }

    /// onnxruntime's rule, written out plainly: compare in f64 (exact for
    /// f32 inputs), NaN to the true side only when tracked.
    fn reference(spec: &Spec, x: &[f32]) -> f64 {
        let mut total = 0.0;
        for &root in &spec.roots {
            let mut i = root;
            loop {
                match &spec.nodes[i] {
                    SpecNode::Leaf(w) => {
                        total += w.iter().map(|p| p.1).sum::<f64>();
                        break;
                    }
                    SpecNode::Branch { feature, mode, threshold, nan_true, if_true, if_false } => {
                        let (v, t) = (f64::from(x[*feature]), *threshold);
                        let hit = match mode {
                            Mode::Leq => v <= t,
                            Mode::Lt => v < t,
                            Mode::Gte => v >= t,
                            Mode::Gt => v > t,
                            Mode::Eq => v == t,
                            Mode::Neq => v != t,
                            Mode::Member(s) => spec.member_sets[*s].iter().any(|m| *m as f32 as f64 == v),
                        };
                        i = if hit || (*nan_true && v.is_nan()) { *if_true } else { *if_false };
                    }
                }
            }
        }
        total
    }

    #[test]
    fn every_mode_on_its_boundary() {
        let x = |v: f32| [v];
        for (mode, t, below, at, above) in [
            (Mode::Leq, 1.0, 10.0, 10.0, 20.0),
            (Mode::Lt, 1.0, 10.0, 20.0, 20.0),
            (Mode::Gte, 1.0, 20.0, 10.0, 10.0),
            (Mode::Gt, 1.0, 20.0, 20.0, 10.0),
            (Mode::Eq, 1.0, 20.0, 10.0, 20.0),
            (Mode::Neq, 1.0, 10.0, 20.0, 10.0),
        ] {
            let spec = regressor(vec![branch(0, mode, t, false, 1, 2), leaf(10.0), leaf(20.0)], vec![0]);
            assert_eq!(eval1(&spec, &x(0.5)), below, "{mode:?} below");
            assert_eq!(eval1(&spec, &x(1.0)), at, "{mode:?} at");
            assert_eq!(eval1(&spec, &x(1.5)), above, "{mode:?} above");
        }
        let member = regressor(vec![branch(0, Mode::Member(0), 0.0, false, 1, 2), leaf(10.0), leaf(20.0)], vec![0]);
        assert_eq!((eval1(&member, &x(3.0)), eval1(&member, &x(2.0))), (10.0, 20.0));
    }

    #[test]
    fn missing_values_follow_their_flag_in_every_mode() {
        for mode in [Mode::Leq, Mode::Lt, Mode::Gte, Mode::Gt, Mode::Eq] {
            for nan_true in [false, true] {
                let spec = regressor(vec![branch(0, mode, 1.0, nan_true, 1, 2), leaf(10.0), leaf(20.0)], vec![0]);
                assert_eq!(eval1(&spec, &[f32::NAN]), if nan_true { 10.0 } else { 20.0 }, "{mode:?} {nan_true}");
            }
        }
        // NaN != t is true whatever the flag says.
        let spec = regressor(vec![branch(0, Mode::Neq, 1.0, false, 1, 2), leaf(10.0), leaf(20.0)], vec![0]);
        assert_eq!(eval1(&spec, &[f32::NAN]), 10.0);
    }

    #[test]
    fn double_thresholds_compare_as_doubles() {
        // 0.1 is not an f32: 0.1f32 > 0.1f64, so x = 0.1f32 is above the split.
        let spec = regressor(vec![branch(0, Mode::Leq, 0.1, false, 1, 2), leaf(10.0), leaf(20.0)], vec![0]);
        assert_eq!(eval1(&spec, &[0.1f32]), 20.0);
        let spec = regressor(vec![branch(0, Mode::Lt, f64::INFINITY, false, 1, 2), leaf(10.0), leaf(20.0)], vec![0]);
        assert_eq!((eval1(&spec, &[f32::MAX]), eval1(&spec, &[f32::INFINITY])), (10.0, 20.0));
        let spec =
            regressor(vec![branch(0, Mode::Gte, f64::NEG_INFINITY, false, 1, 2), leaf(10.0), leaf(20.0)], vec![0]);
        assert_eq!((eval1(&spec, &[f32::NEG_INFINITY]), eval1(&spec, &[f32::NAN])), (10.0, 20.0));
    }

    #[test]
    fn binary_classifiers_form_their_columns_as_onnxruntime() {
        let labels = Some(Labels::Int(vec![0, 1]));
        // Random forest: positive leaf weights voting for one column.
        let rf = Spec {
            labels: labels.clone(),
            n_targets: 2,
            ..regressor(vec![branch(0, Mode::Leq, 0.0, false, 1, 2), leaf(0.25), leaf(0.75)], vec![0])
        };
        let e = Ensemble::compile(&rf).unwrap();
        let mut out = [0f32; 4];
        let mut labels_out = [9usize; 2];
        e.eval(&[-1.0, 1.0], 1, &mut out, Some(&mut labels_out));
        assert_eq!(out, [0.75, 0.25, 0.25, 0.75]);
        assert_eq!(labels_out, [0, 1]);
        // Boosting: a logit with a base value, logistic transform.
        let gb = Spec {
            base_values: vec![0.5],
            post_transform: PostTransform::Logistic,
            ..Spec {
                n_targets: 2,
                labels,
                ..regressor(vec![branch(0, Mode::Leq, 0.0, false, 1, 2), leaf(-2.0), leaf(1.0)], vec![0])
            }
        };
        let e = Ensemble::compile(&gb).unwrap();
        e.eval(&[-1.0, 1.0], 1, &mut out, Some(&mut labels_out));
        let p = |v: f64| (1.0 / (1.0 + (-v).exp())) as f32;
        assert_eq!(out, [p(1.5), p(-1.5), p(-1.5), p(1.5)]);
        assert_eq!(labels_out, [0, 1], "labels follow the probabilities, not inverted");
    }

    #[test]
    fn malformed_ensembles_are_refused() {
        let bad = |nodes, roots| Ensemble::compile(&regressor(nodes, roots)).unwrap_err();
        assert_eq!(bad(vec![], vec![]), TreeError::Empty);
        assert_eq!(
            bad(vec![branch(0, Mode::Leq, 0.0, false, 1, 7), leaf(1.0)], vec![0]),
            TreeError::BadChild { node: 0, child: 7 }
        );
        assert_eq!(
            bad(vec![branch(0, Mode::Leq, 0.0, false, 0, 1), leaf(1.0)], vec![0]),
            TreeError::NotATree { tree: 0 }
        );
        assert_eq!(
            bad(vec![branch(0, Mode::Member(5), 0.0, false, 1, 2), leaf(1.0), leaf(2.0)], vec![0]),
            TreeError::BadSet { node: 0, set: 5 }
        );
        assert_eq!(
            bad(vec![SpecNode::Leaf(vec![(3, 1.0)])], vec![0]),
            TreeError::BadTarget { node: 0, target: 3, n: 1 }
        );
        let spec = Spec { base_values: vec![1.0, 2.0], ..regressor(vec![leaf(1.0)], vec![0]) };
        assert_eq!(Ensemble::compile(&spec).unwrap_err(), TreeError::BadBase { got: 2, n: 1 });
    }

    /// A random tree over `features` inputs, as nodes appended to `nodes`.
    fn random_tree(nodes: &mut Vec<SpecNode>, rng: &mut u64, depth: u32, features: usize) -> usize {
        let mut next = || {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng
        };
        const GRID: [f64; 9] = [-2.0, -1.0, -0.5, 0.0, 0.1, 0.5, 1.0, 2.0, f64::INFINITY];
        if depth == 0 || next() % 5 == 0 {
            nodes.push(leaf((next() % 17) as f64 - 8.0));
            return nodes.len() - 1;
        }
        let mode = match next() % 8 {
            0 | 1 => Mode::Leq,
            2 => Mode::Lt,
            3 => Mode::Gte,
            4 => Mode::Gt,
            5 => Mode::Eq,
            6 => Mode::Neq,
            _ => Mode::Member(0),
        };
        let (feature, threshold, nan_true) =
            ((next() as usize) % features, GRID[(next() % 9) as usize], next() % 2 == 0);
        let i = nodes.len();
        nodes.push(leaf(0.0));
        let t = random_tree(nodes, rng, depth - 1, features);
        let f = random_tree(nodes, rng, depth - 1, features);
        nodes[i] = branch(feature, mode, threshold, nan_true, t, f);
        i
    }

    proptest! {
        #[test]
        fn compiled_walk_equals_the_plain_rule(
            seed in any::<u64>(),
            trees in 1usize..6,
            fast_only in any::<bool>(),
            rows in prop::collection::vec(prop::collection::vec(
                prop_oneof![Just(f32::NAN), Just(0.1f32), Just(-0.0f32), Just(f32::INFINITY), Just(f32::NEG_INFINITY),
                            (-5i32..=5).prop_map(|v| v as f32 / 2.0)], 4), 1..20),
        ) {
            let mut rng = seed | 1;
            let mut nodes = Vec::new();
            let roots: Vec<usize> = (0..trees).map(|_| random_tree(&mut nodes, &mut rng, 5, 4)).collect();
            if fast_only {
                // Only splits the fast walk takes, to exercise it rather than the general one.
                for n in &mut nodes {
                    if let SpecNode::Branch { mode, .. } = n {
                        if matches!(mode, Mode::Eq | Mode::Neq | Mode::Member(_)) {
                            *mode = Mode::Gte;
                        }
                    }
                }
            }
            let spec = regressor(nodes, roots);
            let e = Ensemble::compile(&spec).unwrap();
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            let mut out = vec![0f32; rows.len()];
            e.eval(&flat, 4, &mut out, None);
            for (row, got) in rows.iter().zip(&out) {
                // Small integer leaves: the f32 sums are exact.
                prop_assert_eq!(f64::from(*got), reference(&spec, row), "row {:?} {:?}", row, e);
            }
        }
    }
}
