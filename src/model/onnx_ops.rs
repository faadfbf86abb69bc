//! faultline's own implementations of the ONNX-ML operators that stock
//! tract lacks or gets wrong, registered with tract's ONNX op register:
//! `TreeEnsembleClassifier`, `TreeEnsembleRegressor`, `TreeEnsemble` (v5),
//! `Scaler` and `ZipMap`.
//!
//! `ZipMap` turns class probabilities into a sequence of maps, a type tract
//! has no tensors for; faultline only ever reads the probabilities, so here
//! it passes its input through and the package's output is that tensor.

use std::sync::Arc;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::tract_core;

use super::trees::{Aggregate, Ensemble, Labels, Mode, PostTransform, Spec, SpecNode};

/// Registers every operator of this module, replacing tract's own.
pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("TreeEnsembleClassifier", tree_classifier);
    reg.insert("TreeEnsembleRegressor", tree_regressor);
    reg.insert("TreeEnsemble", tree_ensemble_v5);
    reg.insert("Scaler", scaler);
    reg.insert("ZipMap", zipmap);
}

/// Typed access to a node's attributes, with errors that name the node.
struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn err(&self, attr: &str, msg: impl std::fmt::Display) -> TractError {
        format_err!("node {:?} ({}): attribute {attr}: {msg}", self.node.name, self.node.op_type)
    }

    fn ints(&self, name: &str) -> Option<&'a [i64]> {
        self.get(name).map(|a| a.ints.as_slice()).filter(|v| !v.is_empty())
    }

    fn int(&self, name: &str) -> Option<i64> {
        self.get(name).map(|a| a.i)
    }

    fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    fn strings(&self, name: &str) -> Option<Vec<String>> {
        self.get(name)
            .map(|a| a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
    }

    fn tensor(&self, name: &str) -> TractResult<Option<Vec<f64>>> {
        let Some(t) = self.get(name).and_then(|a| a.t.as_ref()) else { return Ok(None) };
        tensor_values(t).map(Some).map_err(|e| self.err(name, e))
    }

    /// A float list given as `name` (floats) or `name_as_tensor` (a tensor, maybe double).
    fn floats(&self, name: &str) -> TractResult<Option<Vec<f64>>> {
        if let Some(v) = self.tensor(&format!("{name}_as_tensor"))? {
            return Ok(Some(v));
        }
        Ok(self.get(name).map(|a| a.floats.iter().map(|&f| f64::from(f)).collect::<Vec<_>>()).filter(|v| !v.is_empty()))
    }

    fn required<T>(&self, name: &str, v: Option<T>) -> TractResult<T> {
        v.ok_or_else(|| self.err(name, "missing"))
    }

    fn check_len(&self, name: &str, len: usize, want: usize) -> TractResult<()> {
        if len == want {
            Ok(())
        } else {
            Err(self.err(name, format!("{len} entries, expected {want}")))
        }
    }

    fn index(&self, name: &str, v: i64) -> TractResult<usize> {
        usize::try_from(v).map_err(|_| self.err(name, format!("negative index {v}")))
    }
}

