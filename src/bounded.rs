//! A bounded, oldest-out log with sequence numbers: the late store and the
//! quarantine. Sequence numbers let a checkpoint write only what was added
//! since the last one and delete what was pushed out.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct BoundedLog<T> {
    cap: usize,
    items: VecDeque<T>,
    /// Items ever pushed: the next item's sequence number.
    pushed: u64,
    /// Items pushed out (or refused with a capacity of 0).
    pub evicted: u64,
}

impl<T> BoundedLog<T> {
    pub fn new(cap: usize) -> Self {
        BoundedLog { cap, items: VecDeque::new(), pushed: 0, evicted: 0 }
    }

    /// Adds `item`, pushing out the oldest when full; false when something
    /// was pushed out (or the log keeps nothing).
    pub fn push(&mut self, item: T) -> bool {
        self.pushed += 1;
        if self.cap == 0 {
            self.evicted += 1;
            return false;
        }
        let full = self.items.len() >= self.cap;
        if full {
            self.items.pop_front();
            self.evicted += 1;
        }
        self.items.push_back(item);
        !full
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    /// Sequence number of the oldest item kept (= of the next one when empty).
    pub fn first_seq(&self) -> u64 {
        self.pushed - self.items.len() as u64
    }

    /// Sequence number the next item gets.
    pub fn next_seq(&self) -> u64 {
        self.pushed
    }

    /// Items kept with sequence number `from` or later, with their numbers.
    pub fn since(&self, from: u64) -> impl Iterator<Item = (u64, &T)> {
        let first = self.first_seq();
        let skip = from.saturating_sub(first) as usize;
        self.items.iter().enumerate().skip(skip).map(move |(i, t)| (first + i as u64, t))
    }

    /// Puts back items read from a checkpoint (sequence numbers ascending).
    pub fn restore(&mut self, items: impl IntoIterator<Item = (u64, T)>) {
        self.items.clear();
        for (seq, t) in items {
            self.pushed = seq + 1;
            self.items.push_back(t);
        }
        while self.items.len() > self.cap {
            self.items.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_follow_what_is_kept() {
        let mut l = BoundedLog::new(3);
        for i in 0..5 {
            l.push(i);
        }
        assert_eq!(l.iter().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!((l.first_seq(), l.next_seq(), l.evicted), (2, 5, 2));
        assert_eq!(l.since(3).map(|(s, v)| (s, *v)).collect::<Vec<_>>(), vec![(3, 3), (4, 4)]);
        assert_eq!(l.since(0).count(), 3);
        let mut r = BoundedLog::new(3);
        r.restore(l.since(0).map(|(s, v)| (s, *v)));
        assert_eq!((r.first_seq(), r.next_seq()), (2, 5));
        r.push(5);
        assert_eq!(r.since(5).map(|(s, v)| (s, *v)).collect::<Vec<_>>(), vec![(5, 5)]);
    }
}
