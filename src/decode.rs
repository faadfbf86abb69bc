//! JSON payload → readings (SPEC 1).
//!
//! One pass of serde_json over the payload with hand-written visitors:
//! names borrow from the payload where they hold no escapes, a reading's
//! problems are recorded as a [`Reason`] instead of aborting the parse, so
//! one bad reading in a batch never loses the good ones. Only a payload
//! that is not JSON at all (or too large) is refused as a whole.
//!
//! Producers written in Python emit bare `NaN` / `Infinity` for missing
//! float values; that is not JSON, but refusing the whole batch for it
//! would lose every good reading in it. When the first parse fails and the
//! payload holds such a token outside a string, the tokens are replaced by
//! marker strings and the payload parsed once more, so the affected
//! readings are refused as `non_finite` and the rest kept.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::reading::{valid_name, ReadingRef, Reason};

/// Limits applied while decoding (config `[ingest]`).
#[derive(Debug, Clone)]
pub struct DecodeLimits {
    pub max_payload_bytes: usize,
    pub max_signals_per_reading: usize,
    /// A reading whose time is more than this ahead of the wall clock is
    /// refused: one bad clock must not close every window of its device.
    pub max_future_ms: i64,
    pub max_name_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_payload_bytes: 1 << 20,
            max_signals_per_reading: 256,
            max_future_ms: 5 * 60 * 1000,
            max_name_bytes: 256,
        }
    }
}

#[derive(Debug)]
enum Item<'p> {
    Ok { device: Option<Cow<'p, str>>, ts_ms: i64, start: usize, end: usize },
    Err(Reason),
}

/// The readings of one payload, in payload order, each decoded or refused.
#[derive(Debug)]
pub struct Decoded<'p> {
    items: Vec<Item<'p>>,
    values: Vec<(Cow<'p, str>, f64)>,
    fallback_device: Option<&'p str>,
}

impl<'p> Decoded<'p> {
    /// Number of readings in the payload (1 unless it is a batch).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each reading in payload order: decoded, or the reason it was refused.
    pub fn iter(&self) -> impl Iterator<Item = Result<ReadingRef<'_>, Reason>> + '_ {
        self.items.iter().map(move |item| match item {
            Item::Err(r) => Err(*r),
            Item::Ok { device, ts_ms, start, end } => {
                let device_id = match device {
                    Some(d) => d.as_ref(),
                    // Checked in `decode`: Ok items without a device exist only with a fallback.
                    None => self.fallback_device.unwrap_or_default(),
                };
                Ok(ReadingRef { device_id, ts_ms: *ts_ms, values: &self.values[*start..*end] })
            }
        })
    }

    fn into_owned(self) -> Decoded<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Decoded {
            items: self
                .items
                .into_iter()
                .map(|i| match i {
                    Item::Ok { device, ts_ms, start, end } => {
                        Item::Ok { device: device.map(own), ts_ms, start, end }
                    }
                    Item::Err(r) => Item::Err(r),
                })
                .collect(),
            values: self.values.into_iter().map(|(k, v)| (own(k), v)).collect(),
            fallback_device: None,
        }
    }
}

/// Decodes one payload. `fallback_device` is the device id the source
/// supplies (MQTT topic, Kafka key), used when a reading has none.
/// `Err` means the whole payload was refused.
pub fn decode<'p>(
    payload: &'p [u8],
    fallback_device: Option<&'p str>,
    now_ms: i64,
    limits: &DecodeLimits,
) -> Result<Decoded<'p>, Reason> {
    if payload.len() > limits.max_payload_bytes {
        return Err(Reason::TooLarge);
    }
    let fallback_ok = fallback_device.filter(|d| valid_name(d, limits.max_name_bytes));
    let mut out = match parse(payload, limits) {
        Ok(d) => d,
        Err(first) => {
            let Some(fixed) = replace_bare_non_finite(payload) else {
                return Err(first);
            };
            let d = parse(&fixed, limits)?.into_owned();
            d
        }
    };
    // Resolve what needs the source's device id and the clock.
    for item in &mut out.items {
        if let Item::Ok { device, ts_ms, .. } = item {
            let reason = if device.is_none() && fallback_ok.is_none() {
                Some(if fallback_device.is_some() { Reason::BadDeviceId } else { Reason::MissingDevice })
            } else if *ts_ms > now_ms.saturating_add(limits.max_future_ms) {
                Some(Reason::FutureTime)
            } else {
                None
            };
            if let Some(r) = reason {
                *item = Item::Err(r);
            }
        }
    }
    out.fallback_device = fallback_ok;
    Ok(out)
}

