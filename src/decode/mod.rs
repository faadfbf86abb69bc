//! JSON payload → readings (SPEC 1).
//!
//! A hand-written reader for exactly this format, because decoding is most
//! of the cost of every reading: serde_json's generic visitor layers spent
//! about 8,600 instructions on a 270-byte, 8-signal reading, this reader
//! about 3,500 (benches/RESULTS.md, 40). The usual `values` object (plain
//! names, numbers without exponents) takes a short way, 16 bytes of a
//! name and 8 digits of a number at a time; anything else in it is read
//! again the full way, so both read it the same. It is a full
//! JSON grammar check (strings with escapes and surrogate pairs, numbers,
//! literals, nesting up to depth 128), allocates nothing in the steady
//! state (names borrow from the payload unless they hold escapes; buffers
//! are reused through [`Decoder`]), and records a reading's problems as a
//! [`Reason`] instead of stopping, so one bad reading in a batch never
//! loses the good ones. Only a payload that is not JSON at all (or too
//! large) is refused as a whole.
//!
//! Two deliberate extensions of JSON: producers written in Python emit
//! bare `NaN`, `Infinity` and `-Infinity`, and a number literal may
//! overflow `f64`; both are read as a non-finite value, so the reading is
//! refused as `non_finite` and the rest of its batch kept, instead of the
//! whole payload being malformed. The test-only module `serde_ref` keeps a
//! serde_json-based decoder as the oracle for differential tests.

use std::borrow::Cow;

use crate::reading::{valid_name, ReadingRef, Reason};

#[cfg(test)]
mod serde_ref;

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

impl Decoded<'_> {
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
                    // `decode` turns Ok items without a device into errors unless there is a fallback.
                    None => self.fallback_device.unwrap_or_default(),
                };
                Ok(ReadingRef { device_id, ts_ms: *ts_ms, values: &self.values[*start..*end] })
            }
        })
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
    Decoder::new(limits.clone()).decode(payload, fallback_device, now_ms)
}

/// Turns an emptied `Vec` of one lifetime into one of another, keeping its
/// allocation (the standard library collects a `vec::IntoIter` in place
/// when the element layouts match).
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// A decoder that keeps its buffers from one payload to the next, so the
/// steady state allocates nothing but names that hold escapes.
#[derive(Debug)]
pub struct Decoder {
    limits: DecodeLimits,
    items: Vec<Item<'static>>,
    values: Vec<(Cow<'static, str>, f64)>,
}

impl Decoder {
    pub fn new(limits: DecodeLimits) -> Self {
        Decoder { limits, items: Vec::new(), values: Vec::new() }
    }

    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// Hands a finished payload's buffers back for the next one.
    pub fn recycle(&mut self, d: Decoded<'_>) {
        self.items = recycle(d.items);
        self.values = recycle(d.values);
    }

    /// See [`decode`].
    pub fn decode<'p>(
        &mut self,
        payload: &'p [u8],
        fallback_device: Option<&'p str>,
        now_ms: i64,
    ) -> Result<Decoded<'p>, Reason> {
        let limits = &self.limits;
        if payload.len() > limits.max_payload_bytes {
            return Err(Reason::TooLarge);
        }
        // One UTF-8 check of the whole payload; after it every string slice
        // the parser takes between ASCII delimiters is valid `str`.
        let text = std::str::from_utf8(payload).map_err(|_| Reason::MalformedJson)?;
        let mut out = Decoded {
            items: recycle(std::mem::take(&mut self.items)),
            values: recycle(std::mem::take(&mut self.values)),
            fallback_device: None,
        };
        let mut p = Parser { s: text, b: payload, i: 0, limits };
        match p.top(&mut out) {
            Ok(None) => {}
            Ok(Some(r)) => return Err(r),
            Err(Malformed) => return Err(Reason::MalformedJson),
        }
        Ok(resolve(out, fallback_device, now_ms, limits))
    }
}

/// Settles what needs more than the payload: the source's device id for
/// readings without one, and the clock for `future_time`.
fn resolve<'p>(
    mut out: Decoded<'p>,
    fallback_device: Option<&'p str>,
    now_ms: i64,
    limits: &DecodeLimits,
) -> Decoded<'p> {
    let fallback_ok = fallback_device.filter(|d| valid_name(d, limits.max_name_bytes));
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
    out
}

/// The payload is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Malformed;