/// The numbers in a tensor attribute (float, double or an integer type).
fn tensor_values(t: &TensorProto) -> Result<Vec<f64>, String> {
    use tract_onnx::pb::tensor_proto::DataType;
    let raw = &t.raw_data;
    let dt = DataType::try_from(t.data_type).map_err(|_| format!("unknown tensor type {}", t.data_type))?;
    let from_raw = |size: usize, f: &dyn Fn(&[u8]) -> f64| -> Vec<f64> { raw.chunks_exact(size).map(f).collect() };
    Ok(match dt {
        DataType::Float if raw.is_empty() => t.float_data.iter().map(|&v| f64::from(v)).collect(),
        DataType::Float => from_raw(4, &|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        DataType::Double if raw.is_empty() => t.double_data.clone(),
        DataType::Double => from_raw(8, &|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
        DataType::Uint8 if raw.is_empty() => t.int32_data.iter().map(|&v| f64::from(v)).collect(),
        DataType::Uint8 => raw.iter().map(|&b| f64::from(b)).collect(),
        DataType::Int32 if raw.is_empty() => t.int32_data.iter().map(|&v| f64::from(v)).collect(),
        DataType::Int64 if raw.is_empty() => t.int64_data.iter().map(|&v| v as f64).collect(),
        other => return Err(format!("tensors of type {other:?} are not supported here")),
    })
}

fn post_transform(a: &Attrs, name: &str, v: &str) -> TractResult<PostTransform> {
    Ok(match v {
        "NONE" | "0" => PostTransform::None,
        "LOGISTIC" | "2" => PostTransform::Logistic,
        "SOFTMAX" | "1" => PostTransform::Softmax,
        "SOFTMAX_ZERO" | "3" => PostTransform::SoftmaxZero,
        "PROBIT" | "4" => return Err(a.err(name, "PROBIT is not supported by faultline")),
        other => return Err(a.err(name, format!("unknown value {other:?}"))),
    })
}

fn aggregate(a: &Attrs, name: &str, v: &str) -> TractResult<Aggregate> {
    Ok(match v {
        "SUM" | "1" => Aggregate::Sum,
        "AVERAGE" | "0" => Aggregate::Average,
        "MIN" | "2" => Aggregate::Min,
        "MAX" | "3" => Aggregate::Max,
        other => return Err(a.err(name, format!("unknown value {other:?}"))),
    })
}

/// The v1/v3 layout: nodes as parallel lists keyed by (tree id, node id),
/// leaf votes as parallel lists keyed the same way.
fn spec_v3(node: &NodeProto, classifier: bool) -> TractResult<Spec> {
    let a = Attrs { node };
    let tree_ids = a.required("nodes_treeids", a.ints("nodes_treeids"))?;
    let n = tree_ids.len();
    let node_ids = a.required("nodes_nodeids", a.ints("nodes_nodeids"))?;
    let features = a.required("nodes_featureids", a.ints("nodes_featureids"))?;
    let modes = a.required("nodes_modes", a.strings("nodes_modes"))?;
    let values = a.required("nodes_values", a.floats("nodes_values")?)?;
    let trues = a.required("nodes_truenodeids", a.ints("nodes_truenodeids"))?;
    let falses = a.required("nodes_falsenodeids", a.ints("nodes_falsenodeids"))?;
    let missing = a.ints("nodes_missing_value_tracks_true");
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_modes", modes.len()),
        ("nodes_values", values.len()),
        ("nodes_truenodeids", trues.len()),
        ("nodes_falsenodeids", falses.len()),
    ] {
        a.check_len(name, len, n)?;
    }
    if let Some(m) = missing {
        a.check_len("nodes_missing_value_tracks_true", m.len(), n)?;
    }

    let mut index = std::collections::HashMap::with_capacity(n);
    for i in 0..n {
        if index.insert((tree_ids[i], node_ids[i]), i).is_some() {
            return Err(a.err("nodes_nodeids", format!("tree {} has node {} twice", tree_ids[i], node_ids[i])));
        }
    }
    let child = |tree: i64, id: i64, attr: &str| -> TractResult<usize> {
        index.get(&(tree, id)).copied().ok_or_else(|| a.err(attr, format!("tree {tree} has no node {id}")))
    };
    let mut nodes = Vec::with_capacity(n);
    let mut is_child = vec![false; n];
    for i in 0..n {
        let mode = match modes[i].as_str() {
            "LEAF" => {
                nodes.push(SpecNode::Leaf(Vec::new()));
                continue;
            }
            "BRANCH_LEQ" => Mode::Leq,
            "BRANCH_LT" => Mode::Lt,
            "BRANCH_GTE" => Mode::Gte,
            "BRANCH_GT" => Mode::Gt,
            "BRANCH_EQ" => Mode::Eq,
            "BRANCH_NEQ" => Mode::Neq,
            other => return Err(a.err("nodes_modes", format!("unknown mode {other:?}"))),
        };
        let (t, f) =
            (child(tree_ids[i], trues[i], "nodes_truenodeids")?, child(tree_ids[i], falses[i], "nodes_falsenodeids")?);
        is_child[t] = true;
        is_child[f] = true;
        nodes.push(SpecNode::Branch {
            feature: a.index("nodes_featureids", features[i])?,
            mode,
            threshold: values[i],
            nan_true: missing.is_some_and(|m| m[i] != 0),
            if_true: t,
            if_false: f,
        });
    }

    let prefix = if classifier { "class" } else { "target" };
    let attr = |s: &str| format!("{prefix}_{s}");
    let l_trees = a.required(&attr("treeids"), a.ints(&attr("treeids")))?;
    let l_nodes = a.required(&attr("nodeids"), a.ints(&attr("nodeids")))?;
    let l_ids = a.required(&attr("ids"), a.ints(&attr("ids")))?;
    let l_weights = a.required(&attr("weights"), a.floats(&attr("weights"))?)?;
    for (name, len) in
        [(attr("nodeids"), l_nodes.len()), (attr("ids"), l_ids.len()), (attr("weights"), l_weights.len())]
    {
        a.check_len(&name, len, l_trees.len())?;
    }
    for k in 0..l_trees.len() {
        let i = child(l_trees[k], l_nodes[k], &attr("nodeids"))?;
        let target = a.index(&attr("ids"), l_ids[k])?;
        match &mut nodes[i] {
            SpecNode::Leaf(w) => w.push((target, l_weights[k])),
            SpecNode::Branch { .. } => {
                return Err(a.err(&attr("nodeids"), format!("tree {} node {} is not a leaf", l_trees[k], l_nodes[k])))
            }
        }
    }

    // A tree's root is its one node nobody points to, in tree id order.
    let mut roots: Vec<(i64, usize)> = (0..n).filter(|&i| !is_child[i]).map(|i| (tree_ids[i], i)).collect();
    roots.sort_unstable();
    if roots.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(a.err("nodes_truenodeids", "a tree has more than one root"));
    }

    let labels = if classifier {
        Some(match (a.ints("classlabels_int64s"), a.strings("classlabels_strings")) {
            (Some(v), None) => Labels::Int(v.to_vec()),
            (None, Some(v)) => Labels::Str(v),
            _ => return Err(a.err("classlabels_int64s", "exactly one of classlabels_int64s and classlabels_strings")),
        })
    } else {
        None
    };
    let n_targets = match &labels {
        Some(l) => l.len(),
        None => a.int("n_targets").and_then(|v| usize::try_from(v).ok()).unwrap_or(1),
    };
    let pt = a.string("post_transform").unwrap_or_else(|| "NONE".into());
    let agg = if classifier { "SUM".into() } else { a.string("aggregate_function").unwrap_or_else(|| "SUM".into()) };
    Ok(Spec {
        nodes,
        roots: roots.into_iter().map(|r| r.1).collect(),
        n_targets,
        base_values: a.floats("base_values")?.unwrap_or_default(),
        aggregate: aggregate(&a, "aggregate_function", &agg)?,
        post_transform: post_transform(&a, "post_transform", &pt)?,
        member_sets: Vec::new(),
        labels,
    })
}

