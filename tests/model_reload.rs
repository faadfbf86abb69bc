//! Hot reload: a new valid package is swapped in, a bad one refused while
//! the running model stays, and the previous version kept for rollback.

mod common;

use common::onnx::{logistic, package};
use faultline::model::{ModelHandle, Reload};

fn toml(version: &str) -> String {
    format!("name = \"pump\"\nversion = \"{version}\"\n[input]\nname = \"X\"\nfeatures = [\"a.mean\", \"b.max\"]\n[output]\nname = \"Y\"\n")
}

#[test]
fn swap_refuse_and_roll_back() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("pump");
    package(&dir, &logistic(&[1.0, 0.0], 0.0, Some(2)), &toml("1"));
    let h = ModelHandle::load(&dir).expect("v1 loads");
    let v1 = h.current();
    let score = |h: &ModelHandle| h.current().run(&[1.0, 0.0], 1).expect("runs")[0];
    let s1 = score(&h);
    assert_eq!(h.reload_if_changed(), Reload::Unchanged);

    // The data team drops in version 2 with other weights.
    package(&dir, &logistic(&[-1.0, 0.0], 0.0, Some(2)), &toml("2"));
    assert_eq!(
        h.reload_if_changed(),
        Reload::Swapped { from: ("pump".into(), "1".into()), to: ("pump".into(), "2".into()) }
    );
    assert_eq!(h.current().package.version, "2");
    assert!(score(&h) < 0.5 && s1 > 0.5, "the new weights score");
    assert_eq!(v1.package.version, "1", "a batch holding the old Arc finishes with it");

    // A broken package: refused once, reported once, v2 keeps running.
    std::fs::write(dir.join("model.onnx"), b"half a file").expect("write");
    match h.reload_if_changed() {
        Reload::Refused(why) => assert!(why.contains("not a readable ONNX model"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.reload_if_changed(), Reload::StillRefused);
    assert_eq!(h.current().package.version, "2");

    // Fixed: version 3 goes in; then a rollback returns to 2, and another to 3.
    package(&dir, &logistic(&[2.0, 0.0], 0.0, Some(2)), &toml("3"));
    assert!(matches!(h.reload_if_changed(), Reload::Swapped { .. }));
    assert_eq!(h.rollback(), Ok(("pump".into(), "2".into())));
    assert_eq!(h.current().package.version, "2");
    assert_eq!(h.rollback(), Ok(("pump".into(), "3".into())));

    // A forced reload of the same files swaps in an equal copy.
    assert!(matches!(h.reload(), Reload::Swapped { .. }));
    let fresh = ModelHandle::load(&dir).expect("loads");
    assert_eq!(fresh.rollback(), Err("no previous model to roll back to".into()));
}

#[test]
fn the_watcher_swaps_a_dropped_in_package_by_itself() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("pump");
    package(&dir, &logistic(&[1.0, 0.0], 0.0, Some(2)), &toml("1"));
    let h = std::sync::Arc::new(ModelHandle::load(&dir).expect("v1 loads"));
    let (tx, rx) = std::sync::mpsc::channel();
    let watcher = h.watch(std::time::Duration::from_millis(20), move |r| {
        let _ = tx.send(r.clone());
    });
    let watcher = watcher.expect("thread starts");
    std::fs::write(dir.join("model.onnx"), b"not yet").expect("write");
    let refused = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the watcher reports");
    assert!(matches!(refused, Reload::Refused(_)), "{refused:?}");
    package(&dir, &logistic(&[-1.0, 0.0], 0.0, Some(2)), &toml("2"));
    // The files land one after the other, each truncated then written, so the
    // watcher may see half-written states: refused, or valid (new weights, old
    // model.toml) and swapped in. Version 2 must win in the end.
    while h.current().package.version != "2" {
        rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the watcher reports");
    }
    watcher.stop();
    // Stopped: further changes are not picked up.
    package(&dir, &logistic(&[2.0, 0.0], 0.0, Some(2)), &toml("3"));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(h.current().package.version, "2");
}