type Parse<T> = Result<T, Malformed>;

/// Containers nested deeper than this are refused (as serde_json does),
/// so a payload of a million `[` cannot exhaust the stack.
const MAX_DEPTH: u32 = 128;

/// A JSON value, reduced to what a reading field can be.
#[derive(Debug)]
enum Val<'p> {
    Num(Num),
    Str(Cow<'p, str>, bool),
    Null,
    /// `true`, `false`, an object or an array (contents checked and skipped).
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Num {
    /// The value, infinite when the literal overflows or is `Infinity`, NaN for `NaN`.
    f: f64,
    /// The value as an integer when the literal is one (no fraction or exponent) and fits.
    int: Option<i64>,
}

/// Exact powers of ten for the fast path of number parsing.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Nonzero high bits where a byte of `x` may be zero (exact for the lowest
/// such byte; bytes above it may be false alarms, which only cost a slower step).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGH
}

/// High bits set where a byte of `x` may be one a string scan must stop
/// at: `"`, `\\`, a control byte below 0x20, or anything from 0x7f up (DEL,
/// and non-ASCII, which may be a C1 control). The lowest set bit is exact;
/// higher ones may be false alarms, which only cost a slower step.
#[inline]
fn stop_bytes(x: u64) -> u64 {
    let below_space = x.wrapping_sub(ONES * 0x20) & !x;
    let from_del = x.wrapping_add(ONES) | x;
    (below_space | from_del) & HIGH
        | zero_bytes(x ^ (ONES * u64::from(b'"')))
        | zero_bytes(x ^ (ONES * u64::from(b'\\')))
}

/// [`stop_bytes`] for 16 bytes with SSE2 (part of every x86_64): bit `k`
/// of the result is set when byte `k` is one to stop at. A signed compare
/// below 0x20 takes the control bytes and everything from 0x80 up at once.
#[cfg(target_arch = "x86_64")]
#[inline]
fn stop_bytes_16(chunk: &[u8]) -> u32 {
    use std::arch::x86_64::*;
    assert!(chunk.len() >= 16);
    // SAFETY: SSE2 is part of every x86_64 CPU (the intrinsics are
    // unsafe only as target-feature functions), and the load reads 16
    // bytes where `chunk` has at least 16 (the caller slices exactly 16).
    unsafe {
        let x = _mm_loadu_si128(chunk.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
        let low_or_high = _mm_cmplt_epi8(x, _mm_set1_epi8(0x20));
        let del = _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f));
        let stops = _mm_or_si128(_mm_or_si128(quote, backslash), _mm_or_si128(low_or_high, del));
        _mm_movemask_epi8(stops) as u32
    }
}

/// Powers of ten a mantissa is scaled by when a run of digits joins it.
const POW10_U64: [u64; 9] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// The decimal digits at the start of `x` (8 bytes of text, little-endian):
/// how many there are (0 to 8) and their value. Bytes past the first
/// non-digit do not matter: a borrow or carry only moves towards them.
#[inline]
fn digit_run(x: u64) -> (usize, u64) {
    // Digits become 0..=9; any other byte gets its high bit set, either
    // here (below '0', or from 0xb0 up) or once 0x76 is added (10..=0x89).
    let d = x.wrapping_sub(ONES * u64::from(b'0'));
    let other = (d | d.wrapping_add(ONES * 0x76)) & HIGH;
    let n = (other.trailing_zeros() / 8) as usize;
    if n == 0 {
        return (0, 0);
    }
    // The digits to the top, zeros (leading zeros of the number) below;
    // then pairs, quads and the octet are combined, the lower-addressed
    // (more significant) part of each scaled by its width in digits.
    let v = d << (8 * (8 - n));
    let v = (v * 10 + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
    let v = (v * 100 + (v >> 16)) & 0x0000_ffff_0000_ffff;
    let v = (v * 10_000 + (v >> 32)) & 0xffff_ffff;
    (n, v)
}

/// The 8 bytes of `b` from `i` as a little-endian word, zero bytes past
/// its end.
#[inline(always)]
fn word_at(b: &[u8], i: usize) -> u64 {
    match b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        Some(c) => u64::from_le_bytes(c),
        None => {
            let mut c = [0u8; 8];
            let rest = b.get(i..).unwrap_or_default();
            c[..rest.len()].copy_from_slice(rest);
            u64::from_le_bytes(c)
        }
    }
}

