use super::*;

const MIN: i64 = 60_000;

fn cfg(raise_after: u32, clear_after: u32) -> PolicyConfig {
    PolicyConfig { threshold: 0.8, warning: None, raise_after, clear_after, hysteresis: 0.1 }
}

/// Feeds window `i` (1-minute windows) with probability `p` for device "pump-7".
fn feed(policy: &mut Policy, i: i64, p: f64) -> Vec<Alert> {
    let features = || Features::from_iter([("Temperature.std".to_owned(), 1.2)]);
    let w = WindowScore {
        device_id: "pump-7",
        start_ms: i * MIN,
        end_ms: (i + 1) * MIN,
        probability: p,
        origin: Origin::Model,
        model: "pump-fault",
        model_version: "3",
        features: &features,
        contributions: &Features::default,
    };
    policy.observe(&w, (i + 1) * MIN + 500)
}

fn statuses(records: &[Alert]) -> Vec<(Status, Severity)> {
    records.iter().map(|a| (a.status, a.severity)).collect()
}

#[test]
fn one_bad_window_opens_and_two_good_ones_clear() {
    let mut p = Policy::new(cfg(1, 2));
    assert!(feed(&mut p, 0, 0.2).is_empty());
    let opened = feed(&mut p, 1, 0.93);
    assert_eq!(statuses(&opened), [(Status::Open, Severity::Critical)]);
    let a = &opened[0];
    assert_eq!(a.alert_id, "pump-7/1970-01-01T00:01:00Z");
    assert_eq!((a.window_start_ms, a.window_end_ms, a.raised_at_ms), (MIN, 2 * MIN, 2 * MIN + 500));
    assert_eq!((a.fault_probability, a.threshold, a.message.as_str()), (0.93, 0.8, "High risk of failure"));
    assert_eq!(p.open_alerts().count(), 1);
    // The records carry the window's feature values; the state keeps none.
    assert_eq!(a.features.len(), 1);
    assert!(p.open_alerts().all(|a| a.features.is_empty()));
    assert!(feed(&mut p, 2, 0.85).is_empty(), "still bad: nothing new");
    assert!(feed(&mut p, 3, 0.1).is_empty(), "one good window is not enough");
    let cleared = feed(&mut p, 4, 0.1);
    assert_eq!(statuses(&cleared), [(Status::Cleared, Severity::Critical)]);
    assert_eq!(cleared[0].alert_id, a.alert_id, "same alert, new record");
    assert_eq!(cleared[0].features.len(), 1);
    assert_eq!(p.open_alerts().count(), 0);
    // A new episode is a new alert.
    let again = feed(&mut p, 5, 0.9);
    assert_eq!(again[0].alert_id, "pump-7/1970-01-01T00:05:00Z");
    assert_eq!(p.counters().raised, [0, 2]);
    assert_eq!(p.counters().cleared, 1);
}

#[test]
fn raise_after_needs_consecutive_bad_windows() {
    let mut p = Policy::new(cfg(3, 2));
    for (i, prob) in [0.9, 0.9, 0.5, 0.9, 0.9].into_iter().enumerate() {
        assert!(feed(&mut p, i as i64, prob).is_empty(), "window {i}");
    }
    let opened = feed(&mut p, 5, 0.81);
    assert_eq!(statuses(&opened), [(Status::Open, Severity::Critical)]);
    assert_eq!(opened[0].window_start_ms, 5 * MIN, "the window that opened it");
}

#[test]
fn a_score_hovering_at_the_threshold_does_not_flap() {
    let mut p = Policy::new(cfg(1, 2));
    let mut records = Vec::new();
    for i in 0..200 {
        records.extend(feed(&mut p, i, if i % 2 == 0 { 0.81 } else { 0.79 }));
    }
    assert_eq!(statuses(&records), [(Status::Open, Severity::Critical)], "0.79 is inside the hysteresis: no clear");
    // Dipping below the clear level once at a time never clears with clear_after = 2.
    let mut p = Policy::new(cfg(1, 2));
    let mut records = Vec::new();
    for i in 0..200 {
        records.extend(feed(&mut p, i, if i % 2 == 0 { 0.85 } else { 0.65 }));
    }
    assert_eq!(records.len(), 1);
}