/// The v5 layout: interior nodes and leaves in separate lists, children as
/// (index, is-leaf) pairs, trees by their root index.
fn spec_v5(node: &NodeProto) -> TractResult<Spec> {
    let a = Attrs { node };
    let features = a.required("nodes_featureids", a.ints("nodes_featureids"))?;
    let n = features.len();
    let t_ids = a.required("nodes_truenodeids", a.ints("nodes_truenodeids"))?;
    let t_leaf = a.required("nodes_trueleafs", a.ints("nodes_trueleafs"))?;
    let f_ids = a.required("nodes_falsenodeids", a.ints("nodes_falsenodeids"))?;
    let f_leaf = a.required("nodes_falseleafs", a.ints("nodes_falseleafs"))?;
    let modes = a.required("nodes_modes", a.tensor("nodes_modes")?)?;
    let splits = a.tensor("nodes_splits")?.unwrap_or_else(|| vec![0.0; n]);
    let missing = a.ints("nodes_missing_value_tracks_true");
    let leaf_targets = a.required("leaf_targetids", a.ints("leaf_targetids"))?;
    let leaf_weights = a.required("leaf_weights", a.tensor("leaf_weights")?)?;
    for (name, len) in [
        ("nodes_truenodeids", t_ids.len()),
        ("nodes_trueleafs", t_leaf.len()),
        ("nodes_falsenodeids", f_ids.len()),
        ("nodes_falseleafs", f_leaf.len()),
        ("nodes_modes", modes.len()),
        ("nodes_splits", splits.len()),
    ] {
        a.check_len(name, len, n)?;
    }
    a.check_len("leaf_weights", leaf_weights.len(), leaf_targets.len())?;
    if let Some(m) = missing {
        a.check_len("nodes_missing_value_tracks_true", m.len(), n)?;
    }
    // Set-membership nodes take the NaN-separated runs of membership_values in order.
    let member_sets: Vec<Vec<f64>> = a
        .tensor("membership_values")?
        .map(|v| v.split(|x| x.is_nan()).map(<[f64]>::to_vec).collect())
        .unwrap_or_default();
    let mut next_set = 0;
    let mut nodes = Vec::with_capacity(n + leaf_targets.len());
    let reference = |id: i64, leaf: i64, attr: &str| -> TractResult<usize> {
        let i = a.index(attr, id)?;
        Ok(if leaf != 0 { n + i } else { i })
    };
    for i in 0..n {
        let mode = match modes[i] as u8 {
            0 => Mode::Leq,
            1 => Mode::Lt,
            2 => Mode::Gte,
            3 => Mode::Gt,
            4 => Mode::Eq,
            5 => Mode::Neq,
            6 => {
                next_set += 1;
                Mode::Member(next_set - 1)
            }
            other => return Err(a.err("nodes_modes", format!("unknown mode {other}"))),
        };
        nodes.push(SpecNode::Branch {
            feature: a.index("nodes_featureids", features[i])?,
            mode,
            threshold: splits[i],
            nan_true: missing.is_some_and(|m| m[i] != 0),
            if_true: reference(t_ids[i], t_leaf[i], "nodes_truenodeids")?,
            if_false: reference(f_ids[i], f_leaf[i], "nodes_falsenodeids")?,
        });
    }
    for (t, w) in leaf_targets.iter().zip(&leaf_weights) {
        nodes.push(SpecNode::Leaf(vec![(a.index("leaf_targetids", *t)?, *w)]));
    }
    let roots = a
        .required("tree_roots", a.ints("tree_roots"))?
        .iter()
        .map(|&r| a.index("tree_roots", r))
        .collect::<TractResult<Vec<_>>>()?;
    let n_targets = a.int("n_targets").and_then(|v| usize::try_from(v).ok()).filter(|&v| v > 0);
    let pt = a.int("post_transform").unwrap_or(0).to_string();
    let agg = a.int("aggregate_function").unwrap_or(1).to_string();
    Ok(Spec {
        nodes,
        roots,
        n_targets: a.required("n_targets", n_targets)?,
        base_values: Vec::new(),
        aggregate: aggregate(&a, "aggregate_function", &agg)?,
        post_transform: post_transform(&a, "post_transform", &pt)?,
        member_sets,
        labels: None,
    })
}

