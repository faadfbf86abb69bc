//! Helpers shared by the black-box tests.
#![allow(dead_code)]

pub mod brokers;
pub mod onnx;
pub mod skab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// SKAB's eight sensor signals, in file order.
pub const SKAB_SIGNALS: [&str; 8] = [
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
];

/// Runs the `faultline` binary built for this test run.
pub fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .env("FAULTLINE_LOG", "warn")
        .output()
        .expect("the faultline binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `../shared/data` beside the repository (or `$FAULTLINE_DATA`), if present.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("FAULTLINE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    dir.is_dir().then_some(dir)
}

/// Parses a CSV into its header and rows of cells.
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).expect("csv opens");
    let header = r.headers().expect("header").iter().map(str::to_owned).collect();
    let rows = r.records().map(|rec| rec.expect("record").iter().map(str::to_owned).collect()).collect();
    (header, rows)
}
