//! The helper that applies a [`Plan`] and executes the server.
//!
//! mcpgate is multi-threaded, so nothing but async-signal-safe calls may run
//! between `fork` and `exec` in it; building Landlock rulesets and seccomp
//! programs allocates. The gateway therefore starts a helper process,
//! `<helper> __sandbox-exec <plan JSON> -- <args>`, which is single-threaded:
//! it applies the plan to itself step by step and then `execve`s the server,
//! which inherits every restriction (same pid, same process group, same
//! pipes). The `mcpgate` binary is its own helper; the small
//! `mcpgate-sandbox` binary is the same entry point for programs that embed
//! the gateway (tests, benchmarks).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use nix::sys::resource::{Resource, setrlimit};

use crate::config::{Mode, Network};
use crate::plan::{Access as RuleAccess, PROC_SELF, Plan};
use crate::support::LANDLOCK_ABI;

/// The first argument that makes a binary act as the helper.
pub const HELPER_ARG: &str = "__sandbox-exec";
/// Environment variable naming a helper binary explicitly.
pub const HELPER_ENV: &str = "MCPGATE_SANDBOX_HELPER";
/// Name of the stand-alone helper binary.
pub const HELPER_BIN: &str = "mcpgate-sandbox";
/// Exit status of a helper that could not apply its plan (the server did not run).
pub const EXIT_SANDBOX_FAILED: i32 = 125;

static SELF_HELPER: OnceLock<PathBuf> = OnceLock::new();

/// Call first thing in `main` of a binary that can serve as the helper. When
/// the process was started as the helper it applies the plan and executes
/// the server (never returning); otherwise it records this binary as the
/// helper for children it will start.
pub fn init() {
    let mut args = std::env::args_os();
    let _argv0 = args.next();
    if args.next().as_deref() == Some(OsStr::new(HELPER_ARG)) {
        let rest: Vec<OsString> = args.collect();
        let code = match run(&rest) {
            Ok(never) => match never {},
            Err(e) => {
                eprintln!("mcpgate sandbox: {e}; the server was not started");
                EXIT_SANDBOX_FAILED
            }
        };
        std::process::exit(code);
    }
    if let Ok(exe) = std::env::current_exe() {
        let _ = SELF_HELPER.set(exe);
    }
}

/// The helper program for children of this process: `$MCPGATE_SANDBOX_HELPER`,
/// else this binary when it called [`init`], else `mcpgate-sandbox` next to
/// this executable or one directory up (a test binary in
/// `target/<profile>/deps` finds `target/<profile>/mcpgate-sandbox`).
pub fn locate() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(HELPER_ENV) {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = SELF_HELPER.get() {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(HELPER_BIN))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "no sandbox helper: looked at {candidates:?}; build it with \
                 `cargo build -p mcpgate-sandbox` or set {HELPER_ENV}"
            )
        })
}

/// The helper's argument list for `plan` and the server's arguments.
pub fn helper_args(plan: &Plan, args: &[String]) -> Vec<OsString> {
    let mut out = vec![
        OsString::from(HELPER_ARG),
        OsString::from(serde_json::to_string(plan).expect("a plan serialises")),
        OsString::from("--"),
    ];
    out.extend(args.iter().map(OsString::from));
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("usage: {HELPER_ARG} <plan JSON> -- [args...]")]
    Usage,
    #[error("the plan is not valid JSON: {0}")]
    Plan(serde_json::Error),
    #[error("{what}: {err}")]
    Sys { what: String, err: std::io::Error },
    #[error("Landlock: {0}")]
    Landlock(#[from] landlock::RulesetError),
    #[error("Landlock is only partly enforced on this kernel and the sandbox is required")]
    LandlockPartial,
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error("seccomp: {0}")]
    SeccompApply(seccompiler::Error),
    #[error("capabilities: {0}")]
    Caps(String),
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> ApplyError {
    let what = what.into();
    move |e| ApplyError::Sys {
        what,
        err: std::io::Error::from(e),
    }
}

enum Never {}

