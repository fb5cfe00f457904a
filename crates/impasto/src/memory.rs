//! What the operating system says about memory: enough to refuse a job that cannot fit before
//! allocating it, and to report a run's peak. Linux only (`/proc`); elsewhere the answers are
//! `None` and callers proceed without the check.

/// Memory the system can give us without swapping (`MemAvailable`).
pub fn available_bytes() -> Option<u64> {
    proc_kib("/proc/meminfo", "MemAvailable:")
}

/// This process's peak resident set size (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    proc_kib("/proc/self/status", "VmHWM:")
}

fn proc_kib(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether `needed` bytes are available (true where the OS does not say).
pub fn fits(needed: u64) -> bool {
    available_bytes().is_none_or(|avail| needed <= avail)
}

/// `Err(Limits)` if `needed` bytes exceed what is available, naming both and `what` needs them.
pub fn ensure_available(needed: u64, what: &str) -> crate::Result<()> {
    match available_bytes() {
        Some(avail) if needed > avail => Err(crate::Error::limits(format!(
            "{what} needs about {:.1} GiB of memory, but only {:.1} GiB are available",
            needed as f64 / GIB,
            avail as f64 / GIB
        ))),
        _ => Ok(()),
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_reports_memory_and_refuses_the_impossible() {
        if cfg!(target_os = "linux") {
            let avail = available_bytes().expect("MemAvailable");
            assert!(avail > 0);
            assert!(peak_rss_bytes().expect("VmHWM") > 0);
            let err = ensure_available(u64::MAX / 2, "a test")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("a test needs about") && err.contains("available"),
                "{err}"
            );
        }
        assert!(ensure_available(1, "one byte").is_ok());
    }
}
