//! `mcpgate-play-user`: the headless user of the interop drivers written in Node and Python
//! (ci/interop/headless.mjs, ci/interop/py_client.py), so that every driver signs in and approves
//! consent through the same code as the Rust tests (`mcpgate_testkit::Browser::play`).
//!
//! ```text
//! mcpgate-play-user --until REDIRECT_PREFIX [--visit] [--jar FILE] [--username NAME]
//!                   [--password PW] [--new-password PW] [--provider-login NAME] URL
//! ```
//!
//! Follows the authorization URL (mcpgate's sign-in, password change and consent pages, or
//! oidc-provider's development interactions) until a redirect starts with `REDIRECT_PREFIX`, and
//! prints one JSON line: `{"redirect": URL, "consents": [{"at": ..., "scopes": [...]}]}`. With
//! `--visit` the redirect is then followed too (a connect flow ends at mcpgate's own callback),
//! and `"visited": {"status": N, "body": TEXT}` is added. The
//! cookies live in the `--jar` file between runs (a JSON object, name to value), so a second
//! authorization finds the session of the first, as a browser would. On failure: a message on
//! stderr and exit status 1. Only the URLs it is given (127.0.0.1 in the drivers) are contacted.

use std::collections::BTreeMap;
use std::process::ExitCode;

use mcpgate_testkit::{Browser, User};
use serde_json::json;

const USAGE: &str = "usage: mcpgate-play-user --until REDIRECT_PREFIX [--visit] [--jar FILE] \
[--username NAME] [--password PW] [--new-password PW] [--provider-login NAME] URL";

struct Args {
    url: String,
    until: String,
    visit: bool,
    jar: Option<String>,
    user: User,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut url, mut until, mut jar, mut visit) = (None, None, None, false);
    let mut user = User::new("admin", "");
    let mut new_password = None;
    let mut provider_login = None;
    while let Some(a) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--until" => until = Some(value()?),
            "--visit" => visit = true,
            "--jar" => jar = Some(value()?),
            "--username" => user.username = value()?,
            "--password" => user.password = value()?,
            "--new-password" => new_password = Some(value()?),
            "--provider-login" => provider_login = Some(value()?),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ if url.is_none() => url = Some(a),
            _ => return Err(format!("unexpected argument {a}")),
        }
    }
    user.new_password = new_password.unwrap_or_else(|| user.password.clone());
    user.provider_login = provider_login.unwrap_or_else(|| user.username.clone());
    Ok(Args {
        url: url.ok_or("no authorization URL")?,
        until: until.ok_or("no --until")?,
        visit,
        jar,
        user,
    })
}

fn load_jar(path: &str) -> Result<BTreeMap<String, String>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{path}: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

async fn run(args: Args) -> Result<serde_json::Value, String> {
    let mut browser = Browser::new();
    if let Some(jar) = &args.jar {
        for (name, value) in load_jar(jar)? {
            browser.set_cookie(&name, &value);
        }
    }
    let played = browser.play(&args.url, &args.until, &args.user).await;
    let visited = match &played {
        Ok(p) if args.visit => Some(
            browser
                .try_get(&p.redirect)
                .await
                .map_err(|e| format!("{}: {e}", p.redirect))?,
        ),
        _ => None,
    };
    if let Some(jar) = &args.jar {
        let bytes = serde_json::to_vec(browser.cookies()).map_err(|e| e.to_string())?;
        std::fs::write(jar, bytes).map_err(|e| format!("{jar}: {e}"))?;
    }
    let played = played?;
    let consents: Vec<_> = played
        .consents
        .iter()
        .map(|c| json!({ "at": c.at, "scopes": c.scopes }))
        .collect();
    let mut out = json!({ "redirect": played.redirect, "consents": consents });
    if let Some(page) = visited {
        out["visited"] = json!({ "status": page.status, "body": page.body });
    }
    Ok(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mcpgate-play-user: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcpgate-play-user: {e}");
            ExitCode::FAILURE
        }
    }
}
