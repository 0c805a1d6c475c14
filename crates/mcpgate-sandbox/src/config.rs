//! `[upstream.sandbox]` as written in the TOML file, and its validation into
//! a [`SandboxConfig`]. Every field is optional: an absent table is the
//! default sandbox, which is the strictest one.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[upstream.sandbox]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxFile {
    /// `"required"` (default), `"best-effort"` or `"off"`.
    pub mode: Option<Mode>,
    /// Extra directories (or files) the child may read and execute.
    #[serde(default)]
    pub read: Vec<PathBuf>,
    /// Extra directories (or files) the child may read, write and execute.
    #[serde(default)]
    pub write: Vec<PathBuf>,
    /// `"none"` (default), `"allow"`, or a list of TCP ports it may connect to.
    pub network: Option<NetworkFile>,
    /// The account the child runs as when mcpgate runs as root (default `nobody`):
    /// a user name or `"UID:GID"`.
    pub run_as: Option<String>,
    /// `RLIMIT_AS` in MiB (default 8192; 0 = no limit).
    pub address_space_mb: Option<u64>,
    /// `RLIMIT_CPU` in seconds of CPU time (default 3600; 0 = no limit).
    pub cpu_secs: Option<u64>,
    /// `RLIMIT_NOFILE` (default 1024; 0 = no limit).
    pub open_files: Option<u64>,
    /// `RLIMIT_NPROC`: processes and threads of the child's user (default 256; 0 = no limit).
    pub processes: Option<u64>,
    /// `RLIMIT_FSIZE` in MiB: the largest file the child may write (default 1024; 0 = no limit).
    pub file_size_mb: Option<u64>,
}

/// How strictly the sandbox is applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Every rule is applied, or the child does not start (the default).
    #[default]
    Required,
    /// What the kernel offers is applied; what it lacks is logged as a warning.
    BestEffort,
    /// No sandbox at all. Must be written out.
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Required => "required",
            Mode::BestEffort => "best-effort",
            Mode::Off => "off",
        }
    }
}

/// `network = "none" | "allow" | [ports]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NetworkFile {
    Word(String),
    Ports(Vec<u16>),
}

/// What the child may do on the network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// No sockets at all (`socket(2)` fails), no TCP bind or connect.
    #[default]
    None,
    /// Anything the gateway's own network namespace allows.
    Allow,
    /// TCP connect to these ports only (any host), no TCP bind; UDP is not
    /// restricted by Landlock and stays open.
    Ports(Vec<u16>),
}

/// Who the child runs as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RunAs {
    /// `nobody` when mcpgate runs as root; mcpgate's own account otherwise.
    #[default]
    Default,
    /// A user name from the account database.
    User(String),
    /// Numeric ids.
    Ids { uid: u32, gid: u32 },
}

/// Resource limits; `None` leaves the limit as inherited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub address_space: Option<u64>,
    pub cpu_secs: Option<u64>,
    pub open_files: Option<u64>,
    pub processes: Option<u64>,
    pub file_size: Option<u64>,
}

const MIB: u64 = 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            address_space: Some(8192 * MIB),
            cpu_secs: Some(3600),
            open_files: Some(1024),
            processes: Some(256),
            file_size: Some(1024 * MIB),
        }
    }
}

/// A validated `[upstream.sandbox]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxConfig {
    pub mode: Mode,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub network: Network,
    pub run_as: RunAs,
    pub limits: Limits,
}

/// A field (relative to `[upstream.sandbox]`, or to the upstream for a
/// [`crate::Plan`]) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

