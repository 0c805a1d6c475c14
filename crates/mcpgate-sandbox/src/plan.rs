//! The sandbox of one child, fully resolved: which paths it may read or
//! write, its network rule, its uid and gid, its limits and the program to
//! execute. The gateway builds a [`Plan`] before each spawn and hands it to
//! the helper as JSON; `check-config` prints it with [`Plan::describe`].

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{FieldError, Limits, Mode, Network, RunAs, SandboxConfig};
use crate::support::{ABI_NET, ABI_SCOPE, Support};

/// What a path rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Read files, list directories, execute.
    Read,
    /// Everything Landlock handles: read, write, create, remove, execute.
    Write,
    /// Read and write an existing file (device nodes such as `/dev/null`).
    Device,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRule {
    pub path: PathBuf,
    pub access: Access,
}

/// The uid and gid the child switches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// One child's sandbox, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// `Required` fails the child when any rule cannot be applied.
    pub mode: Mode,
    pub rules: Vec<PathRule>,
    pub network: Network,
    /// `None`: keep mcpgate's own uid (mcpgate is not root).
    pub ids: Option<Ids>,
    pub limits: Limits,
    /// Working directory (the private directory unless `cwd` is configured).
    pub cwd: Option<PathBuf>,
    /// The program, resolved to an absolute path.
    pub program: PathBuf,
    /// `argv[0]` as configured.
    pub arg0: String,
}

/// Why a plan cannot be made; `field` is relative to the upstream.
pub type PlanError = FieldError;

fn plan_err(field: &'static str, message: impl Into<String>) -> PlanError {
    crate::config::field_err(field, message)
}

/// Read-only paths every child gets (those that exist): system libraries
/// and programs, the `/etc` files that name resolution, time zones, TLS
/// roots and interpreters read, the random devices, and a few `/proc` and
/// `/sys` files that runtimes use to size themselves.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/debian_version",
    "/etc/locale.alias",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/cpuinfo",
    "/sys/devices/system/cpu",
];

/// Devices every child may read and write.
const SYSTEM_DEVICES: &[&str] = &["/dev/null", "/dev/full"];

/// The child's own `/proc/<pid>`: the helper opens `/proc/self`, and after
/// `execve` the child has the helper's pid.
pub const PROC_SELF: &str = "/proc/self";

/// `/etc` entries of installed interpreters (`/etc/python3.11`, ...).
fn interpreter_etc() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir("/etc") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = dir
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("python3") || n == "nodejs"
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Finds `command` the way `execvp` would with the child's `PATH`.
pub fn resolve_program(command: &str, path_env: &str, cwd: &Path) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if command.contains('/') {
        let p = cwd.join(command);
        return is_exec(&p).then_some(p);
    }
    path_env
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(command))
        .find(|p| is_exec(p))
}

/// The directory a program is installed in: its directory, or the prefix
/// above a `bin` directory (`/opt/tool/bin/x` → `/opt/tool`, which holds its
/// libraries too), never `/` itself.
fn install_dir(program: &Path) -> Option<PathBuf> {
    let dir = program.parent()?;
    let up = dir.parent();
    let dir = match up {
        Some(up) if dir.file_name() == Some(OsStr::new("bin")) && up.parent().is_some() => up,
        _ => dir,
    };
    dir.parent().is_some().then(|| dir.to_path_buf())
}

/// What a plan is built from.
pub struct PlanInput<'a> {
    pub config: &'a SandboxConfig,
    pub command: &'a str,
    /// The `PATH` the child will have.
    pub path_env: &'a str,
    /// The configured working directory, if any.
    pub cwd: Option<&'a Path>,
    /// Paths no rule may open (mcpgate's data dir, its config file, key files).
    pub protected: &'a [PathBuf],
    pub support: Support,
}