/// Past JSON whitespace in `b` from `i`.
#[inline(always)]
fn ws_at(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

/// The next byte of `b` from `i` that can end or complicate a string (see
/// [`stop_bytes`]), 16 or 8 bytes at a time; near the end of the payload
/// it leaves the rest to the byte-wise step of the caller.
#[inline]
fn skip_plain_at(b: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = b.get(i..i + 16) {
        let stops = stop_bytes_16(chunk);
        if stops != 0 {
            return i + stops.trailing_zeros() as usize;
        }
        i += 16;
    }
    while let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let stops = stop_bytes(u64::from_le_bytes(chunk));
        if stops != 0 {
            return i + (stops.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

/// The short way through the usual number literal at `i`: an optional
/// `-`, 1 to 7 integer digits without a leading zero (or just `0`), and
/// optionally `.` and 1 to 7 more digits, no exponent. At most 14 digits,
/// so the mantissa and the power of ten are exact and one division rounds
/// correctly (as in [`Parser::number`]). Gives the value and the index
/// past the literal, or `None` for anything else.
#[inline]
fn short_number_at(b: &[u8], mut i: usize) -> Option<(f64, usize)> {
    let neg = b.get(i) == Some(&b'-');
    i += usize::from(neg);
    let (n, int) = digit_run(word_at(b, i));
    if n == 0 || n == 8 || (n > 1 && b.get(i) == Some(&b'0')) {
        return None;
    }
    i += n;
    let mut f = int as f64;
    if b.get(i) == Some(&b'.') {
        let (k, frac) = digit_run(word_at(b, i + 1));
        if k == 0 || k == 8 {
            return None;
        }
        i += 1 + k;
        f = (int * POW10_U64[k] + frac) as f64 / POW10[k];
    }
    if let Some(b'e' | b'E') = b.get(i) {
        return None;
    }
    Some((if neg { -f } else { f }, i))
}

/// Keeps the first problem found in a reading; later ones are not more useful.
fn note(problem: &mut Option<Reason>, r: Reason) {
    problem.get_or_insert(r);
}

/// A name passes when it is non-empty and short enough; the full check for
/// control characters runs only when the string held an escape or a byte
/// that can start one (DEL, C1), since raw control bytes are not JSON.
fn name_ok(name: &str, suspicious: bool, max: usize) -> bool {
    if suspicious {
        valid_name(name, max)
    } else {
        !name.is_empty() && name.len() <= max
    }
}

struct Parser<'p, 'l> {
    s: &'p str,
    b: &'p [u8],
    i: usize,
    limits: &'l DecodeLimits,
}

impl<'p> Parser<'p, '_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        self.i = ws_at(self.b, self.i);
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Parse<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Parse<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// The payload: a reading or an array of them. `Ok(Some(_))` refuses
    /// the payload as a whole (a top-level scalar).
    fn top(&mut self, out: &mut Decoded<'p>) -> Parse<Option<Reason>> {
        self.ws();
        let refused = match self.peek() {
            Some(b'{') => {
                let item = self.reading(&mut out.values)?;
                out.items.push(item);
                None
            }
            Some(b'[') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        let item = if self.peek() == Some(b'{') {
                            self.reading(&mut out.values)?
                        } else {
                            self.value(2)?;
                            Item::Err(Reason::NotAnObject)
                        };
                        out.items.push(item);
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(Malformed),
                        }
                    }
                }
                None
            }
            _ => {
                self.value(1)?;
                Some(Reason::NotAnObject)
            }
        };
        self.ws();
        if self.i != self.b.len() {
            return Err(Malformed);
        }
        Ok(refused)
    }

    /// Walks the members of an object whose `{` is under the cursor,
    /// calling `member` with each key; `member` must consume the value.
    #[inline]
    fn object(&mut self, mut member: impl FnMut(&mut Self, Cow<'p, str>, bool) -> Parse<()>) -> Parse<()> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(Malformed);
            }
            let (key, suspicious) = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            member(self, key, suspicious)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Malformed),
            }
        }
    }

    /// One reading object.
    fn reading(&mut self, values: &mut Vec<(Cow<'p, str>, f64)>) -> Parse<Item<'p>> {
        let start = values.len();
        let limits = self.limits;
        let mut problem: Option<Reason> = None;
        let mut device: Option<Cow<'p, str>> = None;
        let mut ts: Option<i64> = None;
        let mut nested = false;
        // Flat-form candidates wait here until we know whether a `values`
        // object makes them metadata instead.
        let mut flat: Vec<(Cow<'p, str>, f64, bool)> = Vec::new();
        self.object(|p, key, key_sus| {
            match key.as_ref() {
                "device_id" => match p.value(2)? {
                    Val::Str(s, sus) if name_ok(&s, sus, limits.max_name_bytes) => device = Some(s),
                    Val::Str(..) => note(&mut problem, Reason::BadDeviceId),
                    // An explicit null is the same as leaving it out.
                    Val::Null => {}
                    _ => note(&mut problem, Reason::WrongType),
                },
                "ts" => match p.value(2)? {
                    Val::Str(s, _) => match crate::time::parse_rfc3339(&s, crate::time::Naive::Reject) {
                        Some(t) => ts = Some(t),
                        None => note(&mut problem, Reason::BadTime),
                    },
                    Val::Num(Num { int: Some(t), .. }) if (crate::time::MIN_MS..=crate::time::MAX_MS).contains(&t) => {
                        ts = Some(t)
                    }
                    // Out of range, or a float: ambiguous (seconds? milliseconds?), refused.
                    Val::Num(_) => note(&mut problem, Reason::BadTime),
                    Val::Null => {}
                    Val::Other => note(&mut problem, Reason::WrongType),
                },
                "values" => {
                    nested = true;
                    if p.peek() == Some(b'{') {
                        p.values(values, start, &mut problem)?;
                    } else {
                        match p.value(2)? {
                            // `"values": null`: nothing measured.
                            Val::Null => {}
                            _ => note(&mut problem, Reason::WrongType),
                        }
                    }
                }
                _ => match p.value(2)? {
                    Val::Num(n) if n.f.is_finite() => flat.push((key, n.f, key_sus)),
                    Val::Num(_) => note(&mut problem, Reason::NonFinite),
                    // Strings, booleans, nulls and objects beside the signals are metadata.
                    _ => {}
                },
            }
            Ok(())
        })?;
        if !nested {
            for (name, v, sus) in flat {
                if values.len() - start >= limits.max_signals_per_reading {
                    note(&mut problem, Reason::TooManySignals);
                    break;
                }
                if !name_ok(&name, sus, limits.max_name_bytes) {
                    note(&mut problem, Reason::BadSignalName);
                    break;
                }
                values.push((name, v));
            }
        }
        let problem = problem.or(if ts.is_none() { Some(Reason::MissingTime) } else { None });
        match (problem, ts) {
            (None, Some(ts_ms)) => Ok(Item::Ok { device, ts_ms, start, end: values.len() }),
            (p, _) => {
                values.truncate(start);
                Ok(Item::Err(p.unwrap_or(Reason::MissingTime)))
            }
        }
    }

    /// The `values` object of the nested form.
    fn values(
        &mut self,
        values: &mut Vec<(Cow<'p, str>, f64)>,
        start: usize,
        problem: &mut Option<Reason>,
    ) -> Parse<()> {
        let limits = self.limits;
        if problem.is_none() {
            let (at, had) = (self.i, values.len());
            if self.plain_values(values, start).is_some() {
                return Ok(());
            }
            // Something the short way does not take: read it all again.
            self.i = at;
            values.truncate(had);
        }
        self.object(|p, name, sus| {
            let v = p.value(3)?;
            if problem.is_some() {
                return Ok(());
            }
            match v {
                Val::Null => {}
                Val::Num(n) if !n.f.is_finite() => note(problem, Reason::NonFinite),
                Val::Num(_) if !name_ok(&name, sus, limits.max_name_bytes) => note(problem, Reason::BadSignalName),
                Val::Num(_) if values.len() - start >= limits.max_signals_per_reading => {
                    note(problem, Reason::TooManySignals)
                }
                Val::Num(n) => values.push((name, n.f)),
                Val::Str(..) | Val::Other => note(problem, Reason::WrongType),
            }
            Ok(())
        })
    }

    /// The short way through a `values` object whose `{` is under the
    /// cursor, for the usual one: every name plain printable ASCII without
    /// escapes, every value a finite number, within the limits. Anything
    /// else gives `None` at once, and [`Parser::values`] reads the object
    /// again the full way; so this needs to check only what it takes, and
    /// what it takes reads the same both ways. It keeps its place in a
    /// local, not in `self`, so that it can stay in a register.
    #[inline(never)]
    fn plain_values(&mut self, values: &mut Vec<(Cow<'p, str>, f64)>, start: usize) -> Option<()> {
        let (b, s, limits) = (self.b, self.s, self.limits);
        let mut i = ws_at(b, self.i + 1);
        if b.get(i) == Some(&b'}') {
            self.i = i + 1;
            return Some(());
        }
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let from = i + 1;
            i = skip_plain_at(b, from);
            if b.get(i) != Some(&b'"') {
                return None;
            }
            // Both ends sit next to an ASCII quote: char boundaries.
            let name = s.get(from..i)?;
            i = ws_at(b, i + 1);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = ws_at(b, i + 1);
            let f = match short_number_at(b, i) {
                Some((f, next)) => {
                    i = next;
                    f
                }
                // Any other literal (or none: `number` refuses it).
                None => {
                    self.i = i;
                    let f = self.number().ok()?.f;
                    i = self.i;
                    f
                }
            };
            let full = values.len() - start >= limits.max_signals_per_reading;
            if !f.is_finite() || name.is_empty() || name.len() > limits.max_name_bytes || full {
                return None;
            }
            values.push((Cow::Borrowed(name), f));
            i = ws_at(b, i);
            match b.get(i) {
                Some(b',') => i = ws_at(b, i + 1),
                Some(b'}') => {
                    self.i = i + 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Any value at nesting `depth`; containers are checked and skipped.
    fn value(&mut self, depth: u32) -> Parse<Val<'p>> {
        match self.peek() {
            Some(b'"') => {
                let (s, sus) = self.string()?;
                Ok(Val::Str(s, sus))
            }
            Some(b'-' | b'0'..=b'9') => self.number().map(Val::Num),
            Some(b'n') => {
                self.literal(b"null")?;
                Ok(Val::Null)
            }
            Some(b't') => self.literal(b"true").map(|()| Val::Other),
            Some(b'f') => self.literal(b"false").map(|()| Val::Other),
            Some(b'N') => {
                self.literal(b"NaN")?;
                Ok(Val::Num(Num { f: f64::NAN, int: None }))
            }
            Some(b'I') => {
                self.literal(b"Infinity")?;
                Ok(Val::Num(Num { f: f64::INFINITY, int: None }))
            }
            Some(b'{') => {
                if depth > MAX_DEPTH {
                    return Err(Malformed);
                }
                self.object(|p, _, _| p.value(depth + 1).map(drop))?;
                Ok(Val::Other)
            }
            Some(b'[') => {
                if depth > MAX_DEPTH {
                    return Err(Malformed);
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Val::Other);
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Val::Other);
                        }
                        _ => return Err(Malformed),
                    }
                }
            }
            _ => Err(Malformed),
        }
    }

    /// Moves to the next byte that can end or complicate a string (see
    /// [`skip_plain_at`]).
    #[inline]
    fn skip_plain(&mut self) {
        self.i = skip_plain_at(self.b, self.i);
    }

    /// A string whose opening quote is under the cursor. Also says whether
    /// it may hold control characters (see [`name_ok`]).
    #[inline]
    fn string(&mut self) -> Parse<(Cow<'p, str>, bool)> {
        self.i += 1;
        let start = self.i;
        let mut suspicious = false;
        loop {
            self.skip_plain();
            match *self.b.get(self.i).ok_or(Malformed)? {
                b'"' => {
                    // Both ends sit next to an ASCII quote: char boundaries.
                    let s = &self.s[start..self.i];
                    self.i += 1;
                    return Ok((Cow::Borrowed(s), suspicious));
                }
                b'\\' => return self.escaped_string(start).map(|s| (Cow::Owned(s), true)),
                0..=0x1f => return Err(Malformed),
                c => suspicious |= c == 0x7f || c == 0xc2,
            }
            self.i += 1;
        }
    }

    /// The rest of a string from its first backslash (under the cursor).
    #[cold]
    fn escaped_string(&mut self, start: usize) -> Parse<String> {
        let mut out = String::with_capacity(self.i - start + 8);
        out.push_str(&self.s[start..self.i]);
        loop {
            match *self.b.get(self.i).ok_or(Malformed)? {
                b'"' => {
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    let e = *self.b.get(self.i + 1).ok_or(Malformed)?;
                    self.i += 2;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(Malformed),
                    };
                    out.push(c);
                }
                0..=0x1f => return Err(Malformed),
                _ => {
                    // A run of plain bytes; it starts after ASCII and stops at
                    // ASCII or the end, so both ends are char boundaries.
                    let run = self.i;
                    while let Some(c) = self.peek() {
                        if c == b'"' || c == b'\\' || c < 0x20 {
                            break;
                        }
                        self.i += 1;
                    }
                    out.push_str(&self.s[run..self.i]);
                }
            }
        }
    }

    fn hex4(&mut self) -> Parse<u32> {
        let digits = self.b.get(self.i..self.i + 4).ok_or(Malformed)?;
        let mut v = 0;
        for &d in digits {
            let x = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(Malformed),
            };
            v = v * 16 + u32::from(x);
        }
        self.i += 4;
        Ok(v)
    }

    /// After `\u`: one code point, a surrogate pair joined; lone surrogates
    /// are refused, as serde_json does.
    fn unicode_escape(&mut self) -> Parse<char> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) {
            if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                return Err(Malformed);
            }
            self.i += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(Malformed);
            }
            return char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)).ok_or(Malformed);
        }
        char::from_u32(hi).ok_or(Malformed)
    }

    /// Consumes a run of decimal digits, up to 8 at a time, and folds them
    /// into the mantissa `m` while it stays exact (`exact` turns false at
    /// the first run that would overflow it). Returns the digits consumed
    /// and the digits folded in.
    #[inline(always)]
    fn digits(&mut self, m: &mut u64, exact: &mut bool) -> (usize, usize) {
        let (start, mut folded) = (self.i, 0);
        loop {
            let (n, v) = digit_run(word_at(self.b, self.i));
            self.i += n;
            if *exact {
                match m.checked_mul(POW10_U64[n]).and_then(|x| x.checked_add(v)) {
                    Some(x) => {
                        *m = x;
                        folded += n;
                    }
                    None => *exact = false,
                }
            }
            if n < 8 {
                return (self.i - start, folded);
            }
        }
    }

    /// A number literal (JSON grammar), or `-Infinity`.
    #[inline]
    fn number(&mut self) -> Parse<Num> {
        let start = self.i;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.i += 1;
            if self.peek() == Some(b'I') {
                self.literal(b"Infinity")?;
                return Ok(Num { f: f64::NEG_INFINITY, int: None });
            }
        }
        // The mantissa accumulates exactly while it fits a u64; beyond that
        // the standard library parses the literal.
        let mut m: u64 = 0;
        let mut exact = true;
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits(&mut m, &mut exact);
            }
            _ => return Err(Malformed),
        }
        let mut frac_digits: i64 = 0;
        let mut is_int = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            is_int = false;
            let (seen, folded) = self.digits(&mut m, &mut exact);
            if seen == 0 {
                return Err(Malformed);
            }
            frac_digits = folded as i64;
        }
        let mut exp: i64 = 0;
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            is_int = false;
            let exp_neg = match self.peek() {
                Some(b'-') => {
                    self.i += 1;
                    true
                }
                Some(b'+') => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let first = self.i;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                exp = (exp * 10 + i64::from(d - b'0')).min(1_000_000);
                self.i += 1;
            }
            if self.i == first {
                return Err(Malformed);
            }
            if exp_neg {
                exp = -exp;
            }
        }
        // `-0` is negative zero, a float (as serde_json reads it), not an integer.
        let int = if is_int && exact && !(neg && m == 0) {
            if neg {
                0i64.checked_sub_unsigned(m)
            } else {
                i64::try_from(m).ok()
            }
        } else {
            None
        };
        // Clinger's fast path: an exact mantissa and an exact power of ten
        // give the correctly rounded result with one multiply or divide.
        let e10 = exp - frac_digits;
        let f = if exact && m <= (1u64 << 53) && (-22..=22).contains(&e10) {
            let v = m as f64;
            if e10 >= 0 {
                v * POW10[e10 as usize]
            } else {
                v / POW10[(-e10) as usize]
            }
        } else {
            // The grammar was checked above; the standard parser rounds
            // correctly and gives infinity on overflow.
            let v: f64 = self.s[start..self.i].parse().map_err(|_| Malformed)?;
            v.abs()
        };
        Ok(Num { f: if neg { -f } else { f }, int })
    }
}

#[cfg(test)]
mod tests;