pub(crate) fn field_err(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Most entries `read`, `write` or `network` may list.
const MAX_ENTRIES: usize = 64;

impl SandboxFile {
    /// Validates the table. Paths must be absolute; nothing is looked up yet
    /// (that happens when the child is planned, see [`crate::Plan`]).
    pub fn validate(&self) -> Result<SandboxConfig, FieldError> {
        let mut cfg = SandboxConfig {
            mode: self.mode.unwrap_or_default(),
            ..SandboxConfig::default()
        };
        for (field, list, out) in [
            ("read", &self.read, &mut cfg.read),
            ("write", &self.write, &mut cfg.write),
        ] {
            if list.len() > MAX_ENTRIES {
                return Err(field_err(field, format!("at most {MAX_ENTRIES} paths")));
            }
            for p in list {
                if !p.is_absolute() {
                    return Err(field_err(
                        field,
                        format!("{} is not an absolute path", p.display()),
                    ));
                }
                if p.as_os_str().as_encoded_bytes().contains(&0) {
                    return Err(field_err(field, "a path contains a NUL byte"));
                }
                if p.parent().is_none() {
                    return Err(field_err(
                        field,
                        "\"/\" would open the whole file system; list the directories the server needs",
                    ));
                }
                out.push(p.clone());
            }
        }
        cfg.network = match &self.network {
            None => Network::None,
            Some(NetworkFile::Word(w)) if w == "none" => Network::None,
            Some(NetworkFile::Word(w)) if w == "allow" => Network::Allow,
            Some(NetworkFile::Word(w)) => {
                return Err(field_err(
                    "network",
                    format!("{w:?}: use \"none\", \"allow\" or a list of TCP ports"),
                ));
            }
            Some(NetworkFile::Ports(p)) => {
                if p.is_empty() {
                    return Err(field_err(
                        "network",
                        "an empty port list: use \"none\" to deny the network",
                    ));
                }
                if p.len() > MAX_ENTRIES {
                    return Err(field_err("network", format!("at most {MAX_ENTRIES} ports")));
                }
                if p.contains(&0) {
                    return Err(field_err("network", "port 0 is not a port"));
                }
                let mut ports = p.clone();
                ports.sort_unstable();
                ports.dedup();
                Network::Ports(ports)
            }
        };
        cfg.run_as = match self.run_as.as_deref() {
            None => RunAs::Default,
            Some(s) => parse_run_as(s)?,
        };
        let d = Limits::default();
        let limit = |v: Option<u64>, default: Option<u64>, scale: u64, field: &'static str| match v
        {
            None => Ok(default),
            Some(0) => Ok(None),
            Some(n) => n
                .checked_mul(scale)
                .map(Some)
                .ok_or_else(|| field_err(field, "too large")),
        };
        cfg.limits = Limits {
            address_space: limit(
                self.address_space_mb,
                d.address_space,
                MIB,
                "address_space_mb",
            )?,
            cpu_secs: limit(self.cpu_secs, d.cpu_secs, 1, "cpu_secs")?,
            open_files: limit(self.open_files, d.open_files, 1, "open_files")?,
            processes: limit(self.processes, d.processes, 1, "processes")?,
            file_size: limit(self.file_size_mb, d.file_size, MIB, "file_size_mb")?,
        };
        if let Some(a) = cfg.limits.address_space
            && a < 64 * MIB
        {
            return Err(field_err(
                "address_space_mb",
                "below 64 MiB no interpreter starts; use 0 for no limit",
            ));
        }
        if let Some(n) = cfg.limits.open_files
            && n < 16
        {
            return Err(field_err("open_files", "at least 16 (0 = no limit)"));
        }
        if cfg.mode == Mode::Off
            && (!cfg.read.is_empty()
                || !cfg.write.is_empty()
                || self.network.is_some()
                || self.run_as.is_some())
        {
            return Err(field_err(
                "mode",
                "\"off\" applies no rule, so read, write, network and run_as would be ignored: remove them or choose \"best-effort\"",
            ));
        }
        Ok(cfg)
    }
}

fn parse_run_as(s: &str) -> Result<RunAs, FieldError> {
    if let Some((u, g)) = s.split_once(':') {
        let (Ok(uid), Ok(gid)) = (u.parse::<u32>(), g.parse::<u32>()) else {
            return Err(field_err(
                "run_as",
                format!("{s:?}: use a user name or \"UID:GID\" with numbers"),
            ));
        };
        if uid == 0 || gid == 0 {
            return Err(field_err("run_as", "a stdio server never runs as root"));
        }
        return Ok(RunAs::Ids { uid, gid });
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(field_err("run_as", format!("{s:?} is not a user name")));
    }
    if s == "root" {
        return Err(field_err("run_as", "a stdio server never runs as root"));
    }
    Ok(RunAs::User(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<SandboxConfig, FieldError> {
        let f: SandboxFile = serde_json::from_str(toml_text).expect("json");
        f.validate()
    }

    #[test]
    fn absent_table_is_the_strict_default() {
        let c = SandboxFile::default().validate().unwrap();
        assert_eq!(c.mode, Mode::Required);
        assert_eq!(c.network, Network::None);
        assert_eq!(c.run_as, RunAs::Default);
        assert_eq!(c.limits, Limits::default());
        assert!(c.read.is_empty() && c.write.is_empty());
    }

    #[test]
    fn bad_values_name_their_field() {
        for (text, field) in [
            (r#"{"read": ["relative/dir"]}"#, "read"),
            (r#"{"write": ["/"]}"#, "write"),
            (r#"{"network": "open"}"#, "network"),
            (r#"{"network": []}"#, "network"),
            (r#"{"network": [0]}"#, "network"),
            (r#"{"run_as": "root"}"#, "run_as"),
            (r#"{"run_as": "0:0"}"#, "run_as"),
            (r#"{"run_as": "1000:x"}"#, "run_as"),
            (r#"{"run_as": "a b"}"#, "run_as"),
            (r#"{"address_space_mb": 1}"#, "address_space_mb"),
            (r#"{"open_files": 3}"#, "open_files"),
            (r#"{"mode": "off", "read": ["/srv"]}"#, "mode"),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn widening_is_explicit() {
        let c = parse(
            r#"{"read": ["/srv/app"], "write": ["/var/lib/app"], "network": [443, 80, 443],
                "run_as": "1000:1000", "cpu_secs": 0}"#,
        )
        .unwrap();
        assert_eq!(c.network, Network::Ports(vec![80, 443]));
        assert_eq!(
            c.run_as,
            RunAs::Ids {
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!(c.limits.cpu_secs, None);
        assert_eq!(c.limits.open_files, Some(1024));
        assert_eq!(
            parse(r#"{"network": "allow"}"#).unwrap().network,
            Network::Allow
        );
        assert_eq!(parse(r#"{"mode": "off"}"#).unwrap().mode, Mode::Off);
    }
}
