//! The helper binary against real processes: every rule is shown to deny
//! inside the sandbox and (where the rule is ours, not the kernel's DAC) to
//! allow the same action outside it, so removing a rule turns a test red.
//! These tests expect to run as root (as CI does): the sandbox then also
//! switches the child to `nobody`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mcpgate_sandbox::helper::helper_args;
use mcpgate_sandbox::{Network, Plan, PlanInput, SandboxConfig, Support};

const HELPER: &str = env!("CARGO_BIN_EXE_mcpgate-sandbox");
const PATH: &str = "/usr/bin:/bin";
const NOBODY: u32 = 65534;

struct Child {
    dir: tempfile::TempDir,
}

impl Child {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mcpgate-sbx-test-")
            .tempdir()
            .unwrap();
        if nix::unistd::geteuid().is_root() {
            let ids = nix::unistd::User::from_name("nobody").unwrap().unwrap();
            nix::unistd::chown(dir.path(), Some(ids.uid), Some(ids.gid)).unwrap();
        }
        Self { dir }
    }

    fn plan(&self, cfg: &SandboxConfig, command: &str) -> Plan {
        Plan::build(&PlanInput {
            config: cfg,
            command,
            path_env: PATH,
            cwd: None,
            protected: &[],
            support: Support::detect(),
        })
        .unwrap()
        .with_private_dir(self.dir.path())
    }

    fn run(&self, cfg: &SandboxConfig, command: &str, args: &[&str]) -> Output {
        let plan = self.plan(cfg, command);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Command::new(HELPER)
            .args(helper_args(&plan, &args))
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn sh(&self, cfg: &SandboxConfig, script: &str) -> Output {
        self.run(cfg, "sh", &["-c", script])
    }
}

