//! `Reading`, the one type every source produces, and `Reason`, the fixed
//! set of reasons a reading can be refused for.

use std::borrow::Cow;

/// A decoded sensor reading that owns its data (for channels, the late
/// store and the replay tool).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reading {
    pub device_id: String,
    /// Event time, epoch milliseconds.
    pub ts_ms: i64,
    /// Signal name → finite value; `null`s are already gone.
    pub values: Vec<(String, f64)>,
}

/// A decoded reading that borrows from the payload it came from, so the
/// hot path copies no names.
#[derive(Debug, Clone, Copy)]
pub struct ReadingRef<'a> {
    pub device_id: &'a str,
    pub ts_ms: i64,
    pub values: &'a [(Cow<'a, str>, f64)],
}

impl ReadingRef<'_> {
    pub fn to_owned(&self) -> Reading {
        Reading {
            device_id: self.device_id.to_owned(),
            ts_ms: self.ts_ms,
            values: self.values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    pub fn signals(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.values.iter().map(|(k, v)| (k.as_ref(), *v))
    }
}

impl Reading {
    pub fn signals(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.values.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

macro_rules! reasons {
    ($($variant:ident => $name:literal: $doc:literal,)*) => {
        /// Why a payload or a reading was refused. The names are the
        /// `reason` label of `faultline_readings_rejected_total`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Reason {
            $(#[doc = $doc] $variant,)*
        }

        impl Reason {
            /// Every reason, in label order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)*
                }
            }

            pub fn describe(self) -> &'static str {
                match self {
                    $(Reason::$variant => $doc,)*
                }
            }
        }
    };
}

reasons! {
    MalformedJson => "malformed_json": "the payload is not valid JSON",
    NotAnObject => "not_an_object": "a reading is not a JSON object (a batch holds objects only)",
    MissingDevice => "missing_device": "no device_id in the payload and none from the topic or key",
    BadDeviceId => "bad_device_id": "device_id is empty, too long or holds control characters",
    MissingTime => "missing_time": "no ts field",
    BadTime => "bad_time": "ts is neither RFC 3339 with an offset nor integer epoch milliseconds in range",
    FutureTime => "future_time": "ts lies further in the future than ingest.max_future",
    NonFinite => "non_finite": "a value is NaN or infinite",
    WrongType => "wrong_type": "a field has the wrong JSON type (values must be numbers or null)",
    TooLarge => "too_large": "the payload is larger than ingest.max_payload_bytes",
    TooManySignals => "too_many_signals": "a reading has more values than ingest.max_signals_per_reading",
    BadSignalName => "bad_signal_name": "a signal name is empty, too long or holds control characters",
    DeviceLimit => "device_limit": "a new device arrived while limits.max_devices devices are tracked",
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True when `s` is usable as a device id or signal name: non-empty, at
/// most `max` bytes, no control characters.
pub fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}
