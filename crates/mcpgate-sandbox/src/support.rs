//! What the running kernel and process offer the sandbox, detected once at
//! start.

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, Scope,
};

/// The Landlock ABI whose rights the sandbox uses; newer kernels are used at
/// this level (rights added later are not needed and were not tested).
pub const LANDLOCK_ABI: ABI = ABI::V6;

/// Landlock ABI needed for TCP bind/connect rules.
pub const ABI_NET: u8 = 4;
/// Landlock ABI needed to scope signals and abstract UNIX sockets.
pub const ABI_SCOPE: u8 = 6;

/// Kernel and process facts the sandbox depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    /// Highest Landlock ABI (up to [`LANDLOCK_ABI`]) the kernel accepts; 0 = none.
    pub landlock_abi: u8,
    /// seccomp filters can be installed.
    pub seccomp: bool,
    /// mcpgate runs as root, so children can be given another uid.
    pub root: bool,
}

impl Support {
    /// Probes the kernel: a Landlock ruleset is created (never applied) for
    /// each ABI, and `/proc/self/status` tells whether seccomp is built in.
    pub fn detect() -> Self {
        Self {
            landlock_abi: landlock_abi(),
            seccomp: seccomp_available(),
            root: nix::unistd::geteuid().is_root(),
        }
    }
}

fn abi_of(n: u8) -> ABI {
    ABI::from(i32::from(n))
}

fn probe(n: u8) -> bool {
    let abi = abi_of(n);
    let built = (|| -> Result<(), landlock::RulesetError> {
        let mut rs = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))?;
        if n >= ABI_NET {
            rs = rs.handle_access(AccessNet::from_all(abi))?;
        }
        if n >= ABI_SCOPE {
            rs = rs.scope(Scope::from_all(abi))?;
        }
        rs.create().map(drop)
    })();
    built.is_ok()
}

fn landlock_abi() -> u8 {
    let top = LANDLOCK_ABI as u8;
    (1..=top).rev().find(|&n| probe(n)).unwrap_or(0)
}

fn seccomp_available() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_is_consistent() {
        let s = Support::detect();
        // Probing never restricts this process: files stay readable.
        assert!(std::fs::read("/proc/self/status").is_ok());
        if s.landlock_abi > 0 {
            assert!((1..=LANDLOCK_ABI as u8).all(|n| (n <= s.landlock_abi) == probe(n)));
        }
    }
}