/// The same shell script outside the sandbox, as `nobody` when we are root.
fn sh_unsandboxed(script: &str) -> Output {
    let mut c = Command::new("/bin/sh");
    c.args(["-c", script]).env_clear().env("PATH", PATH);
    if nix::unistd::geteuid().is_root() {
        c.uid(NOBODY).gid(NOBODY);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A world-readable directory with a world-readable file: only Landlock can
/// keep a `nobody` child out of it.
fn open_dir() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let f = d.path().join("secret");
    std::fs::write(&f, "s3cret").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
    (d, f)
}

#[test]
fn default_sandbox_confines_the_file_system() {
    let c = Child::new();
    let cfg = SandboxConfig::default();
    let (d, secret) = open_dir();
    let s = secret.display();
    let dir = d.path().display();
    // Control: without the sandbox the same user reads and writes it.
    ok(&sh_unsandboxed(&format!(
        "cat {s} && touch {dir}/x && ls /"
    )));
    // Inside: system files are readable, the private dir is writable ...
    let out = ok(&c.sh(
        &cfg,
        "cat /etc/passwd >/dev/null && echo hi > \"$HOME/f\" && cat \"$HOME/f\" && pwd",
    ));
    assert_eq!(out, format!("hi\n{}", c.dir.path().display()));
    // ... and nothing else.
    for script in [
        format!("cat {s}"),
        format!("touch {dir}/y"),
        format!("ls {dir}"),
        "ls /".to_string(),
        "touch /tmp/mcpgate-sbx-escape".to_string(),
        "cat /proc/1/environ".to_string(),
        "ls /root".to_string(),
    ] {
        let o = c.sh(&cfg, &script);
        assert!(!o.status.success(), "{script} was allowed:\n{}", text(&o));
    }
}

#[test]
fn declared_paths_open_exactly_what_they_name() {
    let c = Child::new();
    let (d, secret) = open_dir();
    let (w, _) = open_dir();
    let cfg = SandboxConfig {
        read: vec![d.path().to_path_buf()],
        write: vec![w.path().to_path_buf()],
        ..SandboxConfig::default()
    };
    let out = ok(&c.sh(
        &cfg,
        &format!(
            "cat {} && echo ok > {}/new && cat {}/new",
            secret.display(),
            w.path().display(),
            w.path().display()
        ),
    ));
    assert_eq!(out, "s3cretok");
    // read is read-only.
    let o = c.sh(&cfg, &format!("touch {}/nope", d.path().display()));
    assert!(!o.status.success(), "{}", text(&o));
}

#[test]
fn runs_unprivileged_with_limits_and_no_capabilities() {
    let c = Child::new();
    // `$$` is the helper's pid, whose /proc directory the child may read.
    let out = ok(&c.run(
        &SandboxConfig::default(),
        "bash",
        &[
            "-c",
            "id -u; id -g; ulimit -n; ulimit -u; grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/$$/status",
        ],
    ));
    let lines: Vec<&str> = out.lines().collect();
    if nix::unistd::geteuid().is_root() {
        assert_eq!(lines[0], NOBODY.to_string(), "{out}");
    }
    assert_eq!(lines[2], "1024", "{out}");
    assert_eq!(lines[3], "256", "{out}");
    for want in [
        "CapEff:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    if nix::unistd::geteuid().is_root() {
        assert!(out.contains("CapBnd:\t0000000000000000"), "{out}");
    }
}

fn connect_script(port: u16) -> String {
    format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected")
}

#[test]
fn network_none_allow_and_ports() {
    let c = Child::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let bash = |network: Network| {
        let cfg = SandboxConfig {
            network,
            ..SandboxConfig::default()
        };
        c.run(&cfg, "bash", &["-c", &connect_script(port)])
    };
    let o = bash(Network::None);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(ok(&bash(Network::Allow)), "connected");
    assert_eq!(ok(&bash(Network::Ports(vec![port]))), "connected");
    let other = if port == 65535 { port - 1 } else { port + 1 };
    let o = bash(Network::Ports(vec![other]));
    assert!(!o.status.success(), "{}", text(&o));
}

/// Python's ctypes calls each system call with numbers from the `libc` crate
/// and prints `name errno` (0 = it worked).
fn syscall_probe() -> String {
    let calls = [
        // kcmp(self, self, KCMP_FILE, 0, 0): allowed for oneself.
        ("kcmp", libc::SYS_kcmp, "os.getpid(), os.getpid(), 0, 0, 0"),
        // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 1)
        ("keyctl", libc::SYS_keyctl, "0, -2, 1"),
        // ptrace(PTRACE_TRACEME)
        ("ptrace", libc::SYS_ptrace, "0, 0, 0, 0"),
        // unshare(CLONE_NEWUSER)
        ("unshare", libc::SYS_unshare, "0x10000000"),
        // userfaultfd(UFFD_USER_MODE_ONLY)
        ("userfaultfd", libc::SYS_userfaultfd, "1"),
        // socket(AF_INET, SOCK_STREAM, 0)
        ("socket", libc::SYS_socket, "2, 1, 0"),
    ];
    let mut py = String::from(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n",
    );
    for (name, nr, args) in calls {
        py.push_str(&format!(
            "r = libc.syscall({nr}, {args}); print('{name}', 0 if r >= 0 else ctypes.get_errno())\n"
        ));
    }
    py
}

#[test]
fn seccomp_denies_what_no_server_needs() {
    let c = Child::new();
    let py = syscall_probe();
    let python = "/usr/bin/python3";
    assert!(
        Path::new(python).exists(),
        "the test needs Debian's python3"
    );
    // Control: outside the sandbox each call works for this unprivileged user.
    let mut control = Command::new(python);
    control.args(["-c", &py]).env_clear();
    if nix::unistd::geteuid().is_root() {
        control.uid(NOBODY).gid(NOBODY);
    }
    let control = ok(&control.output().unwrap());
    for line in control.lines() {
        assert!(
            line.ends_with(" 0"),
            "not allowed outside the sandbox: {line}"
        );
    }
    let out = ok(&c.run(&SandboxConfig::default(), python, &["-c", &py]));
    for line in out.lines() {
        // EPERM (1) from seccomp; keyctl may be EPERM or EACCES (13).
        let errno: i32 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(
            errno,
            libc::EPERM,
            "not denied in the sandbox: {line}\n{out}"
        );
    }
}

#[test]
fn children_cannot_signal_or_inspect_each_other() {
    let c = Child::new();
    let cfg = SandboxConfig::default();
    let plan = c.plan(&cfg, "sleep");
    let mut victim = Command::new(HELPER)
        .args(helper_args(&plan, &["30".to_string()]))
        .env_clear()
        .env("PATH", PATH)
        .spawn()
        .unwrap();
    let pid = victim.id();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Control: the same user outside any sandbox can.
    ok(&sh_unsandboxed(&format!(
        "kill -0 {pid} && head -c1 /proc/{pid}/environ >/dev/null"
    )));
    for script in [
        format!("kill -0 {pid}"),
        format!("cat /proc/{pid}/environ"),
        format!("ls /proc/{pid}/fd"),
    ] {
        let o = c.sh(&cfg, &script);
        assert!(!o.status.success(), "{script} was allowed:\n{}", text(&o));
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn a_bad_plan_or_program_starts_nothing() {
    let o = Command::new(HELPER)
        .args(["__sandbox-exec", "{not json", "--"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("was not started"));
    let c = Child::new();
    let mut plan = c.plan(&SandboxConfig::default(), "true");
    plan.program = PathBuf::from("/nonexistent/server");
    let o = Command::new(HELPER)
        .args(helper_args(&plan, &[]))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot execute /nonexistent/server"),
        "{}",
        text(&o)
    );
}

#[test]
fn protect_self_makes_the_process_non_dumpable() {
    assert!(mcpgate_sandbox::is_dumpable());
    mcpgate_sandbox::protect_self().unwrap();
    assert!(!mcpgate_sandbox::is_dumpable());
}

#[test]
fn a_program_the_unprivileged_user_cannot_reach_still_starts() {
    use std::os::unix::fs::PermissionsExt;
    // A directory only root may enter (like /root), holding a binary and a script.
    // Its install directory lies inside, so its Landlock rule must be opened
    // before the uid changes.
    let hidden = tempfile::tempdir().unwrap();
    std::fs::set_permissions(hidden.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = hidden.path().join("tools");
    std::fs::create_dir(&dir).unwrap();
    let bin = dir.join("hello-bin");
    std::fs::copy("/bin/echo", &bin).unwrap();
    let script = dir.join("hello-script");
    std::fs::write(&script, "#!/bin/sh\necho script says \"$1\"\n").unwrap();
    for p in [&bin, &script] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    if nix::unistd::geteuid().is_root() {
        // Control: as nobody, the path itself is out of reach.
        let o = sh_unsandboxed(&format!("{} hi", bin.display()));
        assert!(!o.status.success(), "{}", text(&o));
    }
    let c = Child::new();
    let cfg = SandboxConfig::default();
    assert_eq!(
        ok(&c.run(&cfg, bin.to_str().unwrap(), &["from", "a", "binary"])),
        "from a binary"
    );
    assert_eq!(
        ok(&c.run(&cfg, script.to_str().unwrap(), &["hi"])),
        "script says hi"
    );
    // Its siblings stay unreadable: only the program was opened for it.
    let o = c.sh(&cfg, &format!("ls {}", hidden.path().display()));
    assert!(!o.status.success(), "{}", text(&o));
    let o = c.sh(&cfg, &format!("ls {}", dir.display()));
    assert!(!o.status.success(), "{}", text(&o));
}

/// Runs a program this test has just written. Another test of this binary
/// may fork while the copy's file is still open for writing, and until that
/// child execs, executing the copy fails with ETXTBSY: try again then.
fn output_of_fresh_program(cmd: &mut Command) -> std::process::Output {
    for _ in 0..100 {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
    panic!("the program stayed busy (ETXTBSY)");
}

#[test]
fn an_execute_only_program_starts_for_an_unprivileged_gateway() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    // mcpgate runs as nobody; the program may be executed but not read.
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = d.path().join("exec-only");
    std::fs::copy("/bin/echo", &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o711)).unwrap();
    let c = Child::new();
    let plan = Plan::build(&PlanInput {
        config: &SandboxConfig::default(),
        command: bin.to_str().unwrap(),
        path_env: PATH,
        cwd: None,
        protected: &[],
        support: Support {
            root: false,
            ..Support::detect()
        },
    })
    .unwrap()
    .with_private_dir(c.dir.path());
    assert_eq!(plan.ids, None);
    // Cargo's helper may lie where nobody cannot go (a checkout under /root).
    let helper = d.path().join("helper");
    std::fs::copy(HELPER, &helper).unwrap();
    let mut cmd = Command::new(&helper);
    cmd.args(helper_args(
        &plan,
        &["still".to_string(), "runs".to_string()],
    ))
    .env_clear()
    .env("PATH", PATH)
    .uid(NOBODY)
    .gid(NOBODY);
    assert_eq!(ok(&output_of_fresh_program(&mut cmd)), "still runs");
}