impl Plan {
    /// Resolves a sandbox config for one command. Fails when the program
    /// cannot be found, `run_as` cannot be honoured, a rule would expose a
    /// protected path, or (mode `required`) the kernel lacks a feature.
    pub fn build(input: &PlanInput<'_>) -> Result<Plan, PlanError> {
        let cfg = input.config;
        let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let base = input.cwd.unwrap_or(&here);
        let program = resolve_program(input.command, input.path_env, base).ok_or_else(|| {
            plan_err(
                "stdio.command",
                format!(
                    "{:?} is not an executable file (PATH={})",
                    input.command, input.path_env
                ),
            )
        })?;
        if cfg.mode == Mode::Required {
            let missing = missing(cfg, input.support);
            if !missing.is_empty() {
                return Err(plan_err(
                    "sandbox.mode",
                    format!(
                        "the sandbox cannot be applied in full on this kernel: missing {}. \
                         Run on a kernel with Landlock ABI {ABI_SCOPE} and seccomp (Linux 6.12 or later), \
                         or set [upstream.sandbox] mode = \"best-effort\" to apply what is available",
                        missing.join(", ")
                    ),
                ));
            }
        }
        let ids = resolve_ids(&cfg.run_as, input.support.root)?;
        let mut rules = Vec::new();
        let mut add = |path: PathBuf, access: Access| {
            if path.exists() && !rules.iter().any(|r: &PathRule| r.path == path) {
                rules.push(PathRule { path, access });
            }
        };
        for p in SYSTEM_READ {
            add(PathBuf::from(p), Access::Read);
        }
        for p in interpreter_etc() {
            add(p, Access::Read);
        }
        for p in SYSTEM_DEVICES {
            add(PathBuf::from(p), Access::Device);
        }
        let canonical = program.canonicalize().unwrap_or_else(|_| program.clone());
        for p in [&program, &canonical] {
            if let Some(d) = install_dir(p) {
                add(d, Access::Read);
            }
        }
        if let Some(c) = input.cwd {
            add(c.to_path_buf(), Access::Read);
        }
        for (field, list, access) in [
            ("sandbox.read", &cfg.read, Access::Read),
            ("sandbox.write", &cfg.write, Access::Write),
        ] {
            for p in list {
                if !p.exists() {
                    return Err(plan_err(field, format!("{} does not exist", p.display())));
                }
                // A declared path wins over a default rule of the same path.
                rules.retain(|r| &r.path != p);
                rules.push(PathRule {
                    path: p.clone(),
                    access,
                });
            }
        }
        let protected: Vec<(&PathBuf, PathBuf)> = input
            .protected
            .iter()
            .map(|p| (p, p.canonicalize().unwrap_or_else(|_| p.clone())))
            .collect();
        for r in &rules {
            let rp = r.path.canonicalize().unwrap_or_else(|_| r.path.clone());
            for (prot, pp) in &protected {
                if pp.starts_with(&rp) {
                    let field = match r.access {
                        Access::Write => "sandbox.write",
                        _ if cfg.read.contains(&r.path) => "sandbox.read",
                        _ => "stdio.command",
                    };
                    return Err(plan_err(
                        field,
                        format!(
                            "{} would open {} (mcpgate's own files) to the server; \
                             install the server elsewhere or declare a narrower path",
                            r.path.display(),
                            prot.display()
                        ),
                    ));
                }
            }
        }
        Ok(Plan {
            mode: cfg.mode,
            rules,
            network: cfg.network.clone(),
            ids,
            limits: cfg.limits,
            cwd: input.cwd.map(Path::to_path_buf),
            program,
            arg0: input.command.to_string(),
        })
    }

    /// Gives the child its private directory: read-write, and its working
    /// directory unless one is configured.
    pub fn with_private_dir(mut self, dir: &Path) -> Self {
        self.rules.push(PathRule {
            path: dir.to_path_buf(),
            access: Access::Write,
        });
        if self.cwd.is_none() {
            self.cwd = Some(dir.to_path_buf());
        }
        self
    }