#[test]
fn severity_bands_and_escalation_in_place() {
    let mut p = Policy::new(PolicyConfig { warning: Some(0.5), ..cfg(1, 2) });
    let opened = feed(&mut p, 0, 0.6);
    assert_eq!(statuses(&opened), [(Status::Open, Severity::Warning)]);
    assert_eq!((opened[0].threshold, opened[0].message.as_str()), (0.5, "Elevated risk of failure"));
    assert!(feed(&mut p, 1, 0.7).is_empty());
    let worse = feed(&mut p, 2, 0.9);
    assert_eq!(statuses(&worse), [(Status::Open, Severity::Critical)]);
    assert_eq!(worse[0].alert_id, opened[0].alert_id, "raised in place");
    assert_eq!(worse[0].features.len(), 1);
    assert!(p.open_alerts().all(|a| a.features.is_empty()));
    assert_eq!((worse[0].threshold, worse[0].fault_probability), (0.8, 0.9));
    assert!(feed(&mut p, 3, 0.95).is_empty(), "already critical");
    assert!(feed(&mut p, 4, 0.6).is_empty(), "severity does not fall back while open");
    // Clearing is relative to the lowest band: below 0.5 - 0.1.
    assert!(feed(&mut p, 5, 0.45).is_empty() && feed(&mut p, 6, 0.45).is_empty());
    feed(&mut p, 7, 0.3);
    assert_eq!(statuses(&feed(&mut p, 8, 0.3)), [(Status::Cleared, Severity::Critical)]);
    assert_eq!(p.counters().raised, [1, 1]);
}

#[test]
fn acknowledged_alerts_stay_until_they_clear() {
    let mut p = Policy::new(cfg(1, 1));
    let id = feed(&mut p, 0, 0.9)[0].alert_id.clone();
    let acked = p.acknowledge(&id, "maria", Some("bearing ordered"), 99).unwrap();
    assert_eq!(acked.status, Status::Acknowledged);
    assert_eq!((acked.acknowledged_by.as_deref(), acked.comment.as_deref()), (Some("maria"), Some("bearing ordered")));
    assert_eq!(p.open_alerts().next().map(|a| a.status), Some(Status::Acknowledged));
    assert!(feed(&mut p, 1, 0.95).is_empty(), "still bad, still acknowledged");
    let cleared = feed(&mut p, 2, 0.1);
    assert_eq!(cleared[0].status, Status::Cleared);
    assert_eq!(cleared[0].acknowledged_by.as_deref(), Some("maria"));
    assert_eq!(p.acknowledge(&id, "maria", None, 100), Err(AckError::NotOpen(id.clone())));
    assert_eq!(p.acknowledge("pump-7/nope", "x", None, 100), Err(AckError::NotOpen("pump-7/nope".into())));
}

#[test]
fn late_updates_count_in_window_order() {
    let mut p = Policy::new(cfg(2, 2));
    assert!(feed(&mut p, 0, 0.9).is_empty());
    assert!(feed(&mut p, 1, 0.2).is_empty());
    assert!(feed(&mut p, 2, 0.9).is_empty());
    // Window 1 is updated by late readings: now windows 1 and 2 are a bad streak.
    let opened = feed(&mut p, 1, 0.85);
    assert_eq!(statuses(&opened), [(Status::Open, Severity::Critical)]);
    assert_eq!(opened[0].window_start_ms, 2 * MIN, "the newest window of the streak");
    // An update of a window older than the streaks look at changes nothing.
    feed(&mut p, 3, 0.9);
    feed(&mut p, 4, 0.9);
    assert!(feed(&mut p, 0, 0.1).is_empty());
    assert_eq!(p.counters().stale, 1);
    // An update that turns the newest window good counts toward clearing.
    feed(&mut p, 5, 0.1);
    assert_eq!(statuses(&feed(&mut p, 4, 0.1)), [(Status::Cleared, Severity::Critical)]);
}