fn run(rest: &[OsString]) -> Result<Never, ApplyError> {
    let (plan, args) = match rest {
        [plan, dashes, args @ ..] if dashes == "--" => (plan, args),
        _ => return Err(ApplyError::Usage),
    };
    let plan: Plan =
        serde_json::from_str(plan.to_str().ok_or(ApplyError::Usage)?).map_err(ApplyError::Plan)?;
    let cannot_exec = |err: std::io::Error| ApplyError::Sys {
        what: format!("cannot execute {}", plan.program.display()),
        err,
    };
    // Opened before the uid changes, so a program whose directory the
    // unprivileged user cannot enter still starts; the file's own execute
    // bits and Landlock's EXECUTE right are checked at exec all the same.
    let program = open_program(&plan.program).map_err(cannot_exec)?;
    let cstr = |s: &OsStr| std::ffi::CString::new(s.as_bytes()).map_err(|_| ApplyError::Usage);
    let mut argv = vec![cstr(OsStr::new(&plan.arg0))?];
    for a in args {
        argv.push(cstr(a)?);
    }
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        let mut kv = k;
        kv.push("=");
        kv.push(v);
        env.push(cstr(&kv)?);
    }
    apply(&plan)?;
    let err = match nix::unistd::fexecve(&program, &argv, &env) {
        Ok(never) => match never {},
        Err(e) => std::io::Error::from(e),
    };
    Err(cannot_exec(err))
}

/// Opens the program to execute. A `#!` script is read again by its
/// interpreter through `/dev/fd/N`, so its descriptor stays open across exec.
/// A program mcpgate may execute but not read (mode 0711) is opened with
/// `O_PATH`, which is enough for `fexecve`.
fn open_program(path: &std::path::Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::unix::fs::FileExt;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            use nix::fcntl::OFlag;
            let fd = nix::fcntl::open(
                path,
                OFlag::O_PATH | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )?;
            return Ok(fd);
        }
        Err(e) => return Err(e),
    };
    let mut head = [0u8; 2];
    if f.read_at(&mut head, 0)? == 2 && &head == b"#!" {
        nix::fcntl::fcntl(
            &f,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )?;
    }
    Ok(f.into())
}

/// Applies `plan` to the calling (single-threaded) process, in this order:
/// limits, the Landlock ruleset (built, not yet enforced), capability
/// bounding set, groups, gid, uid, remaining capabilities, working
/// directory, Landlock enforced (which also sets `no_new_privs`), seccomp.
/// After it returns, executing the server is the only thing left to do.
pub fn apply(plan: &Plan) -> Result<(), ApplyError> {
    let strict = plan.mode == Mode::Required;
    set_limits(plan)?;
    // The rule paths are opened with mcpgate's privileges (a declared path may
    // lie below a directory the child's user cannot enter; Landlock then
    // allows, and the file modes still decide); the ruleset is enforced after
    // the uid has changed.
    let ruleset = landlock_ruleset(plan, strict)?;
    drop_privileges(plan, strict)?;
    if let Some(cwd) = &plan.cwd {
        nix::unistd::chdir(cwd).map_err(sys(format!("chdir {}", cwd.display())))?;
    }
    let status = ruleset.restrict_self()?;
    if strict && status.ruleset != RulesetStatus::FullyEnforced {
        return Err(ApplyError::LandlockPartial);
    }
    if status.ruleset != RulesetStatus::FullyEnforced {
        eprintln!(
            "mcpgate sandbox: Landlock {:?} (best-effort)",
            status.ruleset
        );
    }
    for f in crate::seccomp::filters(&plan.network)? {
        if let Err(e) = seccompiler::apply_filter(&f) {
            if strict {
                return Err(ApplyError::SeccompApply(e));
            }
            eprintln!("mcpgate sandbox: seccomp not applied (best-effort): {e}");
        }
    }
    Ok(())
}

