//! Models (SPEC 3): packages, the tract runtime with faultline's own ONNX-ML
//! operators, and scoring closed windows.
//!
//! - [`package`] — `model.toml`.
//! - [`trees`] — compiled tree ensembles (pure Rust, no tract types).
//! - `onnx_ops` — the tract operators built on them, plus `Scaler` and `ZipMap`.
//! - [`runtime`] — [`Model`], a loaded and checked package.

pub mod handle;
mod onnx_ops;
pub mod package;
pub mod runtime;
pub mod score;
pub mod trees;

pub use handle::{ModelHandle, Reload, Watcher};
pub use package::{OutputKind, Package};
pub use runtime::{Model, ModelError};