fn parse<'p>(payload: &'p [u8], limits: &DecodeLimits) -> Result<Decoded<'p>, Reason> {
    let mut out = Decoded { items: Vec::new(), values: Vec::new(), fallback_device: None };
    let mut de = serde_json::Deserializer::from_slice(payload);
    let top = TopSeed { out: &mut out, limits }
        .deserialize(&mut de)
        .map_err(|_| Reason::MalformedJson)?;
    de.end().map_err(|_| Reason::MalformedJson)?;
    if let Some(r) = top {
        return Err(r);
    }
    Ok(out)
}

const NAN_MARK: &str = "\u{0}faultline:non-finite";

/// The payload with bare `NaN`, `Infinity` and `-Infinity` tokens outside
/// strings replaced by a marker string, or `None` when there are none.
fn replace_bare_non_finite(payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(payload.len() + 32);
    let mut in_str = false;
    let mut escaped = false;
    let mut found = false;
    let mut i = 0;
    while i < payload.len() {
        let c = payload[i];
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
        } else if c == b'"' {
            in_str = true;
        } else {
            let rest = &payload[i..];
            let token = [&b"-Infinity"[..], b"Infinity", b"NaN"].into_iter().find(|t| rest.starts_with(t));
            if let Some(t) = token {
                out.push(b'"');
                out.extend_from_slice(NAN_MARK.replace('\u{0}', "\\u0000").as_bytes());
                out.push(b'"');
                i += t.len();
                found = true;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    found.then_some(out)
}

/// A JSON string that borrows from the payload when it can.
struct Str<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON value, reduced to what a reading field can be.
enum Scalar<'de> {
    Num(f64),
    Int(i128),
    Str(Cow<'de, str>),
    Null,
    /// bool, object or array (contents skipped).
    Other,
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(i128::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(i128::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// What a value slot holds after classification.
enum Value {
    Num(f64),
    Skip,
    Bad(Reason),
}

fn classify(s: Scalar<'_>) -> Value {
    match s {
        Scalar::Num(v) if v.is_finite() => Value::Num(v),
        Scalar::Num(_) => Value::Bad(Reason::NonFinite),
        // JSON integers beyond 2^53 lose precision as f64, as in any JSON reader.
        Scalar::Int(i) => Value::Num(i as f64),
        Scalar::Null => Value::Skip,
        Scalar::Str(s) if s == NAN_MARK => Value::Bad(Reason::NonFinite),
        Scalar::Str(_) | Scalar::Other => Value::Bad(Reason::WrongType),
    }
}

/// The top level: one reading or an array of them. Yields a payload-level
/// reason for a top-level scalar.
struct TopSeed<'a, 'p> {
    out: &'a mut Decoded<'p>,
    limits: &'a DecodeLimits,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, 'de> {
    type Value = Option<Reason>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, 'de> {
    type Value = Option<Reason>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a reading object or an array of them")
    }

    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
        let item = ReadingVisitor { values: &mut self.out.values, limits: self.limits }.visit_map(m)?;
        self.out.items.push(item);
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        while let Some(item) =
            s.next_element_seed(ElementSeed { values: &mut self.out.values, limits: self.limits })?
        {
            self.out.items.push(item);
        }
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some(Reason::NotAnObject))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Some(Reason::NotAnObject))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Some(Reason::NotAnObject))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some(Reason::NotAnObject))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Some(Reason::NotAnObject))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Some(Reason::NotAnObject))
    }
}