    /// Creates the child's private directory in the temp dir (`{prefix}XXXXXX`,
    /// mode 0700, owned by the child's uid) and gives it to the plan. The
    /// directory is removed when the returned guard is dropped: keep it as
    /// long as the child runs.
    pub fn with_new_private_dir(&self, prefix: &str) -> std::io::Result<(Plan, tempfile::TempDir)> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        if let Some(ids) = self.ids {
            std::os::unix::fs::chown(dir.path(), Some(ids.uid), Some(ids.gid))?;
        }
        let plan = self.clone().with_private_dir(dir.path());
        Ok((plan, dir))
    }

    /// Lines for `check-config`: the effective sandbox of one upstream.
    pub fn describe(&self, support: Support) -> Vec<String> {
        let mut out = vec![format!(
            "sandbox: {} (Landlock ABI {}, seccomp {})",
            self.mode.as_str(),
            support.landlock_abi,
            if support.seccomp { "yes" } else { "no" }
        )];
        let missing = missing_for(&self.network, support);
        if !missing.is_empty() {
            out.push(format!("  not available here: {}", missing.join(", ")));
        }
        out.push(format!("  program: {}", self.program.display()));
        out.push(match self.ids {
            Some(i) => format!("  runs as: uid {} gid {}", i.uid, i.gid),
            None => "  runs as: mcpgate's own user (mcpgate is not root)".to_string(),
        });
        for (label, access) in [
            ("read", Access::Read),
            ("write", Access::Write),
            ("devices", Access::Device),
        ] {
            let paths: Vec<String> = self
                .rules
                .iter()
                .filter(|r| r.access == access)
                .map(|r| r.path.display().to_string())
                .collect();
            let paths = if paths.is_empty() {
                "(none)".to_string()
            } else {
                paths.join(" ")
            };
            out.push(format!("  {label}: {paths}"));
        }
        out.push(format!(
            "  also: its own /proc/<pid>; a private temp dir (read-write, HOME and TMPDIR{})",
            if self.cwd.is_none() {
                ", working directory"
            } else {
                ""
            }
        ));
        out.push(format!(
            "  network: {}",
            match &self.network {
                Network::None => "none".to_string(),
                Network::Allow => "allow".to_string(),
                Network::Ports(p) => format!(
                    "TCP connect to ports {} (UDP not restricted)",
                    p.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
                ),
            }
        ));
        let l = &self.limits;
        let show = |v: Option<u64>, unit: u64, suffix: &str| match v {
            Some(n) => format!("{}{suffix}", n / unit),
            None => "unlimited".to_string(),
        };
        out.push(format!(
            "  limits: address space {}, CPU {}, open files {}, processes {}, file size {}",
            show(l.address_space, 1024 * 1024, " MiB"),
            show(l.cpu_secs, 1, " s"),
            show(l.open_files, 1, ""),
            show(l.processes, 1, ""),
            show(l.file_size, 1024 * 1024, " MiB"),
        ));
        out.push(
            "  seccomp: ptrace, process_vm_*, mount, bpf, perf_event_open, keyctl, userfaultfd, \
             io_uring, namespaces, kexec, modules ... denied"
                .to_string(),
        );
        out
    }
}

/// The kernel features `cfg` needs that `support` lacks.
pub fn missing(cfg: &SandboxConfig, support: Support) -> Vec<String> {
    if cfg.mode == Mode::Off {
        return Vec::new();
    }
    missing_for(&cfg.network, support)
}

fn missing_for(network: &Network, support: Support) -> Vec<String> {
    let mut m = Vec::new();
    let abi = support.landlock_abi;
    if abi == 0 {
        m.push("Landlock (file system rules)".to_string());
    }
    if abi < ABI_NET && *network != Network::Allow {
        m.push(format!(
            "Landlock ABI {ABI_NET} (TCP rules; kernel has {abi})"
        ));
    }
    if abi < ABI_SCOPE {
        m.push(format!(
            "Landlock ABI {ABI_SCOPE} (signal and abstract socket scoping; kernel has {abi})"
        ));
    }
    if !support.seccomp {
        m.push("seccomp".to_string());
    }
    m
}

