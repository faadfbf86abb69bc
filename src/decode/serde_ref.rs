//! Test oracle: the first decoder faultline had, built on serde_json's
//! visitors. The hand-written reader in `mod.rs` must agree with it on
//! every payload both read (see `tests::agrees_with_the_serde_oracle`).
//! Only the parsing is independent; both share the `Decoded` buffers and
//! [`super::resolve`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{resolve, DecodeLimits, Decoded, Item};
use crate::reading::{valid_name, Reason};

pub(super) type Owned = Result<(String, i64, Vec<(String, f64)>), Reason>;

/// Decodes `payload` into owned readings with serde_json.
pub(super) fn decode_ref(
    payload: &[u8],
    fallback: Option<&str>,
    now_ms: i64,
    limits: &DecodeLimits,
) -> Result<Vec<Owned>, Reason> {
    if payload.len() > limits.max_payload_bytes {
        return Err(Reason::TooLarge);
    }
    let text = std::str::from_utf8(payload).map_err(|_| Reason::MalformedJson)?;
    let owned = |d: &Decoded<'_>| -> Vec<Owned> {
        d.iter()
            .map(|r| {
                r.map(|r| (r.device_id.to_owned(), r.ts_ms, r.signals().map(|(k, v)| (k.to_owned(), v)).collect()))
            })
            .collect()
    };
    match parse(text, limits) {
        Ok(d) => Ok(owned(&resolve(d, fallback, now_ms, limits))),
        Err(first) => {
            // Bare NaN / Infinity: mark them as strings the visitors recognise, parse again.
            let fixed = replace_bare_non_finite(text).ok_or(first)?;
            let d = parse(&fixed, limits)?;
            Ok(owned(&resolve(d, fallback, now_ms, limits)))
        }
    }
}

fn parse<'p>(text: &'p str, limits: &DecodeLimits) -> Result<Decoded<'p>, Reason> {
    let mut out = Decoded { items: Vec::new(), values: Vec::new(), fallback_device: None };
    let mut de = serde_json::Deserializer::from_str(text);
    let top = TopSeed { out: &mut out, limits }.deserialize(&mut de).map_err(|_| Reason::MalformedJson)?;
    de.end().map_err(|_| Reason::MalformedJson)?;
    if let Some(r) = top {
        return Err(r);
    }
    Ok(out)
}

const NAN_MARK: &str = "\u{0}faultline:non-finite";

/// The payload with bare `NaN`, `Infinity` and `-Infinity` tokens outside
/// strings replaced by a marker string, or `None` when there are none.
fn replace_bare_non_finite(payload: &str) -> Option<String> {
    let b = payload.as_bytes();
    let marker = format!("\"{}\"", NAN_MARK.replace('\u{0}', "\\u0000"));
    let mut out = String::with_capacity(payload.len() + 32);
    let mut in_str = false;
    let mut escaped = false;
    let mut found = false;
    // Copies runs of the input between replacements, so multi-byte
    // characters are never split.
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
        } else if c == b'"' {
            in_str = true;
        } else if let Some(t) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| b[i..].starts_with(t.as_bytes()))
        {
            out.push_str(&payload[copied..i]);
            out.push_str(&marker);
            i += t.len();
            copied = i;
            found = true;
            continue;
        }
        i += 1;
    }
    out.push_str(&payload[copied..]);
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
        while let Some(item) = s.next_element_seed(ElementSeed { values: &mut self.out.values, limits: self.limits })? {
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

fn push_value<'p>(values: &mut Vec<(Cow<'p, str>, f64)>, _start: usize, name: Cow<'p, str>, v: f64) {
    values.push((name, v));
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