/// One element of a batch: a reading object, or anything else (refused as
/// `not_an_object`).
struct ElementSeed<'a, 'p> {
    values: &'a mut Vec<(Cow<'p, str>, f64)>,
    limits: &'a DecodeLimits,
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_, 'de> {
    type Value = Item<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ElementSeed<'_, 'de> {
    type Value = Item<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a reading object")
    }

    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
        ReadingVisitor { values: self.values, limits: self.limits }.visit_map(m)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Item::Err(Reason::NotAnObject))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Item::Err(Reason::NotAnObject))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Item::Err(Reason::NotAnObject))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Item::Err(Reason::NotAnObject))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Item::Err(Reason::NotAnObject))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Item::Err(Reason::NotAnObject))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Item::Err(Reason::NotAnObject))
    }
}

/// Keeps the first problem found in a reading; later ones are not more useful.
fn note(problem: &mut Option<Reason>, r: Reason) {
    problem.get_or_insert(r);
}

/// Pushes a value, keeping the last one when a name repeats (as JSON
/// readers generally do).
fn push_value<'p>(values: &mut Vec<(Cow<'p, str>, f64)>, start: usize, name: Cow<'p, str>, v: f64) {
    if let Some(slot) = values[start..].iter_mut().find(|(k, _)| *k == name) {
        slot.1 = v;
    } else {
        values.push((name, v));
    }
}

struct ReadingVisitor<'a, 'p> {
    values: &'a mut Vec<(Cow<'p, str>, f64)>,
    limits: &'a DecodeLimits,
}

impl<'de> ReadingVisitor<'_, 'de> {
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Item<'de>, A::Error> {
        let start = self.values.len();
        let limits = self.limits;
        let mut problem: Option<Reason> = None;
        let mut device: Option<Cow<'de, str>> = None;
        let mut ts: Option<i64> = None;
        let mut nested = false;
        // Flat-form candidates sit after `start` until we know whether a
        // `values` object makes them metadata instead.
        let mut flat: Vec<(Cow<'de, str>, f64)> = Vec::new();
        while let Some(Str(key)) = m.next_key::<Str<'de>>()? {
            match key.as_ref() {
                "device_id" => match m.next_value::<Scalar<'de>>()? {
                    Scalar::Str(s) if valid_name(&s, limits.max_name_bytes) => device = Some(s),
                    Scalar::Str(_) => note(&mut problem, Reason::BadDeviceId),
                    // An explicit null is the same as leaving it out.
                    Scalar::Null => {}
                    _ => note(&mut problem, Reason::WrongType),
                },
                "ts" => match m.next_value::<Scalar<'de>>()? {
                    Scalar::Str(s) => match crate::time::parse_rfc3339(&s, crate::time::Naive::Reject) {
                        Some(t) => ts = Some(t),
                        None => note(&mut problem, Reason::BadTime),
                    },
                    Scalar::Int(i) => match i64::try_from(i) {
                        Ok(t) if (crate::time::MIN_MS..=crate::time::MAX_MS).contains(&t) => ts = Some(t),
                        _ => note(&mut problem, Reason::BadTime),
                    },
                    // A float time is ambiguous (seconds? milliseconds?): refuse it.
                    Scalar::Num(_) => note(&mut problem, Reason::BadTime),
                    Scalar::Null => {}
                    _ => note(&mut problem, Reason::WrongType),
                },
                "values" => {
                    nested = true;
                    let seed = ValuesSeed { values: self.values, start, limits, problem: &mut problem };
                    m.next_value_seed(seed)?;
                }
                _ => match classify(m.next_value::<Scalar<'de>>()?) {
                    Value::Num(v) => flat.push((key, v)),
                    // Strings, booleans and objects beside the signals are
                    // metadata in the flat form; only a marked NaN is an error.
                    Value::Bad(Reason::NonFinite) => note(&mut problem, Reason::NonFinite),
                    Value::Bad(_) | Value::Skip => {}
                },
            }
        }
        if !nested {
            for (k, v) in flat {
                if self.values.len() - start >= limits.max_signals_per_reading {
                    note(&mut problem, Reason::TooManySignals);
                    break;
                }
                if !valid_name(&k, limits.max_name_bytes) {
                    note(&mut problem, Reason::BadSignalName);
                    break;
                }
                push_value(self.values, start, k, v);
            }
        }
        let end = self.values.len();
        let problem = problem.or(if ts.is_none() { Some(Reason::MissingTime) } else { None });
        match (problem, ts) {
            (None, Some(ts_ms)) => Ok(Item::Ok { device, ts_ms, start, end }),
            (p, _) => {
                self.values.truncate(start);
                Ok(Item::Err(p.unwrap_or(Reason::MissingTime)))
            }
        }
    }
}