fn resolve_ids(run_as: &RunAs, root: bool) -> Result<Option<Ids>, PlanError> {
    use nix::unistd::{Uid, User};
    let current = nix::unistd::geteuid();
    let ids = match run_as {
        RunAs::Default if !root => return Ok(None),
        RunAs::Default => match User::from_name("nobody") {
            Ok(Some(u)) => Ids {
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            },
            _ => Ids {
                uid: 65534,
                gid: 65534,
            },
        },
        RunAs::User(name) => match User::from_name(name) {
            Ok(Some(u)) => Ids {
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            },
            _ => {
                return Err(plan_err(
                    "sandbox.run_as",
                    format!("no user {name:?} in the account database"),
                ));
            }
        },
        RunAs::Ids { uid, gid } => Ids {
            uid: *uid,
            gid: *gid,
        },
    };
    if ids.uid == 0 || ids.gid == 0 {
        return Err(plan_err(
            "sandbox.run_as",
            "resolves to root; a stdio server never runs as root",
        ));
    }
    if !root {
        if Uid::from_raw(ids.uid) == current {
            return Ok(None);
        }
        return Err(plan_err(
            "sandbox.run_as",
            "switching users needs mcpgate to run as root; remove run_as to run the server as mcpgate's own user",
        ));
    }
    Ok(Some(ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn support() -> Support {
        Support {
            landlock_abi: 6,
            seccomp: true,
            root: true,
        }
    }

    fn input<'a>(cfg: &'a SandboxConfig, protected: &'a [PathBuf]) -> PlanInput<'a> {
        PlanInput {
            config: cfg,
            command: "sh",
            path_env: "/usr/bin:/bin",
            cwd: None,
            protected,
            support: support(),
        }
    }

    #[test]
    fn install_dir_climbs_out_of_bin_but_never_to_root() {
        assert_eq!(
            install_dir(Path::new("/opt/tool/bin/x")),
            Some(PathBuf::from("/opt/tool"))
        );
        assert_eq!(
            install_dir(Path::new("/srv/target/debug/x")),
            Some(PathBuf::from("/srv/target/debug"))
        );
        assert_eq!(
            install_dir(Path::new("/bin/true")),
            Some(PathBuf::from("/bin"))
        );
        assert_eq!(install_dir(Path::new("/x")), None);
    }

    #[test]
    fn default_plan_runs_as_nobody_with_no_network() {
        let cfg = SandboxConfig::default();
        let p = Plan::build(&input(&cfg, &[])).unwrap();
        assert_eq!(p.network, Network::None);
        let ids = p.ids.expect("root gateway switches uid");
        assert_ne!(ids.uid, 0);
        assert!(p.program.is_absolute());
        assert!(
            p.rules
                .iter()
                .any(|r| r.path == Path::new("/usr") && r.access == Access::Read)
        );
        assert!(!p.rules.iter().any(|r| r.access == Access::Write));
        assert!(
            !p.rules
                .iter()
                .any(|r| r.path == Path::new("/") || r.path == Path::new("/tmp"))
        );
    }

    #[test]
    fn kernel_gaps_refuse_required_and_pass_best_effort() {
        let mut cfg = SandboxConfig::default();
        let protected = [];
        let mut i = input(&cfg, &protected);
        i.support.landlock_abi = 3;
        let e = Plan::build(&i).unwrap_err();
        assert_eq!(e.field, "sandbox.mode");
        assert!(e.message.contains("Landlock ABI 4"), "{e}");
        assert!(e.message.contains("best-effort"), "{e}");
        cfg.mode = Mode::BestEffort;
        let mut i = input(&cfg, &protected);
        i.support.landlock_abi = 3;
        assert!(Plan::build(&i).is_ok());
    }

    #[test]
    fn a_rule_over_a_protected_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let cfg = SandboxConfig {
            write: vec![dir.path().to_path_buf()],
            ..SandboxConfig::default()
        };
        let protected = [data];
        let e = Plan::build(&input(&cfg, &protected)).unwrap_err();
        assert_eq!(e.field, "sandbox.write");
    }

    #[test]
    fn run_as_needs_root_and_never_resolves_to_root() {
        assert!(
            resolve_ids(
                &RunAs::Ids {
                    uid: 4242,
                    gid: 4242
                },
                false
            )
            .is_err()
        );
        assert_eq!(resolve_ids(&RunAs::Default, false).unwrap(), None);
        let nobody = resolve_ids(&RunAs::Default, true).unwrap().unwrap();
        assert_ne!(nobody.uid, 0);
    }
}