fn set_limits(plan: &Plan) -> Result<(), ApplyError> {
    let l = &plan.limits;
    let set = |r: Resource, name: &str, soft: u64, hard: u64| {
        setrlimit(r, soft, hard).map_err(sys(format!("setrlimit {name}")))
    };
    // No core files: they would hold whatever the server had in memory.
    set(Resource::RLIMIT_CORE, "RLIMIT_CORE", 0, 0)?;
    if let Some(v) = l.address_space {
        set(Resource::RLIMIT_AS, "RLIMIT_AS", v, v)?;
    }
    if let Some(v) = l.cpu_secs {
        // SIGXCPU at the soft limit, SIGKILL five seconds later.
        set(Resource::RLIMIT_CPU, "RLIMIT_CPU", v, v.saturating_add(5))?;
    }
    if let Some(v) = l.open_files {
        set(Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", v, v)?;
    }
    if let Some(v) = l.processes {
        set(Resource::RLIMIT_NPROC, "RLIMIT_NPROC", v, v)?;
    }
    if let Some(v) = l.file_size {
        set(Resource::RLIMIT_FSIZE, "RLIMIT_FSIZE", v, v)?;
    }
    Ok(())
}

fn drop_privileges(plan: &Plan, strict: bool) -> Result<(), ApplyError> {
    use caps::CapSet;
    use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
    let root = nix::unistd::geteuid().is_root();
    if root {
        // Needs CAP_SETPCAP, so before the uid changes.
        caps::clear(None, CapSet::Bounding).map_err(|e| ApplyError::Caps(e.to_string()))?;
    }
    if let Some(ids) = plan.ids {
        let gid = Gid::from_raw(ids.gid);
        let uid = Uid::from_raw(ids.uid);
        setgroups(&[gid]).map_err(sys("setgroups"))?;
        setresgid(gid, gid, gid).map_err(sys(format!("setresgid {}", ids.gid)))?;
        setresuid(uid, uid, uid).map_err(sys(format!("setresuid {}", ids.uid)))?;
        if nix::unistd::geteuid().is_root() || nix::unistd::getuid().is_root() {
            return Err(ApplyError::Caps("still root after setresuid".into()));
        }
    } else if root {
        return Err(ApplyError::Caps(
            "mcpgate runs as root but the plan names no other user".into(),
        ));
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        if let Err(e) = caps::clear(None, set)
            && strict
        {
            return Err(ApplyError::Caps(format!("clearing {set:?}: {e}")));
        }
    }
    Ok(())
}

fn landlock_ruleset(plan: &Plan, strict: bool) -> Result<RulesetCreated, ApplyError> {
    let abi = LANDLOCK_ABI;
    let level = if strict {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let mut rs = Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(abi))?;
    if plan.network != Network::Allow {
        rs = rs.handle_access(AccessNet::from_all(abi))?;
    }
    let mut rs = rs.scope(Scope::from_all(abi))?.create()?;
    let file = AccessFs::from_file(abi);
    let rule_for = |path: &std::path::Path, access: RuleAccess| -> Result<_, ApplyError> {
        let fd = PathFd::new(path).map_err(|e| ApplyError::Sys {
            what: format!("opening {}", path.display()),
            err: std::io::Error::other(e.to_string()),
        })?;
        let is_dir = path.is_dir();
        let mut rights = match access {
            RuleAccess::Read => AccessFs::from_read(abi),
            RuleAccess::Write => AccessFs::from_all(abi),
            RuleAccess::Device => AccessFs::ReadFile | AccessFs::WriteFile,
        };
        if !is_dir {
            rights &= file;
        }
        Ok(PathBeneath::new(fd, rights))
    };
    for r in &plan.rules {
        match rule_for(&r.path, r.access) {
            Ok(rule) => rs = rs.add_rule(rule)?,
            Err(e) if strict => return Err(e),
            Err(e) => eprintln!("mcpgate sandbox: rule skipped (best-effort): {e}"),
        }
    }
    rs = rs.add_rule(rule_for(std::path::Path::new(PROC_SELF), RuleAccess::Read)?)?;
    if let Network::Ports(ports) = &plan.network {
        for p in ports {
            rs = rs.add_rule(NetPort::new(*p, AccessNet::ConnectTcp))?;
        }
    }
    Ok(rs)
}
