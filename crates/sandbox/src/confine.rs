//! The last step before a script starts: what it may not do, whatever ids it runs with.
//!
//! - Capabilities that act on the host's kernel rather than on files are dropped from the
//!   bounding set ([`DROPPED`]), so nothing the script runs can hold them, setuid programs
//!   included.
//! - `no_new_privs` is set: a setuid or file-capability program gains nothing.
//! - A seccomp filter in the spirit of Docker's default profile makes the system calls a
//!   build never needs and that reach the host (the clock, kernel modules, reboot, swap,
//!   accounting, BPF, perf, keyrings, handles, new mounts and namespaces) fail with EPERM
//!   ([`denied`]); `clone` with a namespace flag fails with EPERM and `clone3` with ENOSYS,
//!   so that C libraries fall back to `clone`, whose flags the filter can read.
//! - Descriptors other than standard input, output and error are closed on `exec`: the
//!   script inherits no open file of the caller's.
//!
//! The filter comes from `seccompiler` (pure Rust, maintained with Firecracker, builds
//! the classic BPF with the architecture check and argument conditions); the capability
//! calls from `caps`. Both keep `unsafe` out of this crate's own code.

use std::collections::BTreeMap;

use caps::{CapSet, Capability};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::protocol::Report;

/// Capabilities no build script needs, which act on the host's kernel.
pub(crate) const DROPPED: [Capability; 16] = [
    Capability::CAP_SYS_MODULE,
    Capability::CAP_SYS_BOOT,
    Capability::CAP_SYS_TIME,
    Capability::CAP_SYS_RAWIO,
    Capability::CAP_SYSLOG,
    Capability::CAP_MAC_ADMIN,
    Capability::CAP_MAC_OVERRIDE,
    Capability::CAP_AUDIT_CONTROL,
    Capability::CAP_AUDIT_READ,
    Capability::CAP_AUDIT_WRITE,
    Capability::CAP_WAKE_ALARM,
    Capability::CAP_BLOCK_SUSPEND,
    Capability::CAP_SYS_PACCT,
    Capability::CAP_SYS_TTY_CONFIG,
    Capability::CAP_BPF,
    Capability::CAP_PERFMON,
];

/// System calls that fail with EPERM, by name and number on this architecture.
pub(crate) fn denied() -> Vec<(&'static str, i64)> {
    let mut calls = vec![
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        ("reboot", libc::SYS_reboot),
        ("settimeofday", libc::SYS_settimeofday),
        ("clock_settime", libc::SYS_clock_settime),
        ("clock_adjtime", libc::SYS_clock_adjtime),
        ("adjtimex", libc::SYS_adjtimex),
        ("swapon", libc::SYS_swapon),
        ("swapoff", libc::SYS_swapoff),
        ("acct", libc::SYS_acct),
        ("bpf", libc::SYS_bpf),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("open_by_handle_at", libc::SYS_open_by_handle_at),
        ("name_to_handle_at", libc::SYS_name_to_handle_at),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("syslog", libc::SYS_syslog),
        ("quotactl", libc::SYS_quotactl),
        ("vhangup", libc::SYS_vhangup),
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("fsopen", libc::SYS_fsopen),
        ("open_tree", libc::SYS_open_tree),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        ("iopl", libc::SYS_iopl),
        ("ioperm", libc::SYS_ioperm),
        ("lookup_dcookie", libc::SYS_lookup_dcookie),
        ("fsmount", libc::SYS_fsmount),
        ("move_mount", libc::SYS_move_mount),
    ]);
    calls
}

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// The `clone` flags that make a namespace.
const NAMESPACE_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

/// Applies everything in this module's documentation to the calling thread, which is
/// about to start the script (threads and processes it starts afterwards inherit it).
pub(crate) fn confine() -> Result<(), Report> {
    confine_process()?;
    for filter in filters().map_err(|e| Report::failed("build the seccomp filter", e))? {
        // Sets no_new_privs first.
        seccompiler::apply_filter(&filter)
            .map_err(|e| Report::failed("install the seccomp filter", e))?;
    }
    Ok(())
}

/// Everything but the filters, which a script started in a user namespace of its own
/// installs itself once it is there ([`filters`] forbid making one).
pub(crate) fn confine_process() -> Result<(), Report> {
    for cap in DROPPED {
        // A capability this kernel does not know is not in the bounding set to begin with.
        if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| Report::failed("drop capabilities", format!("{cap}: {e}")))?;
        }
        for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
            if caps::has_cap(None, set, cap).unwrap_or(false) {
                caps::drop(None, set, cap)
                    .map_err(|e| Report::failed("drop capabilities", format!("{cap}: {e}")))?;
            }
        }
    }
    close_on_exec_beyond_stdio()
}

/// The two filters: the deny list and `clone` with namespace flags (EPERM), and `clone3`
/// (ENOSYS).
pub(crate) fn filters() -> Result<[BpfProgram; 2], seccompiler::BackendError> {
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = denied()
        .into_iter()
        .map(|(_, nr)| (nr, Vec::new()))
        .collect();
    let mut clone_rules = Vec::new();
    for flag in NAMESPACE_FLAGS {
        let flag = u64::try_from(flag).unwrap_or(0);
        clone_rules.push(SeccompRule::new(vec![SeccompCondition::new(
            CLONE_FLAGS_ARG,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )?])?);
    }
    denied.insert(libc::SYS_clone, clone_rules);
    let eperm = SeccompAction::Errno(u32::try_from(libc::EPERM).unwrap_or(1));
    let deny = SeccompFilter::new(denied, SeccompAction::Allow, eperm, ARCH)?;
    let enosys = SeccompAction::Errno(u32::try_from(libc::ENOSYS).unwrap_or(38));
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        enosys,
        ARCH,
    )?;
    Ok([deny.try_into()?, clone3.try_into()?])
}

/// Which argument of `clone` holds the flags: the first on `x86_64` and `aarch64`.
const CLONE_FLAGS_ARG: u8 = 0;

/// Marks every open descriptor above 2 close-on-exec.
fn close_on_exec_beyond_stdio() -> Result<(), Report> {
    let entries = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| Report::failed("list open descriptors", e))?;
    let fds: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // The listing's own descriptor is closed by now: EBADF is fine.
        let _ = crate::seccomp::set_cloexec(fd);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_build_for_this_architecture() {
        let [deny, clone3] = filters().unwrap();
        assert!(
            deny.len() > denied().len(),
            "one comparison per call at least"
        );
        assert!(!clone3.is_empty());
    }

    #[test]
    fn the_deny_list_has_what_docker_denies_to_builds() {
        for name in [
            "kexec_load",
            "init_module",
            "finit_module",
            "delete_module",
            "reboot",
            "settimeofday",
            "clock_settime",
            "adjtimex",
            "swapon",
            "swapoff",
            "acct",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "request_key",
            "open_by_handle_at",
            "userfaultfd",
            "mount",
            "unshare",
            "setns",
        ] {
            assert!(denied().iter().any(|&(n, _)| n == name), "{name}");
        }
    }
}
