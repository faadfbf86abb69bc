use super::*;
use proptest::prelude::*;

const NOW: i64 = 1_795_256_103_250; // 2026-11-21T10:15:03.250Z

type Owned = Result<(String, i64, Vec<(String, f64)>), Reason>;

fn run_with(payload: &str, fallback: Option<&str>, limits: &DecodeLimits) -> Result<Vec<Owned>, Reason> {
    let d = decode(payload.as_bytes(), fallback, NOW, limits)?;
    Ok(d.iter()
        .map(|r| r.map(|r| (r.device_id.to_owned(), r.ts_ms, r.signals().map(|(k, v)| (k.to_owned(), v)).collect())))
        .collect())
}

fn run(payload: &str, fallback: Option<&str>) -> Result<Vec<Owned>, Reason> {
    run_with(payload, fallback, &DecodeLimits::default())
}

fn one(payload: &str) -> Owned {
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
    assert_eq!(r.2, vec![("Temperature".into(), 71.2), ("Accelerometer1RMS".into(), 0.43), ("Pressure".into(), 5.1)]);
}

#[test]
fn flat_form_epoch_millis_and_nulls() {
    let r = one(r#"{"ts": 1795256103250, "device_id": "p", "Volume Flow RateRMS": 32,
        "unit": "metric", "Temperature": null, "ok": true, "meta": {"a": [1, {"b": null}]}}"#)
    .unwrap();
    assert_eq!(r.1, NOW);
    assert_eq!(r.2, vec![("Volume Flow RateRMS".into(), 32.0)]);
}