#[test]
fn unscored_windows_are_counted_not_judged() {
    let mut p = Policy::new(cfg(1, 1));
    assert!(feed(&mut p, 0, f64::NAN).is_empty());
    assert_eq!(p.counters().unscored, 1);
    assert_eq!(p.open_alerts().count(), 0);
}

#[test]
fn silent_devices_get_an_alert_that_clears_when_they_report() {
    let mut p = Policy::new(cfg(1, 2));
    feed(&mut p, 0, 0.1);
    let a = p.silent("pump-7", MIN, 20 * MIN, "pump-fault", "3").unwrap();
    assert_eq!(
        (a.status, a.severity, a.origin, a.message.as_str()),
        (Status::Open, Severity::Warning, Origin::Silence, "device silent")
    );
    assert_eq!(a.alert_id, "pump-7/1970-01-01T00:01:00Z");
    assert!(a.to_json()["fault_probability"].is_null());
    assert!(p.silent("pump-7", MIN, 21 * MIN, "pump-fault", "3").is_none(), "one alert at a time");
    // It comes back with a bad window: the silence clears and a fault alert opens.
    let records = feed(&mut p, 30, 0.9);
    assert_eq!(
        records.iter().map(|a| (a.origin, a.status)).collect::<Vec<_>>(),
        [(Origin::Silence, Status::Cleared), (Origin::Model, Status::Open)]
    );
    // A device with an open fault alert that falls silent keeps that alert.
    assert!(p.silent("pump-7", 31 * MIN, 50 * MIN, "pump-fault", "3").is_none());
}

#[test]
fn state_survives_a_restart() {
    let mut p = Policy::new(cfg(2, 2));
    feed(&mut p, 0, 0.9);
    let saved = serde_json::to_string(p.device_state("pump-7").unwrap()).unwrap();
    let mut restarted = Policy::new(cfg(2, 2));
    restarted.restore("pump-7", serde_json::from_str(&saved).unwrap());
    let opened = feed(&mut restarted, 1, 0.9);
    assert_eq!(statuses(&opened), [(Status::Open, Severity::Critical)], "the streak carried over");
    // The alert itself survives too, with its id.
    let saved = serde_json::to_string(restarted.device_state("pump-7").unwrap()).unwrap();
    let mut again = Policy::new(cfg(2, 2));
    again.restore("pump-7", serde_json::from_str(&saved).unwrap());
    assert_eq!(again.open_alerts().next().map(|a| a.alert_id.as_str()), Some(opened[0].alert_id.as_str()));
    feed(&mut again, 2, 0.1);
    assert_eq!(feed(&mut again, 3, 0.1)[0].alert_id, opened[0].alert_id);
}

#[test]
fn json_has_the_spec_fields() {
    let mut p = Policy::new(cfg(1, 1));
    let a = feed(&mut p, 10, 0.93).remove(0);
    let j = a.to_json();
    for key in [
        "alert_id",
        "device_id",
        "status",
        "severity",
        "fault_probability",
        "threshold",
        "window_start",
        "window_end",
        "model",
        "model_version",
        "message",
        "raised_at",
        "features",
    ] {
        assert!(j.get(key).is_some(), "{key} missing in {j}");
    }
    assert_eq!(j["status"], "open");
    assert_eq!(j["severity"], "critical");
    assert_eq!(j["window_start"], "1970-01-01T00:10:00Z");
    assert_eq!(j["window_end"], "1970-01-01T00:11:00Z");
    assert_eq!(j["raised_at"], "1970-01-01T00:11:00.500Z");
    assert_eq!(j["features"]["Temperature.std"], 1.2);
}

