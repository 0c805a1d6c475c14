//! The MCP client's credential store (OAuth 2.1 §7.1 "store tokens securely"; MCP: keep refresh
//! tokens confidential at rest; SEP-2352: registration state per authorization server).
//!
//! Layout under the store directory (default `$XDG_DATA_HOME/mcpgate`, created mode 0700):
//!
//! - `tokens/<key>.json`: one [`TokenEntry`] per (issuer, resource), `key` a hash of both;
//! - `tokens/<key>.lock`: the lock file held across a refresh;
//! - `clients/<key>.json`: the [`ClientCredentials`] registered at one issuer.
//!
//! Every file is written atomically (a new temporary file created with mode 0600, synced, then
//! renamed over the old one), so a reader sees the old or the new content, never a mix. A
//! refresh holds an exclusive lock on the entry's lock file (`std::fs::File::lock`, `flock` on
//! Unix): a second process that wants to refresh waits, then re-reads the entry and uses the
//! token the first one obtained instead of spending the (already rotated) refresh token again.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use mcpgate_types::Secret;
use mcpgate_types::secret::hash_secret;
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, Result};
use crate::registration::ClientCredentials;

/// Serde helpers for [`Secret`], which deliberately has no `Serialize`: used only for the
/// store's files, which are mode 0600.
pub(crate) mod serde_secret {
    use mcpgate_types::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }

    pub(crate) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            s: &Option<Secret>,
            ser: S,
        ) -> Result<S::Ok, S::Error> {
            match s {
                Some(s) => ser.serialize_some(s.expose()),
                None => ser.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Secret>, D::Error> {
            Option::<String>::deserialize(d).map(|o| o.map(Secret::new))
        }
    }
}

/// The tokens held for one (issuer, resource).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenEntry {
    /// The issuer that issued the tokens (exact string).
    pub issuer: String,
    /// The RFC 8707 resource the tokens are for (exact PRM string).
    pub resource: String,
    /// The MCP server URL the user connected to.
    pub server_url: String,
    /// The access token.
    #[serde(with = "serde_secret")]
    pub access_token: Secret,
    /// The refresh token, if one was issued.
    #[serde(default, with = "serde_secret::option")]
    pub refresh_token: Option<Secret>,
    /// When the access token expires (seconds since the epoch), if known.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// The scopes held: as granted, or as requested when the AS did not say.
    #[serde(default)]
    pub scope: Option<String>,
    /// Scopes the AS or the user refused; not asked for again by step-up.
    #[serde(default)]
    pub denied_scopes: Vec<String>,
    /// When this entry was last written (seconds since the epoch).
    pub updated_at: i64,
    /// The key the tokens are bound to, when the grant is DPoP-bound (RFC 9449); such an
    /// access token is sent with the `DPoP` scheme and a proof signed with this key.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::dpop::serde_key"
    )]
    pub dpop_key: Option<std::sync::Arc<mcpgate_jose::SigningKey>>,
}

impl TokenEntry {
    /// Whether the access token expires within `skew` seconds of `now` (unknown expiry: no).
    pub fn expires_within(&self, now: i64, skew: i64) -> bool {
        self.expires_at.is_some_and(|t| t - skew <= now)
    }

    /// A view without any secret, for `mcpgate status`.
    pub fn summary(&self) -> TokenSummary {
        TokenSummary {
            issuer: self.issuer.clone(),
            resource: self.resource.clone(),
            server_url: self.server_url.clone(),
            expires_at: self.expires_at,
            scope: self.scope.clone(),
            has_refresh_token: self.refresh_token.is_some(),
            dpop_bound: self.dpop_key.is_some(),
            updated_at: self.updated_at,
        }
    }
}

/// What `mcpgate status` may show about an entry: never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenSummary {
    /// The issuer.
    pub issuer: String,
    /// The resource.
    pub resource: String,
    /// The MCP server URL.
    pub server_url: String,
    /// Access token expiry, if known.
    pub expires_at: Option<i64>,
    /// Scopes held.
    pub scope: Option<String>,
    /// Whether a refresh token is stored.
    pub has_refresh_token: bool,
    /// Whether the tokens are DPoP-bound to a key kept with them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound: bool,
    /// Last update.
    pub updated_at: i64,
}

/// The file store. Cheap to clone; every call touches the file system, so several processes
/// (and several handles in one process) see one state.
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: PathBuf,
}