#[test]
fn nested_form_ignores_top_level_numbers() {
    let r = one(r#"{"device_id": "p", "ts": 0, "seq": 5, "values": {"a": 1, "b": null}}"#).unwrap();
    assert_eq!(r.2, vec![("a".into(), 1.0)]);
    let r = one(r#"{"device_id": "p", "ts": 0, "seq": 5, "values": null}"#).unwrap();
    assert_eq!(r.2, vec![]);
}

#[test]
fn escaped_names_are_decoded() {
    let r = one(r#"{"device\u005fid": "p\u00fcmp", "ts": 0, "values": {"T\"1\\\/": 1.5, "\ud83d\ude00": 2}}"#).unwrap();
    assert_eq!(r.0, "pümp");
    assert_eq!(r.2, vec![("T\"1\\/".into(), 1.5), ("😀".into(), 2.0)]);
}

#[test]
fn a_repeated_name_is_passed_on_for_the_engine_to_settle() {
    let r = one(r#"{"device_id": "p", "ts": 0, "values": {"a": 1, "a": 2}}"#).unwrap();
    assert_eq!(r.2, vec![("a".into(), 1.0), ("a".into(), 2.0)]);
}

#[test]
fn device_from_the_source_when_the_payload_has_none() {
    let r = run(r#"{"ts": 0, "values": {"a": 1}}"#, Some("from-topic")).unwrap();
    assert_eq!(r[0].as_ref().unwrap().0, "from-topic");
    // The payload's own id wins.
    let r = run(r#"{"device_id": "own", "ts": 0, "values": {"a": 1}}"#, Some("from-topic")).unwrap();
    assert_eq!(r[0].as_ref().unwrap().0, "own");
    let r = run(r#"{"ts": 0, "values": {"x": 1}}"#, Some("")).unwrap();
    assert_eq!(r[0], Err(Reason::BadDeviceId));
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
        (r#"{"device_id": "a", "ts": 0,}"#, Reason::MalformedJson),
        (r#"{"device_id": "a", "ts": 01}"#, Reason::MalformedJson),
        (r#"{"device_id": "a", "ts": 0, "values": {"x": 1.}}"#, Reason::MalformedJson),
        (r#"{"device_id": "a", "ts": 0, "values": {"x": .5}}"#, Reason::MalformedJson),
        (r#"{"device_id": "a", "ts": 0, "values": {"x": 1e}}"#, Reason::MalformedJson),
        (r#"{"device_id": "a", "ts": 0, "values": {"x": +1}}"#, Reason::MalformedJson),
        (r#"{"device_id": "a", "ts": 0, "values": {"x": nul}}"#, Reason::MalformedJson),
        (r#"{"device_id": "a\x", "ts": 0}"#, Reason::MalformedJson),
        (r#"{"device_id": "\ud800", "ts": 0}"#, Reason::MalformedJson),
        (r#"{"device_id": "\udc00\ud800", "ts": 0}"#, Reason::MalformedJson),
        ("{\"device_id\": \"a\tb\", \"ts\": 0}", Reason::MalformedJson),
        ("", Reason::MalformedJson),
        ("   ", Reason::MalformedJson),
        ("\"just a string\"", Reason::NotAnObject),
        ("17", Reason::NotAnObject),
        ("null", Reason::NotAnObject),
        (r#"{"ts": 0, "values": {"x": 1}}"#, Reason::MissingDevice),
        (r#"{"device_id": null, "ts": 0, "values": {"x": 1}}"#, Reason::MissingDevice),
        (r#"{"device_id": "", "ts": 0, "values": {"x": 1}}"#, Reason::BadDeviceId),
        (r#"{"device_id": "a\nb", "ts": 0, "values": {"x": 1}}"#, Reason::BadDeviceId),
        (r#"{"device_id": "a\u007fb", "ts": 0, "values": {"x": 1}}"#, Reason::BadDeviceId),
        ("{\"device_id\": \"a\u{85}b\", \"ts\": 0, \"values\": {\"x\": 1}}", Reason::BadDeviceId),
        (r#"{"device_id": "a", "values": {"x": 1}}"#, Reason::MissingTime),
        (r#"{"device_id": "a", "ts": null, "values": {"x": 1}}"#, Reason::MissingTime),
        (r#"{}"#, Reason::MissingTime),
        (r#"{"device_id": "a", "ts": "2026-11-21 10:15:03", "values": {"x": 1}}"#, Reason::BadTime),
        (r#"{"device_id": "a", "ts": 1.5e12, "values": {"x": 1}}"#, Reason::BadTime),
        (r#"{"device_id": "a", "ts": 1795256103250.0, "values": {"x": 1}}"#, Reason::BadTime),
        (r#"{"device_id": "a", "ts": 99999999999999999999, "values": {"x": 1}}"#, Reason::BadTime),
        (r#"{"device_id": "a", "ts": 253402300800000, "values": {"x": 1}}"#, Reason::BadTime),
        (r#"{"device_id": "a", "ts": NaN, "values": {"x": 1}}"#, Reason::BadTime),
        (r#"{"device_id": "a", "ts": "2026-11-21T10:25:03.251Z", "values": {"x": 1}}"#, Reason::FutureTime),
        (r#"{"device_id": "a", "ts": 0, "values": {"x": NaN}}"#, Reason::NonFinite),
        (r#"{"device_id": "a", "ts": 0, "values": {"x": -Infinity}}"#, Reason::NonFinite),
        (r#"{"device_id": "a", "ts": 0, "x": Infinity}"#, Reason::NonFinite),
        (r#"{"device_id": "a", "ts": 0, "values": {"x": 1e999}}"#, Reason::NonFinite),
        (r#"{"device_id": "a", "ts": 0, "values": {"x": -12345678901234567890e300}}"#, Reason::NonFinite),
        (r#"{"device_id": 7, "ts": 0, "values": {"x": 1}}"#, Reason::WrongType),
        (r#"{"device_id": "a", "ts": true, "values": {"x": 1}}"#, Reason::WrongType),
        (r#"{"device_id": "a", "ts": 0, "values": [1, 2]}"#, Reason::WrongType),
        (r#"{"device_id": "a", "ts": 0, "values": 3}"#, Reason::WrongType),
        (r#"{"device_id": "a", "ts": 0, "values": {"x": "1.5"}}"#, Reason::WrongType),
        (r#"{"device_id": "a", "ts": 0, "values": {"x": {"v": 1}}}"#, Reason::WrongType),
        (r#"{"device_id": "a", "ts": 0, "values": {"x": false}}"#, Reason::WrongType),
        (r#"{"device_id": "a", "ts": 0, "values": {"": 1}}"#, Reason::BadSignalName),
        (r#"{"device_id": "a", "ts": 0, "values": {"x\u0000": 1}}"#, Reason::BadSignalName),
        (r#"{"device_id": "a", "ts": 0, "\u0001": 1}"#, Reason::BadSignalName),
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
    // Every reason but the window engine's own is reachable from a payload.
    let seen: std::collections::BTreeSet<Reason> = cases.iter().map(|c| c.1).collect();
    for r in Reason::ALL {
        assert!(
            seen.contains(r) || matches!(r, Reason::TooLarge | Reason::TooManySignals | Reason::DeviceLimit),
            "{r}"
        );
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
        assert_eq!(run_with(p, None, &limits).unwrap()[0], Err(Reason::TooManySignals), "{p}");
    }
    // Nulls do not count against the limit.
    let p = r#"{"device_id": "a", "ts": 0, "values": {"x": 1, "y": null, "z": 3}}"#;
    assert!(run_with(p, None, &limits).unwrap()[0].is_ok());
    let long = format!(r#"{{"device_id": "{}", "ts": 0}}"#, "d".repeat(257));
    assert_eq!(one(&long), Err(Reason::BadDeviceId));
}

#[test]
fn bare_nan_only_spoils_its_own_reading() {
    let r = run(
        r#"[{"device_id": "a", "ts": 0, "values": {"x": NaN, "note": 1}},
            {"device_id": "b", "ts": 0, "values": {"x": 2, "label": "NaN inside a string"}},
            {"device_id": "c", "ts": 3, "y": 2}]"#,
        None,
    )
    .unwrap();
    assert_eq!(r[0], Err(Reason::NonFinite));
    assert_eq!(r[1], Err(Reason::WrongType));
    assert_eq!(r[2].as_ref().unwrap().0, "c");
}

#[test]
fn garbage_is_malformed_never_a_panic() {
    for p in [
        "{é NaN}",
        "NaNé",
        "[\"é\", NaN, é]",
        "\u{fffd}Infinity",
        "{\"a\": -Infinity",
        "-",
        "-I",
        "[",
        "{",
        "{\"",
        "{\"a\"",
        "{\"a\":",
        "[1,",
        "\"\\u12",
        "\"\\ud83d\\u",
        "tru",
        "[1 2]",
        "{\"a\" 1}",
        "{1: 2}",
    ] {
        assert_eq!(run(p, None).err(), Some(Reason::MalformedJson), "{p}");
    }
    assert_eq!(decode(&[0xff, b'{', b'}'], None, NOW, &DecodeLimits::default()).err(), Some(Reason::MalformedJson));
}

#[test]
fn nesting_is_bounded() {
    let deep = format!(r#"{{"device_id": "a", "ts": 0, "meta": {}1{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(run(&deep, None).err(), Some(Reason::MalformedJson));
    let fine = format!(r#"{{"device_id": "a", "ts": 0, "meta": {}1{}}}"#, "[".repeat(100), "]".repeat(100));
    assert!(one(&fine).is_ok());
}

#[test]
fn a_decoder_reuses_its_buffers_across_payloads() {
    let mut d = Decoder::new(DecodeLimits::default());
    for i in 0..3 {
        let p = format!(r#"[{{"device_id":"a","ts":{i},"x":{i}}},{{"device_id":"b","ts":{i},"y":1,"z":2}}]"#);
        let out = d.decode(p.as_bytes(), None, NOW).unwrap();
        let got: Vec<_> = out.iter().map(|r| r.unwrap().values.len()).collect();
        assert_eq!(got, [1, 2]);
        d.recycle(out);
    }
    assert!(d.values.capacity() >= 3 && d.items.capacity() >= 2);
}

#[test]
fn empty_batch_is_empty() {
    assert!(run("[]", None).unwrap().is_empty());
    assert!(run(" [ ] ", None).unwrap().is_empty());
}

/// The number `text` is, read both at the end of a payload and with more
/// payload after it (the two ways runs of digits are read); they must agree.
fn number_of(text: &str) -> Option<Num> {
    let limits = DecodeLimits::default();
    let read = |s: &str| {
        let mut p = Parser { s, b: s.as_bytes(), i: 0, limits: &limits };
        let n = p.number().ok()?;
        (p.i == text.len()).then_some(n)
    };
    let followed_text = format!("{text},\"x\":12345678}}");
    let (alone, followed) = (read(text), read(&followed_text));
    assert_eq!(
        alone.map(|n| (n.f.to_bits(), n.int)),
        followed.map(|n| (n.f.to_bits(), n.int)),
        "{text} alone and followed"
    );
    // The short way, where it takes the literal, reads it the same.
    for t in [text, followed_text.as_str()] {
        if let Some((f, end)) = short_number_at(t.as_bytes(), 0) {
            assert_eq!((Some(f.to_bits()), end), (alone.map(|n| n.f.to_bits()), text.len()), "{t} the short way");
        }
    }
    alone
}

#[test]
fn numbers_at_the_edges() {
    assert_eq!(number_of("0").map(|n| (n.f, n.int)), Some((0.0, Some(0))));
    assert!(number_of("-0").is_some_and(|n| n.f == 0.0 && n.f.is_sign_negative() && n.int.is_none()));
    assert_eq!(number_of("-9223372036854775808").and_then(|n| n.int), Some(i64::MIN));
    assert_eq!(number_of("9223372036854775808").and_then(|n| n.int), None);
    assert_eq!(number_of("9007199254740993").map(|n| n.f), Some(9007199254740992.0));
    assert_eq!(number_of("1e22").map(|n| n.f), Some(1e22));
    assert_eq!(number_of("1e23").map(|n| n.f), Some(1e23));
    // The largest subnormal's neighbour, a classic hard case for parsers.
    assert_eq!(number_of("2.2250738585072011e-308").map(|n| n.f), Some(f64::from_bits(0x000f_ffff_ffff_ffff)));
    assert_eq!(number_of("1e-400").map(|n| n.f), Some(0.0));
    assert!(number_of("1e400").is_some_and(|n| n.f == f64::INFINITY));
    assert_eq!(number_of("0.1").map(|n| n.f), Some(0.1));
    assert_eq!(number_of("123456789012345678901234567890").map(|n| n.f), Some(1.2345678901234568e29));
    assert_eq!(number_of("1E+2").map(|n| (n.f, n.int)), Some((100.0, None)));
    // Runs of digits across the 8-byte steps, and u64's edge.
    assert_eq!(number_of("12345678").and_then(|n| n.int), Some(12_345_678));
    assert_eq!(number_of("1234567890123456").and_then(|n| n.int), Some(1_234_567_890_123_456));
    assert_eq!(number_of("-00").map(|n| n.f), None);
    assert_eq!(number_of("0.0000000012345678").map(|n| n.f), Some(0.0000000012345678));
    assert_eq!(number_of("18446744073709551615").map(|n| (n.f, n.int)), Some((1.8446744073709552e19, None)));
    assert_eq!(number_of("18446744073709551616.5").map(|n| n.f), Some(1.8446744073709552e19));
    for bad in ["1.", "1.e5", "-", "1e", "1e+", ".5", "-.5"] {
        assert!(number_of(bad).is_none(), "{bad}");
    }
}

/// A number literal from its parts: sign, integer digits, fraction digits
/// (after a `.`), exponent (with its `e`).
fn literal(neg: bool, int: &str, frac: Option<&str>, exp: Option<&str>) -> String {
    let sign = if neg { "-" } else { "" };
    let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
    format!("{sign}{int}{frac}{}", exp.unwrap_or_default())
}

proptest! {
    /// Every literal the JSON grammar allows parses to the correctly
    /// rounded value: the same as the standard library's parser.
    #[test]
    fn numbers_are_correctly_rounded(
        neg in any::<bool>(),
        int in "(0|[1-9][0-9]{0,24})",
        frac in proptest::option::of("[0-9]{1,24}"),
        exp in proptest::option::of((any::<bool>(), 0i32..330)),
    ) {
        let e = exp.map(|(en, e)| format!("e{}{e}", if en { "-" } else { "" }));
        let s = literal(neg, &int, frac.as_deref(), e.as_deref());
        let want: f64 = s.parse().unwrap();
        let got = number_of(&s).unwrap();
        prop_assert_eq!(got.f.to_bits(), want.to_bits(), "{}", s);
        if frac.is_none() && exp.is_none() {
            let want_int = if s == "-0" { None } else { s.parse::<i64>().ok() };
            prop_assert_eq!(got.int, want_int, "{}", s);
        }
    }
}

proptest! {
    /// Literals of the usual shape, which the short way takes, and their
    /// near misses (more digits, leading zeros, exponents), which it must
    /// leave to the full reader or read the same.
    #[test]
    fn short_numbers_read_as_the_full_way(
        neg in any::<bool>(),
        int in "[0-9]{1,9}",
        frac in proptest::option::of("[0-9]{0,9}"),
        exp in proptest::option::of("[eE][-+]?[0-9]{1,2}"),
    ) {
        let s = literal(neg, &int, frac.as_deref(), exp.as_deref());
        // Compared inside `number_of` whenever the full reader takes it.
        if number_of(&s).is_none() {
            prop_assert!(short_number_at(s.as_bytes(), 0).is_none(), "{}", s);
            let followed = format!("{s},");
            prop_assert!(short_number_at(followed.as_bytes(), 0).is_none(), "{}", s);
        }
    }
}

// Differential test against the serde_json-based oracle.

fn json_string(s: &str, escape_all: bool) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || (escape_all && !c.is_ascii_alphanumeric()) => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[A-Za-z][A-Za-z0-9 ._-]{0,12}",
        1 => Just(String::new()),
        1 => "[a-z]{1,3}[\u{0}-\u{1f}\u{7f}\u{85}é😀][a-z]{0,3}",
        1 => Just("device_id".to_owned()),
        1 => Just("ts".to_owned()),
        1 => "[a-z]{17,20}",
    ]
}

fn arb_number() -> impl Strategy<Value = String> {
    prop_oneof![
        (-1e6..1e6f64).prop_map(|v| format!("{v}")),
        (-1e6..1e6f64).prop_map(|v| format!("{v:.6}")),
        (-1e6..1e6f64).prop_map(|v| format!("{v:e}")),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        Just("-0".to_owned()),
        Just("1e-300".to_owned()),
        Just("1.7976931348623157e308".to_owned()),
    ]
}

fn arb_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => arb_number(),
        1 => Just("null".to_owned()),
        1 => Just("true".to_owned()),
        1 => arb_name().prop_map(|s| json_string(&s, false)),
        1 => Just(r#"{"a": [1, {"b": null}], "c": "d"}"#.to_owned()),
        1 => Just("[]".to_owned()),
    ]
}

fn arb_ts() -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(
        0.9,
        prop_oneof![
            (0i64..NOW + 10 * 60_000).prop_map(|ms| ms.to_string()),
            (0i64..NOW + 10 * 60_000).prop_map(|ms| json_string(&crate::time::format_rfc3339(ms), false)),
            Just("\"2026-11-21T10:15:03+02:00\"".to_owned()),
            Just("\"2026-02-30T00:00:00Z\"".to_owned()),
            Just("1.5".to_owned()),
            Just("null".to_owned()),
            Just("[1]".to_owned()),
            Just("-9223372036854775809".to_owned()),
        ],
    )
}

fn arb_reading() -> impl Strategy<Value = String> {
    let device = proptest::option::weighted(
        0.9,
        prop_oneof![
            6 => arb_name().prop_map(|s| json_string(&s, false)),
            1 => arb_name().prop_map(|s| json_string(&s, true)),
            1 => Just("7".to_owned()),
            1 => Just("null".to_owned()),
        ],
    );
    let entries = prop::collection::vec((arb_name(), arb_value(), any::<bool>()), 0..7);
    (device, arb_ts(), entries, any::<bool>(), prop_oneof![Just(""), Just(" "), Just("\n\t ")]).prop_map(
        |(device, ts, entries, nested, ws)| {
            let mut fields = Vec::new();
            if let Some(d) = device {
                fields.push(format!("\"device_id\":{ws}{d}"));
            }
            if let Some(t) = ts {
                fields.push(format!("\"ts\":{ws}{t}"));
            }
            let members: Vec<String> =
                entries.iter().map(|(k, v, esc)| format!("{}:{ws}{v}", json_string(k, *esc))).collect();
            if nested {
                fields.push(format!("\"values\":{ws}{{{}}}", members.join(&format!(",{ws}"))));
            } else {
                fields.extend(members);
            }
            format!("{{{ws}{}{ws}}}", fields.join(&format!(",{ws}")))
        },
    )
}

fn arb_payload() -> impl Strategy<Value = String> {
    let base = prop_oneof![
        3 => arb_reading(),
        2 => prop::collection::vec(prop_oneof![5 => arb_reading(), 1 => arb_value()], 0..5)
            .prop_map(|v| format!("[{}]", v.join(", "))),
        1 => arb_value(),
    ];
    let edits = prop::collection::vec(
        (any::<prop::sample::Index>(), 0u8..3, prop::sample::select(&b"{}[]\",:\\ 0-eE.nNIu"[..])),
        0..3,
    );
    (base, edits).prop_map(|(text, edits)| {
        let mut b = text.into_bytes();
        for (at, kind, c) in edits {
            if b.is_empty() {
                break;
            }
            let i = at.index(b.len());
            match kind {
                0 => {
                    b.remove(i);
                }
                1 => b.insert(i, c),
                _ => b[i] = c,
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    })
}

/// True when the text holds a number literal too large for f64: serde_json
/// calls the payload malformed, this reader calls the value non-finite.
fn has_overflowing_literal(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')))
        .filter_map(|t| t.trim_start_matches('-').parse::<f64>().ok())
        .any(f64::is_infinite)
}

fn same(a: &Result<Vec<Owned>, Reason>, b: &Result<Vec<Owned>, Reason>) -> bool {
    // serde_json's default float parser may be one ulp off the correctly rounded value.
    let close = |x: f64, y: f64| x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs());
    match (a, b) {
        (Err(x), Err(y)) => x == y,
        (Ok(x), Ok(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| match (p, q) {
                    (Ok(p), Ok(q)) => {
                        p.0 == q.0
                            && p.1 == q.1
                            && p.2.len() == q.2.len()
                            && p.2.iter().zip(&q.2).all(|(u, v)| u.0 == v.0 && close(u.1, v.1))
                    }
                    (p, q) => p == q,
                })
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_the_serde_oracle(text in arb_payload(), fallback in proptest::option::of(arb_name())) {
        let limits = DecodeLimits { max_signals_per_reading: 4, max_name_bytes: 16, ..Default::default() };
        let fallback = fallback.as_deref();
        let ours = run_with(&text, fallback, &limits);
        let oracle = serde_ref::decode_ref(text.as_bytes(), fallback, NOW, &limits);
        if ours != oracle && oracle == Err(Reason::MalformedJson) && has_overflowing_literal(&text) {
            return Ok(());
        }
        prop_assert!(same(&ours, &oracle), "payload {:?}\n ours   {:?}\n oracle {:?}", text, ours, oracle);
    }
}

fn must_stop(b: u8) -> bool {
    b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b)
}

proptest! {
    /// The word-at-a-time test finds exactly the first byte to stop at.
    #[test]
    fn stop_bytes_finds_the_first_stop(bytes in any::<[u8; 8]>()) {
        let mask = stop_bytes(u64::from_le_bytes(bytes));
        match bytes.iter().position(|&b| must_stop(b)) {
            Some(i) => prop_assert_eq!(mask.trailing_zeros() / 8, i as u32, "{:?}", bytes),
            None => prop_assert_eq!(mask, 0, "{:?}", bytes),
        }
    }

    /// The SSE2 test agrees with the definition on 16 bytes.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn stop_bytes_16_finds_every_stop(bytes in any::<[u8; 16]>()) {
        let mask = stop_bytes_16(&bytes);
        for (k, &b) in bytes.iter().enumerate() {
            prop_assert_eq!(mask >> k & 1 == 1, must_stop(b), "byte {} of {:?}", k, bytes);
        }
    }

    /// The word-at-a-time digit reader agrees with reading digit by digit.
    #[test]
    fn digit_run_reads_the_leading_digits(bytes in prop::array::uniform8(prop_oneof![b'0'..=b'9', any::<u8>()])) {
        let n = bytes.iter().position(|b| !b.is_ascii_digit()).unwrap_or(8);
        let want = bytes[..n].iter().fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
        prop_assert_eq!(digit_run(u64::from_le_bytes(bytes)), (n, want), "{:?}", bytes);
    }

    #[test]
    fn stop_bytes_on_text(s in "[ -~é°ü\u{7f}\u{85}]{8}") {
        let chunk: [u8; 8] = s.as_bytes()[..8].try_into().unwrap();
        let mask = stop_bytes(u64::from_le_bytes(chunk));
        let first = chunk.iter().position(|&b| must_stop(b)).map_or(8, |i| i as u32);
        prop_assert_eq!(mask.trailing_zeros().min(64) / 8, first, "{:?}", chunk);
    }
}
