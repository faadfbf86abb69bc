//! Cleaning: per-signal range rules from `[cleaning.signals.<name>]`.
//!
//! An out-of-range value is dropped on its own (the reading's other
//! signals stay) and counted per signal and reason. Rules are looked up by
//! name once per device and signal, not per value: the window engine keeps
//! the rule index beside each device's signal.

use std::collections::HashMap;

/// Why a value was dropped by cleaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    BelowMin,
    AboveMax,
}

impl DropReason {
    pub const ALL: [DropReason; 2] = [DropReason::BelowMin, DropReason::AboveMax];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BelowMin => "below_min",
            DropReason::AboveMax => "above_max",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub signal: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// The rule set and its drop counters.
#[derive(Debug, Clone, Default)]
pub struct Cleaning {
    rules: Vec<Rule>,
    by_name: HashMap<String, usize>,
    /// `dropped[rule][reason]`.
    dropped: Vec<[u64; 2]>,
}

impl Cleaning {
    pub fn new(rules: Vec<Rule>) -> Self {
        let by_name = rules.iter().enumerate().map(|(i, r)| (r.signal.clone(), i)).collect();
        let dropped = vec![[0; 2]; rules.len()];
        Cleaning { rules, by_name, dropped }
    }

    /// The rule for `signal`, as an index for [`Cleaning::check`].
    pub fn rule_for(&self, signal: &str) -> Option<usize> {
        if self.rules.is_empty() {
            return None;
        }
        self.by_name.get(signal).copied()
    }

    /// True when `v` passes rule `rule`; counts it otherwise.
    #[inline]
    pub fn check(&mut self, rule: usize, v: f64) -> bool {
        let Some(r) = self.rules.get(rule) else { return true };
        let reason = if r.min.is_some_and(|min| v < min) {
            DropReason::BelowMin
        } else if r.max.is_some_and(|max| v > max) {
            DropReason::AboveMax
        } else {
            return true;
        };
        self.dropped[rule][reason as usize] += 1;
        false
    }

    /// `(signal, reason, count)` for every rule and reason.
    pub fn dropped(&self) -> impl Iterator<Item = (&str, DropReason, u64)> + '_ {
        self.rules.iter().zip(&self.dropped).flat_map(|(r, counts)| {
            DropReason::ALL.into_iter().map(move |d| (r.signal.as_str(), d, counts[d as usize]))
        })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Takes `new`'s rules, keeping the drop counts of signals that still
    /// have a rule (counters must not go backwards).
    pub fn replace_rules(&mut self, new: Cleaning) {
        let mut dropped = vec![[0; 2]; new.rules.len()];
        for (i, r) in new.rules.iter().enumerate() {
            if let Some(&old) = self.by_name.get(&r.signal) {
                dropped[i] = self.dropped[old];
            }
        }
        *self = Cleaning { dropped, ..new };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_and_counts_out_of_range_values() {
        let mut c = Cleaning::new(vec![
            Rule { signal: "Temperature".into(), min: Some(0.0), max: Some(100.0) },
            Rule { signal: "Pressure".into(), min: None, max: Some(10.0) },
        ]);
        let t = c.rule_for("Temperature").unwrap();
        let p = c.rule_for("Pressure").unwrap();
        assert_eq!(c.rule_for("Current"), None);
        assert!(c.check(t, 0.0) && c.check(t, 100.0) && c.check(t, 55.5));
        assert!(!c.check(t, -0.1));
        assert!(!c.check(t, 100.1));
        assert!(!c.check(t, 1e9));
        assert!(c.check(p, -1e9));
        assert!(!c.check(p, 10.5));
        let counts: Vec<_> = c.dropped().map(|(s, r, n)| (s.to_owned(), r.as_str(), n)).collect();
        assert_eq!(
            counts,
            vec![
                ("Temperature".into(), "below_min", 1),
                ("Temperature".into(), "above_max", 2),
                ("Pressure".into(), "below_min", 0),
                ("Pressure".into(), "above_max", 1),
            ]
        );
    }
}
