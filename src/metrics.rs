//! Every metric name faultline emits, with its help text, in one place
//! (SPEC 8).
//!
//! The hot path never touches the metrics registry: the pipeline keeps
//! plain counters, and [`publish_pipeline`] copies them into the registry
//! from one call site (about once a second, and before a scrape), so there
//! is no label lookup per reading.

use metrics::{counter, describe_counter, describe_gauge, gauge};

use crate::pipeline::Pipeline;
use crate::window::Limit;

pub const READINGS_TOTAL: &str = "faultline_readings_total";
pub const READINGS_REJECTED_TOTAL: &str = "faultline_readings_rejected_total";
pub const READINGS_LATE_TOTAL: &str = "faultline_readings_late_total";
pub const PAYLOADS_TOTAL: &str = "faultline_payloads_total";
pub const VALUES_DROPPED_TOTAL: &str = "faultline_values_dropped_total";
pub const WINDOWS_CLOSED_TOTAL: &str = "faultline_windows_closed_total";
pub const WINDOWS_UPDATED_TOTAL: &str = "faultline_windows_updated_total";
pub const LIMIT_HITS_TOTAL: &str = "faultline_limit_hits_total";
pub const DEVICES: &str = "faultline_devices";
pub const DEVICES_FORGOTTEN_TOTAL: &str = "faultline_devices_forgotten_total";
pub const OPEN_WINDOWS: &str = "faultline_open_windows";
pub const LATE_STORE_SIZE: &str = "faultline_late_store_size";
pub const QUARANTINE_SIZE: &str = "faultline_quarantine_size";

/// Registers help texts; call once after installing a recorder.
pub fn describe() {
    describe_counter!(READINGS_TOTAL, "Readings decoded and handed to the window engine, by source.");
    describe_counter!(PAYLOADS_TOTAL, "Payloads (MQTT messages, Kafka records) received, by source.");
    describe_counter!(READINGS_REJECTED_TOTAL, "Payloads or readings refused, by reason.");
    describe_counter!(READINGS_LATE_TOTAL, "Readings later than the allowed lateness, kept in the late store.");
    describe_counter!(VALUES_DROPPED_TOTAL, "Values dropped by cleaning rules, by signal and reason.");
    describe_counter!(WINDOWS_CLOSED_TOTAL, "Windows closed (by watermark, idle timeout, limit or flush).");
    describe_counter!(WINDOWS_UPDATED_TOTAL, "Closed windows re-emitted after a late reading.");
    describe_counter!(LIMIT_HITS_TOTAL, "Times a state bound was hit, by limit.");
    describe_gauge!(DEVICES, "Devices with state in the window engine.");
    describe_counter!(DEVICES_FORGOTTEN_TOTAL, "Devices dropped after limits.device_ttl of silence.");
    describe_gauge!(OPEN_WINDOWS, "Windows open over all devices.");
    describe_gauge!(LATE_STORE_SIZE, "Late readings held in the late store.");
    describe_gauge!(QUARANTINE_SIZE, "Refused payloads held in the quarantine.");
}

/// Copies the pipeline's counters into the metrics registry.
pub fn publish_pipeline(p: &Pipeline) {
    for s in p.sources() {
        counter!(READINGS_TOTAL, "source" => s.name.clone()).absolute(s.readings);
        counter!(PAYLOADS_TOTAL, "source" => s.name.clone()).absolute(s.payloads);
    }
    for (reason, n) in p.rejected() {
        counter!(READINGS_REJECTED_TOTAL, "reason" => reason.as_str()).absolute(n);
    }
    let e = p.engine();
    let c = e.counters();
    counter!(READINGS_LATE_TOTAL).absolute(c.late);
    counter!(WINDOWS_CLOSED_TOTAL).absolute(c.windows_closed);
    counter!(WINDOWS_UPDATED_TOTAL).absolute(c.windows_updated);
    counter!(DEVICES_FORGOTTEN_TOTAL).absolute(c.devices_forgotten);
    for l in Limit::ALL {
        counter!(LIMIT_HITS_TOTAL, "limit" => l.as_str()).absolute(c.limit_hits[l as usize]);
    }
    for (signal, reason, n) in e.cleaning().dropped() {
        counter!(VALUES_DROPPED_TOTAL, "signal" => signal.to_owned(), "reason" => reason.as_str()).absolute(n);
    }
    gauge!(DEVICES).set(e.device_count() as f64);
    gauge!(OPEN_WINDOWS).set(e.open_window_count() as f64);
    gauge!(LATE_STORE_SIZE).set(e.late_store().len() as f64);
    gauge!(QUARANTINE_SIZE).set(p.quarantine().len() as f64);
}
