//! The sandbox of mcpgate's stdio children.
//!
//! A stdio MCP server is third-party code that runs on the gateway's host,
//! next to its master key and database. Every child mcpgate starts is
//! confined, by default and without containers, by:
//!
//! - **Landlock** file system rules: read-only system directories, the
//!   program's own install directory and the paths the operator declares,
//!   read-write only a private temp dir and declared paths;
//! - **Landlock** TCP rules (ABI 4) and, with `network = "none"`, a seccomp
//!   rule that makes `socket(2)` fail;
//! - **Landlock** scoping (ABI 6): no signals and no abstract UNIX sockets
//!   outside the child's own domain;
//! - **seccomp**: a deny list of calls no MCP server needs ([`seccomp`]);
//! - `no_new_privs`, an empty capability set, an unprivileged uid/gid when
//!   mcpgate runs as root, and resource limits.
//!
//! [`config`] reads `[upstream.sandbox]`, [`Support`] detects the kernel,
//! [`Plan`] resolves one child's sandbox, and [`helper`] applies it between
//! fork and exec. [`protect_self`] makes the gateway itself non-dumpable.
//! See `docs/sandbox.md` for the threat model and each setting.

pub mod config;
pub mod helper;
pub mod plan;
pub mod seccomp;
pub mod support;

pub use config::{Limits, Mode, Network, RunAs, SandboxConfig, SandboxFile};
pub use plan::{Plan, PlanError, PlanInput};
pub use support::Support;

/// Makes this process non-dumpable: processes of the same uid can no longer
/// read its memory (`/proc/<pid>/mem`), environment or file descriptors, nor
/// attach to it with ptrace, and it writes no core file.
pub fn protect_self() -> std::io::Result<()> {
    nix::sys::prctl::set_dumpable(false).map_err(std::io::Error::from)
}

/// Whether this process is dumpable (for tests and `check-config`).
pub fn is_dumpable() -> bool {
    nix::sys::prctl::get_dumpable().unwrap_or(true)
}