/// The `values` object of the nested form.
struct ValuesSeed<'a, 'p> {
    values: &'a mut Vec<(Cow<'p, str>, f64)>,
    start: usize,
    limits: &'a DecodeLimits,
    problem: &'a mut Option<Reason>,
}

impl<'de> DeserializeSeed<'de> for ValuesSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValuesSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of signal values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(Str(name)) = m.next_key::<Str<'de>>()? {
            let v = classify(m.next_value::<Scalar<'de>>()?);
            if self.problem.is_some() {
                continue;
            }
            match v {
                Value::Skip => {}
                Value::Bad(r) => note(self.problem, r),
                Value::Num(_) if !valid_name(&name, self.limits.max_name_bytes) => {
                    note(self.problem, Reason::BadSignalName)
                }
                Value::Num(_) if self.values.len() - self.start >= self.limits.max_signals_per_reading => {
                    note(self.problem, Reason::TooManySignals)
                }
                Value::Num(v) => push_value(self.values, self.start, name, v),
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        note(self.problem, Reason::WrongType);
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        note(self.problem, Reason::WrongType);
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        note(self.problem, Reason::WrongType);
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        note(self.problem, Reason::WrongType);
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        note(self.problem, Reason::WrongType);
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        note(self.problem, Reason::WrongType);
        Ok(())
    }
    // `"values": null`: nothing measured.
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_256_103_250; // 2026-11-21T10:15:03.250Z

    fn run(payload: &str, fallback: Option<&str>) -> Result<Vec<Result<(String, i64, Vec<(String, f64)>), Reason>>, Reason> {
        let d = decode(payload.as_bytes(), fallback, NOW, &DecodeLimits::default())?;
        Ok(d.iter()
            .map(|r| {
                r.map(|r| {
                    (r.device_id.to_owned(), r.ts_ms, r.signals().map(|(k, v)| (k.to_owned(), v)).collect())
                })
            })
            .collect())
    }

    fn one(payload: &str) -> Result<(String, i64, Vec<(String, f64)>), Reason> {
        let mut v = run(payload, None)?;
        assert_eq!(v.len(), 1, "{payload}");
        v.remove(0)
    }

    #[test]
    fn nested_form_of_the_spec() {
        let r = one(r#"{"device_id": "pump-7", "ts": "2026-11-21T10:15:03.250Z",
            "values": {"Temperature": 71.2, "Accelerometer1RMS": 0.43, "Pressure": 5.1}}"#)
        .unwrap();
        assert_eq!(r.0, "pump-7");
        assert_eq!(r.1, NOW);
        assert_eq!(
            r.2,
            vec![("Temperature".into(), 71.2), ("Accelerometer1RMS".into(), 0.43), ("Pressure".into(), 5.1)]
        );
    }

    #[test]
    fn flat_form_epoch_millis_and_nulls() {
        let r = one(r#"{"ts": 1795256103250, "device_id": "p", "Volume Flow RateRMS": 32,
            "unit": "metric", "Temperature": null, "ok": true}"#)
        .unwrap();
        assert_eq!(r.1, NOW);
        assert_eq!(r.2, vec![("Volume Flow RateRMS".into(), 32.0)]);
    }

    #[test]
    fn nested_form_ignores_top_level_numbers() {
        let r = one(r#"{"device_id": "p", "ts": 0, "seq": 5, "values": {"a": 1, "b": null}}"#).unwrap();
        assert_eq!(r.2, vec![("a".into(), 1.0)]);
    }

    #[test]
    fn escaped_names_are_decoded() {
        let r = one(r#"{"device_id": "p\u00fcmp", "ts": 0, "values": {"T\"1": 1.5}}"#).unwrap();
        assert_eq!(r.0, "pümp");
        assert_eq!(r.2, vec![("T\"1".into(), 1.5)]);
    }

    #[test]
    fn a_repeated_name_keeps_the_last_value() {
        let r = one(r#"{"device_id": "p", "ts": 0, "values": {"a": 1, "a": 2}}"#).unwrap();
        assert_eq!(r.2, vec![("a".into(), 2.0)]);
    }

    #[test]
    fn device_from_the_source_when_the_payload_has_none() {
        let r = run(r#"{"ts": 0, "values": {"a": 1}}"#, Some("from-topic")).unwrap();
        assert_eq!(r[0].as_ref().unwrap().0, "from-topic");
        // The payload's own id wins.
        let r = run(r#"{"device_id": "own", "ts": 0, "values": {"a": 1}}"#, Some("from-topic")).unwrap();
        assert_eq!(r[0].as_ref().unwrap().0, "own");
    }

    #[test]
    fn a_bad_reading_in_a_batch_keeps_the_good_ones() {
        let r = run(
            r#"[{"device_id": "a", "ts": 0, "values": {"x": 1}},
                {"device_id": "b", "values": {"x": 1}},
                42,
                {"device_id": "c", "ts": 5, "values": {"x": 2}}]"#,
            None,
        )
        .unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].as_ref().unwrap().0, "a");
        assert_eq!(r[1], Err(Reason::MissingTime));
        assert_eq!(r[2], Err(Reason::NotAnObject));
        assert_eq!(r[3].as_ref().unwrap(), &("c".to_owned(), 5, vec![("x".to_owned(), 2.0)]));
    }

    #[test]
    fn every_rejection_reason() {
        let cases: &[(&str, Reason)] = &[
            (r#"{"device_id": "a", "ts": 0, "values": {"x": 1}"#, Reason::MalformedJson),
            (r#"{"device_id": "a", "ts": 0} trailing"#, Reason::MalformedJson),
            ("", Reason::MalformedJson),
            ("\"just a string\"", Reason::NotAnObject),
            ("17", Reason::NotAnObject),
            (r#"{"ts": 0, "values": {"x": 1}}"#, Reason::MissingDevice),
            (r#"{"device_id": "", "ts": 0, "values": {"x": 1}}"#, Reason::BadDeviceId),
            (r#"{"device_id": "a\nb", "ts": 0, "values": {"x": 1}}"#, Reason::BadDeviceId),
            (r#"{"device_id": "a", "values": {"x": 1}}"#, Reason::MissingTime),
            (r#"{"device_id": "a", "ts": null, "values": {"x": 1}}"#, Reason::MissingTime),
            (r#"{"device_id": "a", "ts": "2026-11-21 10:15:03", "values": {"x": 1}}"#, Reason::BadTime),
            (r#"{"device_id": "a", "ts": 1.5e12, "values": {"x": 1}}"#, Reason::BadTime),
            (r#"{"device_id": "a", "ts": 99999999999999999999, "values": {"x": 1}}"#, Reason::BadTime),
            (r#"{"device_id": "a", "ts": "2026-11-21T10:25:03.251Z", "values": {"x": 1}}"#, Reason::FutureTime),
            (r#"{"device_id": "a", "ts": 0, "values": {"x": NaN}}"#, Reason::NonFinite),
            (r#"{"device_id": "a", "ts": 0, "values": {"x": -Infinity}}"#, Reason::NonFinite),
            (r#"{"device_id": "a", "ts": 0, "x": Infinity}"#, Reason::NonFinite),
            (r#"{"device_id": "a", "ts": 0, "values": {"x": 1e999}}"#, Reason::MalformedJson),
            (r#"{"device_id": 7, "ts": 0, "values": {"x": 1}}"#, Reason::WrongType),
            (r#"{"device_id": "a", "ts": true, "values": {"x": 1}}"#, Reason::WrongType),
            (r#"{"device_id": "a", "ts": 0, "values": [1, 2]}"#, Reason::WrongType),
            (r#"{"device_id": "a", "ts": 0, "values": {"x": "1.5"}}"#, Reason::WrongType),
            (r#"{"device_id": "a", "ts": 0, "values": {"x": {"v": 1}}}"#, Reason::WrongType),
            (r#"{"device_id": "a", "ts": 0, "values": {"": 1}}"#, Reason::BadSignalName),
        ];
        for (payload, want) in cases {
            let got = match run(payload, None) {
                Err(r) => r,
                Ok(v) => {
                    assert_eq!(v.len(), 1, "{payload}");
                    v[0].clone().err().unwrap_or_else(|| panic!("accepted: {payload}"))
                }
            };
            assert_eq!(got, *want, "{payload}");
        }
    }

    #[test]
    fn size_and_signal_limits() {
        let limits = DecodeLimits { max_payload_bytes: 100, max_signals_per_reading: 2, ..Default::default() };
        let big = format!(r#"{{"device_id": "a", "ts": 0, "values": {{"x": {}}}}}"#, "1".repeat(100));
        assert_eq!(decode(big.as_bytes(), None, NOW, &limits).err(), Some(Reason::TooLarge));
        for p in [
            r#"{"device_id": "a", "ts": 0, "values": {"x": 1, "y": 2, "z": 3}}"#,
            r#"{"device_id": "a", "ts": 0, "x": 1, "y": 2, "z": 3}"#,
        ] {
            let d = decode(p.as_bytes(), None, NOW, &limits).unwrap();
            assert_eq!(d.iter().next().unwrap().err(), Some(Reason::TooManySignals), "{p}");
        }
        // Nulls do not count against the limit.
        let p = r#"{"device_id": "a", "ts": 0, "values": {"x": 1, "y": null, "z": 3}}"#;
        assert!(decode(p.as_bytes(), None, NOW, &limits).unwrap().iter().next().unwrap().is_ok());
    }

    #[test]
    fn a_bad_fallback_device_is_refused() {
        let r = run(r#"{"ts": 0, "values": {"x": 1}}"#, Some("")).unwrap();
        assert_eq!(r[0], Err(Reason::BadDeviceId));
    }

    #[test]
    fn bare_nan_only_spoils_its_own_reading() {
        let r = run(
            r#"[{"device_id": "a", "ts": 0, "values": {"x": NaN, "note": 1}},
                {"device_id": "b", "ts": 0, "values": {"x": 2, "label": "NaN inside a string"}}]"#,
            None,
        )
        .unwrap();
        assert_eq!(r[0], Err(Reason::NonFinite));
        // The string-typed value is still a wrong type: the marker is only for bare tokens.
        assert_eq!(r[1], Err(Reason::WrongType));
        let r = run(r#"[{"device_id": "a", "ts": 0, "values": {"x": NaN}}, {"device_id": "b", "ts": 3, "y": 2}]"#, None)
            .unwrap();
        assert_eq!(r[1].as_ref().unwrap().0, "b");
    }

    #[test]
    fn empty_batch_is_empty() {
        assert!(run("[]", None).unwrap().is_empty());
    }
}
