//! The seccomp filters: a deny list of what no MCP server needs, built with
//! `seccompiler` from the `libc` crate's syscall numbers.
//!
//! Denied calls fail with `EPERM` (the program sees an ordinary error and
//! can go on); `clone3` fails with `ENOSYS`, so the C library falls back to
//! `clone`, whose flags a filter can read (namespace flags are denied).
//! Other architectures' calling conventions are killed by seccompiler's
//! architecture check, and on x86_64 the x32 ABI is refused outright.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::config::Network;

/// Calls no MCP server needs: reading or writing other processes, mounts and
/// namespaces, kernel extension points (eBPF, perf, modules, kexec), the
/// kernel keyring, userfaultfd, io_uring (which would bypass this filter),
/// file handles, and host-wide settings.
pub fn denied_syscalls() -> Vec<(&'static str, libc::c_long)> {
    let mut v = vec![
        ("ptrace", libc::SYS_ptrace),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("process_vm_writev", libc::SYS_process_vm_writev),
        ("pidfd_getfd", libc::SYS_pidfd_getfd),
        ("kcmp", libc::SYS_kcmp),
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("chroot", libc::SYS_chroot),
        ("fsopen", libc::SYS_fsopen),
        ("fsconfig", libc::SYS_fsconfig),
        ("fsmount", libc::SYS_fsmount),
        ("fspick", libc::SYS_fspick),
        ("move_mount", libc::SYS_move_mount),
        ("open_tree", libc::SYS_open_tree),
        ("mount_setattr", libc::SYS_mount_setattr),
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        ("bpf", libc::SYS_bpf),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
        ("open_by_handle_at", libc::SYS_open_by_handle_at),
        ("name_to_handle_at", libc::SYS_name_to_handle_at),
        ("fanotify_init", libc::SYS_fanotify_init),
        ("reboot", libc::SYS_reboot),
        ("swapon", libc::SYS_swapon),
        ("swapoff", libc::SYS_swapoff),
        ("acct", libc::SYS_acct),
        ("quotactl", libc::SYS_quotactl),
        ("syslog", libc::SYS_syslog),
        ("settimeofday", libc::SYS_settimeofday),
        ("clock_settime", libc::SYS_clock_settime),
        ("clock_adjtime", libc::SYS_clock_adjtime),
        ("adjtimex", libc::SYS_adjtimex),
        ("sethostname", libc::SYS_sethostname),
        ("setdomainname", libc::SYS_setdomainname),
        ("vhangup", libc::SYS_vhangup),
        ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        ("iopl", libc::SYS_iopl),
        ("ioperm", libc::SYS_ioperm),
        ("uselib", libc::SYS_uselib),
    ]);
    v
}

/// `CLONE_NEW*` flags: creating namespaces is denied.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWCGROUP,
];

#[derive(Debug, thiserror::Error)]
#[error("seccomp: {0}")]
pub struct SeccompError(#[from] seccompiler::BackendError);

fn errno_filter(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )?;
    Ok(filter.try_into()?)
}

/// The filters for `network`, in the order they are installed.
pub fn filters(network: &Network) -> Result<Vec<BpfProgram>, SeccompError> {
    let arch: TargetArch = std::env::consts::ARCH.try_into()?;
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = denied_syscalls()
        .into_iter()
        .map(|(_, nr)| (nr, Vec::new()))
        .collect();
    let mut clone_rules = Vec::new();
    for flag in NAMESPACE_FLAGS {
        let flag = *flag as u64;
        clone_rules.push(SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )?])?);
    }
    deny.insert(libc::SYS_clone, clone_rules);
    if *network == Network::None {
        // No new sockets of any family; socketpair(2) stays (event loops
        // use it to wake themselves).
        deny.insert(libc::SYS_socket, Vec::new());
    }
    let mut out = vec![errno_filter(deny, libc::EPERM, arch)?];
    out.push(errno_filter(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        libc::ENOSYS,
        arch,
    )?);
    #[cfg(target_arch = "x86_64")]
    out.push(x32_filter());
    Ok(out)
}

/// x86_64 only: refuse every x32 system call (numbers with bit 30 set),
/// whose numbering differs from the native one and would slip past a deny
/// list. Four instructions: load the number, test the bit, and answer.
#[cfg(target_arch = "x86_64")]
fn x32_filter() -> BpfProgram {
    use seccompiler::sock_filter;
    // Instruction codes from the kernel's UAPI, as the libc crate spells them.
    const fn code(parts: &[u32]) -> u16 {
        let mut c = 0;
        let mut i = 0;
        while i < parts.len() {
            c |= parts[i];
            i += 1;
        }
        c as u16
    }
    const BPF_LD_W_ABS: u16 = code(&[libc::BPF_LD, libc::BPF_W, libc::BPF_ABS]);
    const BPF_JMP_JSET_K: u16 = code(&[libc::BPF_JMP, libc::BPF_JSET, libc::BPF_K]);
    const BPF_RET_K: u16 = code(&[libc::BPF_RET, libc::BPF_K]);
    // The kernel's `__X32_SYSCALL_BIT` (asm/unistd.h); libc exports it only for x32 targets.
    const X32_BIT: u32 = 0x4000_0000;
    let nr_offset = 0; // seccomp_data.nr
    vec![
        sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: nr_offset,
        },
        sock_filter {
            code: BPF_JMP_JSET_K,
            jt: 0,
            jf: 1,
            k: X32_BIT,
        },
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_for_every_network_rule() {
        for n in [Network::None, Network::Allow, Network::Ports(vec![443])] {
            let f = filters(&n).unwrap();
            assert!(f.iter().all(|p| !p.is_empty() && p.len() < 4096));
        }
    }

    #[test]
    fn the_deny_list_has_no_duplicates() {
        let list = denied_syscalls();
        let mut nrs: Vec<_> = list.iter().map(|(_, n)| *n).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), list.len());
    }
}