/// An exclusive lock on one token entry, released when dropped.
#[derive(Debug)]
pub struct EntryLock {
    _file: File,
}

impl TokenStore {
    /// A store in `dir` (created on first write, mode 0700).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The default location: `$XDG_DATA_HOME/mcpgate` (or the platform's data directory).
    pub fn default_dir() -> Option<PathBuf> {
        dirs::data_dir().map(|d| d.join("mcpgate"))
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn key(parts: &[&str]) -> String {
        let joined = parts.join("\n");
        hash_secret(&joined)[..32].to_owned()
    }

    /// The path of the entry for (issuer, resource).
    pub fn token_path(&self, issuer: &str, resource: &str) -> PathBuf {
        self.dir
            .join("tokens")
            .join(format!("{}.json", Self::key(&[issuer, resource])))
    }

    fn lock_path(&self, issuer: &str, resource: &str) -> PathBuf {
        self.token_path(issuer, resource).with_extension("lock")
    }

    fn client_path(&self, issuer: &str) -> PathBuf {
        self.dir
            .join("clients")
            .join(format!("{}.json", Self::key(&[issuer])))
    }

    /// The entry for (issuer, resource), if any.
    pub fn load(&self, issuer: &str, resource: &str) -> Result<Option<TokenEntry>> {
        read_json(&self.token_path(issuer, resource))
    }

    /// Writes the entry for its (issuer, resource), atomically, mode 0600.
    pub fn save(&self, entry: &TokenEntry) -> Result<()> {
        write_json(&self.token_path(&entry.issuer, &entry.resource), entry)
    }

    /// Removes the entry for (issuer, resource). Missing is fine.
    pub fn remove(&self, issuer: &str, resource: &str) -> Result<()> {
        let path = self.token_path(issuer, resource);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ClientError::store(path, e)),
        }
    }

    /// Every stored entry (unreadable files are skipped with a warning).
    pub fn list(&self) -> Result<Vec<TokenEntry>> {
        let dir = self.dir.join("tokens");
        let read = match fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ClientError::store(dir, e)),
        };
        let mut out = Vec::new();
        for item in read {
            let path = item.map_err(|e| ClientError::store(&dir, e))?.path();
            if path.extension().is_some_and(|x| x == "json") {
                match read_json::<TokenEntry>(&path) {
                    Ok(Some(entry)) => out.push(entry),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "skipping unreadable token file"),
                }
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.updated_at));
        Ok(out)
    }

    /// The most recently updated entry obtained for `server_url`.
    pub fn find_for_server(&self, server_url: &str) -> Result<Option<TokenEntry>> {
        Ok(self
            .list()?
            .into_iter()
            .find(|e| e.server_url == server_url))
    }

    /// Blocks (off the async runtime) until the exclusive lock of (issuer, resource) is held.
    pub async fn lock(&self, issuer: &str, resource: &str) -> Result<EntryLock> {
        let path = self.lock_path(issuer, resource);
        ensure_dir(path.parent().unwrap_or(&self.dir))?;
        let task_path = path.clone();
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
            let file = open_private(&task_path, false)?;
            file.lock()?;
            Ok(file)
        })
        .await
        .map_err(|e| ClientError::store(&path, std::io::Error::other(e.to_string())))?
        .map_err(|e| ClientError::store(&path, e))?;
        Ok(EntryLock { _file: file })
    }

    /// The credentials registered at `issuer`, if any.
    pub fn load_client(&self, issuer: &str) -> Result<Option<ClientCredentials>> {
        let found: Option<ClientCredentials> = read_json(&self.client_path(issuer))?;
        // A file that names another issuer is never used for this one.
        Ok(found.filter(|c| c.issuer == issuer))
    }

    /// Stores credentials under their issuer, atomically, mode 0600.
    pub fn save_client(&self, credentials: &ClientCredentials) -> Result<()> {
        write_json(&self.client_path(&credentials.issuer), credentials)
    }

    /// Forgets the credentials registered at `issuer`.
    pub fn remove_client(&self, issuer: &str) -> Result<()> {
        let path = self.client_path(issuer);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ClientError::store(path, e)),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ClientError::store(path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ClientError::StoreCorrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        })
}

