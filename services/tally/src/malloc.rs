//! glibc's mmap threshold, fixed for the services.
//!
//! mimalloc is Rust's allocator only: librdkafka allocates its fetch
//! buffers and the messages it decompresses with glibc's `malloc`. glibc
//! serves a block above its mmap threshold with a mapping of its own, but
//! raises the threshold to the size of each such block freed (up to
//! 32 MiB); from then on those buffers come from its per-thread arenas and
//! stay resident after they are freed. smaps of invoicing at 400 lines a
//! statement showed 245 MiB in twelve arenas of 64 MiB (BENCHMARKS.md,
//! "glibc's mmap threshold").
//!
//! `GLIBC_TUNABLES` is read once, when a process starts, and `mallopt` is
//! `unsafe` (the workspace forbids it), so `tally up` starts itself again
//! (`exec`: the same process id, arguments and environment) with
//! `glibc.malloc.mmap_threshold` set, unless `GLIBC_TUNABLES` sets it
//! already: an operator's own value wins. It does so once: the process it
//! starts has `TALLY_MALLOC_RESTARTED` set, and does not start again.

/// The tunable, and its value: a block of 256 KiB or more is mapped on its
/// own and unmapped when freed.
const TUNABLE: &str = "glibc.malloc.mmap_threshold";
const THRESHOLD: usize = 256 * 1024;
/// Set in the process started again.
const RESTARTED: &str = "TALLY_MALLOC_RESTARTED";

/// `GLIBC_TUNABLES` with the mmap threshold added to what `current` sets,
/// or `None` when it sets the threshold already.
pub fn with_mmap_threshold(current: Option<&str>) -> Option<String> {
    let current = current.unwrap_or("");
    let sets_it = current
        .split(':')
        .any(|setting| setting.split('=').next() == Some(TUNABLE));
    if sets_it {
        return None;
    }
    let ours = format!("{TUNABLE}={THRESHOLD}");
    Some(if current.is_empty() {
        ours
    } else {
        format!("{current}:{ours}")
    })
}

/// Starts this process again with glibc's mmap threshold fixed, when
/// `GLIBC_TUNABLES` does not set it; returns only when it does, or when the
/// `exec` failed (logged: the process goes on with glibc's default). Call
/// it before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn fix_mmap_threshold() {
    use std::os::unix::process::CommandExt;

    if std::env::var_os(RESTARTED).is_some() {
        return;
    }
    let Some(current) =
        std::env::var_os("GLIBC_TUNABLES").map_or(Some(String::new()), |v| v.into_string().ok())
    else {
        return;
    };
    let Some(tunables) = with_mmap_threshold(Some(&current)) else {
        return;
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this executable to fix glibc's mmap threshold; going on without");
            return;
        }
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    let e = command
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(RESTARTED, "1")
        .exec();
    tracing::warn!(error = %e, "cannot start again with glibc's mmap threshold fixed; going on without");
}

/// Other platforms keep their allocator's defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn fix_mmap_threshold() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_added_to_no_tunables() {
        assert_eq!(
            with_mmap_threshold(None).as_deref(),
            Some("glibc.malloc.mmap_threshold=262144")
        );
        assert_eq!(
            with_mmap_threshold(Some("")).as_deref(),
            Some("glibc.malloc.mmap_threshold=262144")
        );
    }

    #[test]
    fn the_threshold_is_added_after_other_tunables() {
        assert_eq!(
            with_mmap_threshold(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=262144")
        );
    }

    #[test]
    fn an_operators_threshold_wins() {
        assert_eq!(
            with_mmap_threshold(Some("glibc.malloc.mmap_threshold=1048576")),
            None
        );
        assert_eq!(
            with_mmap_threshold(Some(
                "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536"
            )),
            None
        );
    }

    #[test]
    fn a_tunable_named_like_it_is_not_it() {
        assert_eq!(
            with_mmap_threshold(Some("glibc.malloc.mmap_threshold_max=1")).as_deref(),
            Some("glibc.malloc.mmap_threshold_max=1:glibc.malloc.mmap_threshold=262144")
        );
    }
}