#[test]
fn features_are_stored_as_name_value_pairs() {
    let pairs = vec![("a.mean".to_owned(), 1.5), ("a.std".to_owned(), f64::NAN)];
    let names: std::sync::Arc<[String]> = pairs.iter().map(|(k, _)| k.clone()).collect();
    // Extra values are left out.
    let f = Features::new(names, [1.5, f64::NAN, 9.0]);
    assert_eq!(f.len(), 2);
    // The same bytes as the `Vec<(String, f64)>` older stores hold, both ways.
    let old = postcard::to_allocvec(&pairs).unwrap();
    assert_eq!(postcard::to_allocvec(&f).unwrap(), old);
    let back: Features = postcard::from_bytes(&old).unwrap();
    assert_eq!(
        back.iter().map(|(k, v)| (k.to_owned(), v.to_bits())).collect::<Vec<_>>(),
        vec![("a.mean".to_owned(), 1.5f64.to_bits()), ("a.std".to_owned(), f64::NAN.to_bits())]
    );
}

#[test]
fn baseline_alerts_carry_their_origin_and_contributions() {
    let mut p = Policy::new(cfg(1, 1));
    let features = || Features::from_iter([("Temperature.mean".to_owned(), 71.0)]);
    let shares = || Features::from_iter([("Temperature.mean".to_owned(), 0.9), ("Pressure.mean".to_owned(), 0.1)]);
    let w = WindowScore {
        device_id: "pump-7",
        start_ms: 0,
        end_ms: MIN,
        probability: 0.9,
        origin: Origin::Baseline,
        model: "baseline",
        model_version: "2",
        features: &features,
        contributions: &shares,
    };
    let a = p.observe(&w, MIN).remove(0);
    assert_eq!((a.origin, a.model.as_str(), a.model_version.as_str()), (Origin::Baseline, "baseline", "2"));
    assert_eq!(a.message, "Far from this machine's learnt normal");
    let j = a.to_json();
    assert_eq!(j["origin"], "baseline");
    assert_eq!(j["contributions"]["Temperature.mean"], 0.9);
    // A model alert has no contributions in its JSON.
    let mut q = Policy::new(cfg(1, 1));
    assert!(feed(&mut q, 0, 0.9)[0].to_json().get("contributions").is_none());
}

#[test]
fn records_stored_before_contributions_existed_still_decode() {
    let mut p = Policy::new(cfg(1, 1));
    let a = feed(&mut p, 3, 0.93).remove(0);
    let new = postcard::to_allocvec(&a).unwrap();
    // The empty contributions are the record's last byte (length 0).
    assert_eq!(new.last(), Some(&0));
    let old = &new[..new.len() - 1];
    assert_eq!(postcard::from_bytes::<Alert>(old).unwrap(), a);
    // Likewise a device state whose open alert was stored by an older version.
    let st = p.device_state("pump-7").unwrap();
    let new = postcard::to_allocvec(st).unwrap();
    let back: DeviceState = postcard::from_bytes(&new[..new.len() - 1]).unwrap();
    assert_eq!(back.current().map(|a| &a.alert_id), st.current().map(|a| &a.alert_id));
}

#[test]
fn an_alert_head_reads_the_first_fields_of_a_stored_record() {
    let mut p = Policy::new(cfg(1, 1));
    let raised = feed(&mut p, 3, 0.93).remove(0);
    let acked = p.acknowledge(&raised.alert_id, "ana", Some("bearing checked"), 7 * MIN).unwrap();
    for a in [raised, acked] {
        let bytes = postcard::to_allocvec(&a).unwrap();
        let h: AlertHead<'_> = postcard::from_bytes(&bytes).unwrap();
        let want = AlertHead {
            alert_id: &a.alert_id,
            device_id: &a.device_id,
            status: a.status,
            severity: a.severity,
            origin: a.origin,
            fault_probability: a.fault_probability,
            threshold: a.threshold,
            window_start_ms: a.window_start_ms,
            window_end_ms: a.window_end_ms,
            model: &a.model,
            model_version: &a.model_version,
            message: &a.message,
            raised_at_ms: a.raised_at_ms,
            updated_at_ms: a.updated_at_ms,
        };
        assert_eq!(h, want);
    }
}

