//! glibc's allocator, tamed for a long-running daemon on a small box.
//!
//! glibc gives each thread that allocates its own arena (up to 8 per
//! core) and keeps what is freed inside them. The daemon's tokio workers,
//! sled's flusher and librdkafka's threads each took an arena, and the
//! burst of a checkpoint (sled copies every value it writes) left freed
//! but resident pages in several of them: RSS stood at about twice the
//! live heap (benches/RESULTS.md, measured with heaptrack). Two arenas,
//! and giving free pages back now and then, keep RSS close to what is in
//! use. Trimming walks the whole heap (tens of milliseconds at times); the
//! daemon does it after a checkpoint, at most every [`TRIM_EVERY`]. In
//! 5-minute 10,000-device soaks (one run each, so noisy), trimming after
//! every checkpoint peaked at 174 and 185 MB; every 5 s at 335 MB, every
//! 30 s at 296 MB.
//!
//! Blocks of [`MMAP_THRESHOLD`] and more are mapped on their own and given
//! back when freed. sled writes its log through 512 KiB buffers, a new one
//! each time one fills; glibc puts a freed block that size back in the heap,
//! small allocations split it, and the next buffer grows the heap instead.
//! When 10,000 windows close together sled fills ~35 buffers in half a
//! second: RSS rose 19 MB and fell back 12 MB at the next trim (`perf` on
//! `brk`: 28 of 35 heap extensions were sled's buffers). glibc would map
//! them too, but raises its threshold above any mapped block freed, so
//! after the first one they all came from the heap.
//!
//! The threshold is fixed only once the state is restored ([`settle`]).
//! After a crash sled reads back the log it wrote since it last opened (as
//! much as its whole file) through a buffer per segment, and the restore
//! reads each journal file whole: mapped one by one, each block came with
//! its page faults and an `munmap`. With the window history at its bound,
//! sled's open after a `kill -9` took 340-480 ms that way, 130-200 ms with
//! glibc's own threshold (benches/RESULTS.md, 32). Elsewhere (musl,
//! other systems) all of this is a no-op.

/// The least time between two [`trim`]s: about every checkpoint at the
/// default one-second interval.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_millis(900);

/// Allocations this big or bigger are mapped on their own (a fixed
/// threshold, where glibc's own moves up to the largest block freed).
pub const MMAP_THRESHOLD: usize = 256 << 10;

/// Limits the arenas; call before any thread is started.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before
    // the runtime starts its threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Fixes the threshold for mapped blocks and gives back what the restore
/// freed; call once the state is restored.
pub fn settle() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes the main arena's lock to set the parameter,
    // malloc_trim the arenas' own; neither has a precondition.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
        libc::malloc_trim(0);
    }
}

/// Returns free pages of every arena to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the arenas' own locks; it has no
    // precondition on the caller.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the allocator holds, in bytes (glibc's `mallinfo2`): `None`
/// elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heap {
    /// In use by the program, in the arenas.
    pub in_use: usize,
    /// Free inside the arenas: what a trim could not give back.
    pub free: usize,
    /// Blocks mapped on their own ([`MMAP_THRESHOLD`] and more).
    pub mapped: usize,
}

/// The allocator's totals now; it walks every arena's free lists, so call
/// it only where a trim runs anyway.
pub fn heap() -> Option<Heap> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes the arenas' locks and only reads.
        let m = unsafe { libc::mallinfo2() };
        Some(Heap { in_use: m.uordblks, free: m.fordblks, mapped: m.hblkhd })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn the_heap_totals_count_a_mapped_block() {
        // 64 MiB is mapped on its own whatever the threshold (glibc's
        // moves up to 32 MiB at most); other tests run alongside, so only
        // what this one holds is certain.
        let big = vec![1u8; 64 << 20];
        let h = heap().expect("glibc");
        assert!(h.mapped >= big.len(), "{h:?}");
        assert!(h.in_use > 0, "{h:?}");
        drop(big);
    }
}
