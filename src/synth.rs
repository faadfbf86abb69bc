//! Synthetic plants for load tests: `faultline replay --devices N`.
//!
//! The values are a real data set's rows (the bundled SKAB run, or any
//! CSV), so windows, features and the model see realistic numbers; what is
//! made up is the number of machines. Device `d` starts at its own row of
//! the data (rows are spread evenly over the devices) and walks on one row
//! per round, wrapping at the end; each round every device sends one
//! reading, `interval` of event time after its previous one. The payload of
//! reading `k` (round `k / devices`, device `k % devices`) is a pure
//! function of `k`, so a load run is repeatable and a lost reading can be
//! named.

use std::fmt::Write as _;
use std::path::Path;

use crate::sources::file::{CsvOptions, CsvReader, FileError};

/// A synthetic plant: `devices` machines replaying a data set's rows.
#[derive(Debug, Clone)]
pub struct Plant {
    /// Each row's values as the JSON object after `"values":`.
    rows: Vec<String>,
    devices: u64,
    /// Event time of round 0.
    t0_ms: i64,
    interval_ms: i64,
}

impl Plant {
    /// Rows from the CSV at `path`, read with `csv` (as `replay` reads a file).
    pub fn from_csv(path: &Path, csv: &CsvOptions, devices: u64, interval_ms: i64) -> Result<Plant, FileError> {
        let mut r = CsvReader::open(path, csv)?;
        let names = r.signals().to_vec();
        let mut rows = Vec::new();
        while let Some(row) = r.next_row()? {
            rows.push(values_json(row.values.iter().map(|&(i, v)| (names[i].as_str(), v))));
        }
        Ok(Plant::new(rows, devices, interval_ms))
    }

    /// Rows from the SKAB run bundled for `faultline demo`.
    pub fn bundled(devices: u64, interval_ms: i64) -> Result<Plant, String> {
        let rows = crate::demo::sample().map_err(|e| format!("the bundled sample: {e}"))?;
        let rows = rows.iter().map(|(_, values)| values_json(values.iter().map(|(k, v)| (k.as_str(), *v)))).collect();
        Ok(Plant::new(rows, devices, interval_ms))
    }

    fn new(mut rows: Vec<String>, devices: u64, interval_ms: i64) -> Plant {
        if rows.is_empty() {
            rows.push("{}".to_owned());
        }
        Plant { rows, devices: devices.max(1), t0_ms: 0, interval_ms: interval_ms.max(1) }
    }

    /// Sets the event time of the first round.
    pub fn starting_at(mut self, t0_ms: i64) -> Plant {
        self.t0_ms = t0_ms;
        self
    }

    pub fn devices(&self) -> u64 {
        self.devices
    }

    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// The id of device `d`.
    pub fn device_id(&self, d: u64) -> String {
        format!("dev-{d:05}")
    }

    /// Event time of reading `k`.
    pub fn ts_ms(&self, k: u64) -> i64 {
        let round = (k / self.devices) as i64;
        self.t0_ms.saturating_add(round.saturating_mul(self.interval_ms))
    }

    /// Appends reading `k` as a SPEC 1 JSON object to `out`.
    pub fn write(&self, k: u64, out: &mut String) {
        let d = k % self.devices;
        let round = k / self.devices;
        let n = self.rows.len() as u64;
        let row = &self.rows[((d * n / self.devices + round) % n) as usize];
        let _ = write!(out, r#"{{"device_id":"dev-{d:05}","ts":{},"values":{row}}}"#, self.ts_ms(k));
    }
}

/// `{"name":value,...}`; values not finite are left out (not measured).
fn values_json<'a>(values: impl Iterator<Item = (&'a str, f64)>) -> String {
    let mut map = serde_json::Map::new();
    for (name, v) in values {
        if let Some(n) = serde_json::Number::from_f64(v) {
            map.insert(name.to_owned(), serde_json::Value::Number(n));
        }
    }
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_walk_the_rows_per_device_and_decode() {
        let plant = Plant::bundled(3, 10_000).expect("sample").starting_at(1_000_000);
        let mut decoder = crate::decode::Decoder::new(crate::decode::DecodeLimits::default());
        let mut seen = Vec::new();
        for k in 0..6 {
            let mut s = String::new();
            plant.write(k, &mut s);
            let decoded = decoder.decode(s.as_bytes(), None, 2_000_000).expect("decodes");
            let r = decoded.iter().next().expect("one reading").expect("a reading");
            assert_eq!(r.device_id, plant.device_id(k % 3));
            assert_eq!(r.ts_ms, 1_000_000 + (k / 3) as i64 * 10_000);
            assert_eq!(r.values.len(), 8, "{s}");
            decoder.recycle(decoded);
            seen.push(s);
        }
        // Devices start at different rows; each walks on to its next row.
        assert_ne!(seen[0].split("values").nth(1), seen[1].split("values").nth(1));
        assert_ne!(seen[0].split("values").nth(1), seen[3].split("values").nth(1));
        // Repeatable.
        let mut again = String::new();
        plant.write(4, &mut again);
        assert_eq!(again, seen[4]);
    }

    #[test]
    fn an_empty_data_set_still_makes_readings() {
        let plant = Plant::new(Vec::new(), 0, 0);
        let mut s = String::new();
        plant.write(7, &mut s);
        assert_eq!(s, r#"{"device_id":"dev-00000","ts":7,"values":{}}"#);
    }
}