fn compile(node: &NodeProto, spec: &Spec) -> TractResult<Arc<Ensemble>> {
    Ensemble::compile(spec).map(Arc::new).map_err(|e| format_err!("node {:?} ({}): {e}", node.name, node.op_type))
}

fn tree_classifier(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ensemble = compile(node, &spec_v3(node, true)?)?;
    Ok((expand(TreeExpansion { ensemble }), vec![]))
}

fn tree_regressor(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ensemble = compile(node, &spec_v3(node, false)?)?;
    Ok((expand(TreeExpansion { ensemble }), vec![]))
}

fn tree_ensemble_v5(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ensemble = compile(node, &spec_v5(node)?)?;
    Ok((expand(TreeExpansion { ensemble }), vec![]))
}

/// Inference-time face of a tree ensemble: classifiers have a label and a
/// score output, regressors one value output.
#[derive(Debug, Clone)]
struct TreeExpansion {
    ensemble: Arc<Ensemble>,
}

fn label_type(e: &Ensemble) -> Option<DatumType> {
    e.labels().map(|l| match l {
        Labels::Int(_) => i64::datum_type(),
        Labels::Str(_) => String::datum_type(),
    })
}

impl Expansion for TreeExpansion {
    fn name(&self) -> StaticName {
        "FaultlineTreeEnsemble".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(if self.ensemble.labels().is_some() { 2 } else { 1 })
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        let scores = match label_type(&self.ensemble) {
            Some(dt) => {
                check_output_arity(outputs, 2)?;
                s.equals(&outputs[0].datum_type, dt)?;
                s.equals(&outputs[0].rank, 1)?;
                s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
                &outputs[1]
            }
            None => {
                check_output_arity(outputs, 1)?;
                &outputs[0]
            }
        };
        s.equals(&scores.datum_type, f32::datum_type())?;
        s.equals(&scores.rank, 2)?;
        s.equals(&scores.shape[0], &inputs[0].shape[0])?;
        s.equals(&scores.shape[1], self.ensemble.n_targets().to_dim())?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, TreeOp { ensemble: self.ensemble.clone() }, inputs)
    }
}

/// The typed operator that runs a compiled ensemble.
#[derive(Debug, Clone)]
pub struct TreeOp {
    ensemble: Arc<Ensemble>,
}

impl PartialEq for TreeOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ensemble, &other.ensemble)
    }
}

impl Eq for TreeOp {}