/// Atomic write: a fresh temporary file in the same directory (mode 0600, `create_new`), the
/// content, `fsync`, then `rename` over the target and `fsync` of the directory.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().ok_or_else(|| {
        ClientError::store(path, std::io::Error::other("path has no parent directory"))
    })?;
    ensure_dir(dir)?;
    let body = serde_json::to_vec_pretty(value).map_err(|e| ClientError::StoreCorrupt {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    let rng = mcpgate_jose::SystemRng::new();
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        mcpgate_jose::random_token(&rng, 9)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = open_private(&tmp, true)?;
        file.write_all(&body)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            // Durability of the rename; not every platform supports syncing a directory.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| ClientError::store(path, e))
}

/// Opens (creating) a file readable and writable by the owner only.
fn open_private(path: &Path, create_new: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(false);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Creates the directory (and parents) with mode 0700 when missing.
fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| ClientError::store(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgate_types::client_metadata::TokenEndpointAuthMethod;

    fn entry(issuer: &str, resource: &str, at: &str) -> TokenEntry {
        TokenEntry {
            issuer: issuer.into(),
            resource: resource.into(),
            server_url: resource.into(),
            access_token: Secret::new(at),
            refresh_token: Some(Secret::new("rt")),
            expires_at: Some(1000),
            scope: Some("a".into()),
            denied_scopes: vec![],
            updated_at: 1,
            dpop_key: None,
        }
    }

    #[test]
    fn a_dpop_key_is_kept_with_its_tokens_and_never_shown() {
        use mcpgate_jose::{KeyAlg, SigningKey};
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let key = SigningKey::generate("dpop", KeyAlg::Es256).unwrap();
        let e = TokenEntry {
            dpop_key: Some(std::sync::Arc::new(key.clone())),
            ..entry("https://a", "https://r", "one")
        };
        store.save(&e).unwrap();
        let got = store.load("https://a", "https://r").unwrap().unwrap();
        assert_eq!(
            got.dpop_key.as_ref().unwrap().public_jwk(),
            key.public_jwk()
        );
        assert!(got.summary().dpop_bound);
        assert!(!format!("{e:?}").contains("pkcs8"));
        // An entry without a key (every file written before DPoP) still loads.
        store.save(&entry("https://b", "https://r", "two")).unwrap();
        assert!(
            store
                .load("https://b", "https://r")
                .unwrap()
                .unwrap()
                .dpop_key
                .is_none()
        );
    }

    #[test]
    fn roundtrip_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path().join("store"));
        assert!(store.load("https://a", "https://r").unwrap().is_none());
        store.save(&entry("https://a", "https://r", "one")).unwrap();
        store.save(&entry("https://b", "https://r", "two")).unwrap();
        let got = store.load("https://a", "https://r").unwrap().unwrap();
        assert_eq!(got.access_token.expose(), "one");
        assert_eq!(
            store
                .load("https://b", "https://r")
                .unwrap()
                .unwrap()
                .access_token
                .expose(),
            "two"
        );
        // Exact strings: a trailing slash is another key.
        assert!(store.load("https://a/", "https://r").unwrap().is_none());
        assert_eq!(store.list().unwrap().len(), 2);
        store.remove("https://a", "https://r").unwrap();
        store.remove("https://a", "https://r").unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(!format!("{:?}", store.list().unwrap()[0].summary()).contains("two"));
    }

    #[test]
    fn clients_are_keyed_by_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let c = ClientCredentials {
            issuer: "https://as1".into(),
            client_id: "id1".into(),
            client_secret: Some(Secret::new("s")),
            token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
            kind: crate::registration::RegistrationKind::Dynamic,
            redirect_uris: vec![],
            client_secret_expires_at: None,
            private_key: None,
        };
        store.save_client(&c).unwrap();
        assert_eq!(
            store.load_client("https://as1").unwrap().unwrap().client_id,
            "id1"
        );
        assert!(store.load_client("https://as2").unwrap().is_none());
        assert!(format!("{c:?}").contains("redacted"));
    }

    #[test]
    fn expiry_with_skew() {
        let e = entry("i", "r", "t");
        assert!(!e.expires_within(900, 60));
        assert!(e.expires_within(950, 60));
        assert!(e.expires_within(2000, 0));
        let never = TokenEntry {
            expires_at: None,
            ..e
        };
        assert!(!never.expires_within(i64::MAX - 100, 60));
    }
}