/// The JSON as it was built before [`Alert::to_json_string`]: a `Value`,
/// whose maps sort their keys. The text written straight from the record
/// must not differ from it.
fn json_through_value(a: &Alert) -> serde_json::Value {
    use crate::time::format_rfc3339 as t;
    let features: serde_json::Map<String, serde_json::Value> =
        a.features.iter().filter(|(_, v)| v.is_finite()).map(|(k, v)| (k.to_owned(), serde_json::json!(v))).collect();
    let mut j = serde_json::json!({
        "alert_id": a.alert_id,
        "device_id": a.device_id,
        "status": a.status,
        "severity": a.severity,
        "origin": a.origin,
        "fault_probability": if a.fault_probability.is_finite() { serde_json::json!(a.fault_probability) } else { serde_json::Value::Null },
        "threshold": a.threshold,
        "window_start": t(a.window_start_ms),
        "window_end": t(a.window_end_ms),
        "model": a.model,
        "model_version": a.model_version,
        "message": a.message,
        "raised_at": t(a.raised_at_ms),
        "updated_at": t(a.updated_at_ms),
        "acknowledged_by": a.acknowledged_by,
        "comment": a.comment,
        "features": features,
    });
    if !a.contributions.is_empty() {
        let c: serde_json::Map<String, serde_json::Value> =
            a.contributions.iter().map(|(k, v)| (k.to_owned(), serde_json::json!(v))).collect();
        j["contributions"] = serde_json::Value::Object(c);
    }
    j
}

mod written_json {
    use super::*;
    use proptest::prelude::*;

    /// Any value, the ones JSON has no number for included.
    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => any::<f64>(),
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(-0.0),
            2 => -1.0e3..1.0e3f64,
        ]
    }

    /// Few names, so that some repeat, in any order.
    fn features() -> impl Strategy<Value = Features> {
        proptest::collection::vec(("[a-d]{1,2}(\\.[a-c])?", value()), 0..12)
            .prop_map(|pairs| pairs.into_iter().collect())
    }

    prop_compose! {
        fn alert()(
            ids in ("\\PC{0,12}", "[ -~\\t\\n\"\\\\é☃]{0,12}", "\\PC{0,20}"),
            status in prop_oneof![Just(Status::Open), Just(Status::Acknowledged), Just(Status::Cleared)],
            severity in prop_oneof![Just(Severity::Warning), Just(Severity::Critical)],
            origin in prop_oneof![Just(Origin::Model), Just(Origin::Silence), Just(Origin::Baseline)],
            levels in (value(), value()),
            times in proptest::collection::vec(-1i64 << 45..1i64 << 45, 4),
            by in proptest::option::of("\\PC{0,8}"),
            comment in proptest::option::of("[ -~\\n]{0,8}"),
            features in features(),
            contributions in features(),
        ) -> Alert {
            Alert {
                alert_id: ids.0,
                device_id: ids.1,
                status,
                severity,
                origin,
                fault_probability: levels.0,
                threshold: levels.1,
                window_start_ms: times[0],
                window_end_ms: times[1],
                model: "pump-fault".to_owned(),
                model_version: "3".to_owned(),
                message: ids.2,
                raised_at_ms: times[2],
                updated_at_ms: times[3],
                acknowledged_by: by,
                comment,
                features,
                contributions,
            }
        }
    }

    proptest! {
        #[test]
        fn is_the_text_the_value_gave(a in alert()) {
            let before = json_through_value(&a);
            prop_assert_eq!(a.to_json_string(), before.to_string());
            prop_assert_eq!(a.to_json(), before);
        }
    }
}