impl Op for TreeOp {
    fn name(&self) -> StaticName {
        "FaultlineTreeEnsemble".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.ensemble)])
    }

    op_as_typed_op!();
}

impl EvalOp for TreeOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = input.cast_to::<f32>()?;
        let shape = input.shape();
        let (rows, width) = match shape {
            [w] => (1, *w),
            [r, w] => (*r, *w),
            _ => bail!("tree ensemble input must be [batch, features], got {shape:?}"),
        };
        let e = &self.ensemble;
        if width < e.n_features() {
            bail!("tree ensemble reads feature {} but the input has {width} features", e.n_features() - 1);
        }
        let plain = input.try_as_plain_ram()?;
        let x = plain.as_slice::<f32>()?;
        let k = e.n_targets();
        let mut scores = vec![0f32; rows * k];
        let mut winners = vec![0usize; rows];
        e.eval(x, width, &mut scores, e.labels().is_some().then_some(&mut winners[..]));
        let scores = Tensor::from_shape(&[rows, k], &scores)?.into_tvalue();
        Ok(match e.labels() {
            None => tvec!(scores),
            Some(Labels::Int(l)) => {
                let v: Vec<i64> = winners.iter().map(|&w| l.get(w).copied().unwrap_or_default()).collect();
                tvec!(Tensor::from_shape(&[rows], &v)?.into_tvalue(), scores)
            }
            Some(Labels::Str(l)) => {
                let v: Vec<String> = winners.iter().map(|&w| l.get(w).cloned().unwrap_or_default()).collect();
                tvec!(tract_ndarray::Array1::from(v).into_tensor().into_tvalue(), scores)
            }
        })
    }
}

impl TypedOp for TreeOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = inputs[0].shape.first().cloned().unwrap_or_else(|| 1.to_dim());
        let scores = f32::fact([n.clone(), self.ensemble.n_targets().to_dim()]);
        Ok(match label_type(&self.ensemble) {
            Some(dt) => tvec!(dt.fact([n]), scores),
            None => tvec!(scores),
        })
    }

    as_op!();
}

/// One input, one output of the same shape.
fn same_shape<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
) -> InferenceResult {
    check_input_arity(inputs, 1)?;
    check_output_arity(outputs, 1)?;
    s.equals(&outputs[0].shape, &inputs[0].shape)?;
    Ok(())
}

/// `Scaler`: `(x - offset) * scale`, per column or for all.
#[derive(Debug, Clone)]
struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

fn scaler(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let a = Attrs { node };
    let f = |name: &str| -> TractResult<Vec<f32>> {
        Ok(a.floats(name)?.map(|v| v.into_iter().map(|x| x as f32).collect()).unwrap_or_default())
    };
    let (offset, scale) = (f("offset")?, f("scale")?);
    Ok((expand(Scaler { offset, scale }), vec![]))
}

impl Expansion for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        same_shape(s, inputs, outputs)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        let rank = fact.rank();
        let mut x = inputs[0];
        if fact.datum_type != f32::datum_type() {
            x = model.wire_node(format!("{prefix}.cast"), tract_core::ops::cast::cast(f32::datum_type()), &[x])?[0];
        }
        // Constants shaped [1, ..., n] broadcast over the batch.
        let konst = |v: &[f32], default: f32| -> TractResult<Tensor> {
            let v = if v.is_empty() { vec![default] } else { v.to_vec() };
            let mut shape = vec![1; rank.max(1)];
            if let Some(last) = shape.last_mut() {
                *last = v.len();
            }
            Tensor::from_shape(&shape, &v)
        };
        let offset = model.add_const(format!("{prefix}.offset"), konst(&self.offset, 0.0)?)?;
        let scale = model.add_const(format!("{prefix}.scale"), konst(&self.scale, 1.0)?)?;
        let centred = model.wire_node(format!("{prefix}.sub"), tract_core::ops::math::sub(), &[x, offset])?;
        model.wire_node(format!("{prefix}.mul"), tract_core::ops::math::mul(), &[centred[0], scale])
    }
}

/// `ZipMap`: passes the probabilities through (see the module comment).
#[derive(Debug, Clone)]
struct ZipMap;

fn zipmap(_: &ParsingContext, _: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(ZipMap), vec![]))
}

impl Expansion for ZipMap {
    fn name(&self) -> StaticName {
        "ZipMap".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        same_shape(s, inputs, outputs)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        Ok(())
    }

    fn wire(&self, _prefix: &str, _model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        Ok(tvec!(inputs[0]))
    }
}
