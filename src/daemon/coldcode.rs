//! Code touched only while starting, given back once the daemon is ready.
//!
//! RSS counts every page of the binary the process has touched since it
//! started, and starting touches much that never runs again: tract
//! loading and optimising the model, the configuration's parser, sled's
//! recovery, the HTTP router's setup. At ready ~13 MB of faultline's own
//! code and read-only data was resident, of ~17 MB file-backed in all
//! (benches/RESULTS.md, 27). `MADV_PAGEOUT` on the read-only file
//! mappings drops their pages from the process: they are clean, so nothing
//! is written, and the kernel leaves alone pages another process maps too
//! (the C library's). What the daemon goes on running faults back in,
//! from the page cache or the disk, within its first seconds; the
//! anonymous memory is not touched. Elsewhere than Linux this is a no-op.

/// Advises the kernel to page out the process's read-only file-backed
/// mappings; returns the bytes advised. An error when the kernel does not
/// know `MADV_PAGEOUT` (before Linux 5.4) or `/proc/self/maps` cannot be read.
pub fn page_out() -> std::io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        let maps = std::fs::read_to_string("/proc/self/maps")?;
        let mut advised = 0;
        for (start, end) in read_only_files(&maps) {
            let len = end - start;
            // SAFETY: the range is one of this process's own mappings, as
            // the kernel listed it; MADV_PAGEOUT does not change its
            // contents (clean file pages are read again on use).
            let r = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_PAGEOUT) };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                // Unmapped since the list was read (a library unloaded):
                // the others still count.
                if e.raw_os_error() == Some(libc::ENOMEM) {
                    continue;
                }
                return Err(e);
            }
            advised += len;
        }
        Ok(advised)
    }
    #[cfg(not(target_os = "linux"))]
    Ok(0)
}

/// The ranges of `/proc/self/maps` lines that map a file without write
/// access: code and read-only data of the binary and its libraries.
fn read_only_files(maps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms), Some(_offset), Some(_dev), Some(inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let path = f.next().unwrap_or("");
        if inode == "0" || !path.starts_with('/') || !perms.starts_with('r') || perms.as_bytes().get(1) != Some(&b'-') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
            if b > a {
                out.push((a, b));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_file_mappings_are_chosen() {
        let maps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fd:01 1234 /usr/bin/faultline
55d0a0100000-55d0a0200000 r-xp 00100000 fd:01 1234 /usr/bin/faultline
55d0a0200000-55d0a0210000 rw-p 00200000 fd:01 1234 /usr/bin/faultline
55d0a1000000-55d0a2000000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000001000 r--p 00000000 00:00 0
7f0000001000-7f0000002000 r-xp 00000000 fd:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000002000-7f0000003000 r--s 00000000 fd:01 77 /var/lib/faultline/db/conf
7ffc00000000-7ffc00001000 r-xp 00000000 00:00 0 [vdso]
garbage line
";
        assert_eq!(
            read_only_files(maps),
            vec![
                (0x55d0_a000_0000, 0x55d0_a010_0000),
                (0x55d0_a010_0000, 0x55d0_a020_0000),
                (0x7f00_0000_1000, 0x7f00_0000_2000),
                (0x7f00_0000_2000, 0x7f00_0000_3000),
            ]
        );
    }

    /// The process's file-backed resident memory, from `/proc/self/status`.
    #[cfg(target_os = "linux")]
    fn rss_file_kb() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").expect("status");
        s.lines()
            .find_map(|l| l.strip_prefix("RssFile:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("RssFile")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn paging_out_lowers_the_file_backed_resident_memory() {
        let before = rss_file_kb();
        match page_out() {
            Ok(advised) => {
                assert!(advised > 1 << 20, "the test binary's code is mapped: {advised} bytes");
                let after = rss_file_kb();
                assert!(after < before, "RssFile {before} kB before, {after} kB after");
            }
            // A kernel before 5.4 does not know the advice.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}"),
        }
        // The code still runs (its pages come back).
        assert_eq!(read_only_files("").len(), 0);
    }
}
