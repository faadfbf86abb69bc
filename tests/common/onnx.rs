//! Small ONNX graphs written directly, for tests that need a model with a
//! given shape or fault and no Python.
#![allow(dead_code)]

use std::path::Path;

use prost::Message;
use tract_onnx::pb::{
    tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub fn with_attr(mut n: NodeProto, a: AttributeProto) -> NodeProto {
    n.attribute.push(a);
    n
}

pub fn floats(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        float_data: data.to_vec(),
        ..Default::default()
    }
}

/// A float tensor input or output; `None` dims are symbolic (the batch).
pub fn value(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Some(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
                None => tensor_shape_proto::dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn model(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    inits: Vec<TensorProto>,
) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(GraphProto {
            node: nodes,
            input: inputs,
            output: outputs,
            initializer: inits,
            name: "g".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Writes a package: `model.onnx` and `model.toml`.
pub fn package(dir: &Path, onnx: &[u8], toml: &str) {
    std::fs::create_dir_all(dir).expect("package dir");
    std::fs::write(dir.join("model.onnx"), onnx).expect("model.onnx");
    std::fs::write(dir.join("model.toml"), toml).expect("model.toml");
}

/// `sigmoid(x · w + b)` over `w.len()` inputs named X, output Y [N, 1].
pub fn logistic(w: &[f32], b: f32, declared_width: Option<i64>) -> Vec<u8> {
    model(
        vec![
            node("MatMul", "matmul", &["X", "W"], &["z0"]),
            node("Add", "bias", &["z0", "B"], &["z"]),
            node("Sigmoid", "sigmoid", &["z"], &["Y"]),
        ],
        vec![value("X", &[None, declared_width])],
        vec![value("Y", &[None, Some(1)])],
        vec![floats("W", &[w.len() as i64, 1], w), floats("B", &[1], &[b])],
    )
}
