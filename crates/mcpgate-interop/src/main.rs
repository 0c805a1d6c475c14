//! Interop (ci/interop.sh): the official Rust MCP SDK client (rmcp) with its **own** OAuth support
//! (`auth` feature: `OAuthState`, `AuthorizationManager`, `AuthClient`) against
//! `mcpgate serve --demo`, the `notes` server at `$MCPGATE_URL/mcp/notes`.
//!
//! The user is played by the project's one headless user agent (`mcpgate_testkit::Browser`): it
//! GETs the authorization URL without following redirects, carries the `__Host-` cookies by hand,
//! and submits the sign-in, password-change and consent forms the pages render, reading the code
//! from the final `Location`.
//!
//! Environment: `MCPGATE_URL`, `MCPGATE_PASSWORD` (the admin's current password),
//! `MCPGATE_NEW_PASSWORD` (chosen when the server asks for a new one), `RESULT_FILE` (optional:
//! the JSON results for the matrix), `RMCP_VERSION` (shown in the matrix; from Cargo.lock). Prints `PASS name` / `FAIL name` per check; exits 1 on any
//! FAIL. Only 127.0.0.1 is contacted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use mcpgate_testkit::User;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{
    AuthClient, AuthError, AuthorizationCallback, AuthorizationManager, AuthorizationRequest,
    CredentialStore, OAuthState, StoredCredentials, WWWAuthenticateParams,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Never contacted: the code is read from the `Location` header.
const REDIRECT: &str = "http://127.0.0.1:1/callback";

// ---- results --------------------------------------------------------------------------------

#[derive(Default)]
struct Results {
    cells: BTreeMap<&'static str, Value>,
    failed: bool,
}

impl Results {
    fn check(&mut self, name: &str, ok: bool, note: &str) -> bool {
        let status = if ok { "PASS" } else { "FAIL" };
        if note.is_empty() {
            println!("{status} {name}");
        } else {
            println!("{status} {name} — {note}");
        }
        self.failed |= !ok;
        ok
    }
    fn cell(&mut self, key: &'static str, ok: bool, note: &str, workaround: bool) {
        let mut c = json!({"ok": ok, "note": note});
        if workaround {
            c["workaround"] = json!(true);
        }
        self.cells.insert(key, c);
    }
}

// ---- the credential store (rmcp's trait), shared with the test -------------------------------

/// In memory, like rmcp's `InMemoryCredentialStore`, but the test can read and replace the
/// stored token (to make the access token unusable) and count saves.
#[derive(Clone, Default)]
struct Store {
    creds: Arc<Mutex<Option<StoredCredentials>>>,
    saves: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl CredentialStore for Store {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        Ok(self.creds.lock().await.clone())
    }
    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        *self.creds.lock().await = Some(credentials);
        Ok(())
    }
    async fn clear(&self) -> Result<(), AuthError> {
        *self.creds.lock().await = None;
        Ok(())
    }
}

impl Store {
    /// The stored token response as JSON.
    async fn token(&self) -> Value {
        let c = self.creds.lock().await;
        c.as_ref()
            .and_then(|c| c.token_response.as_ref())
            .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
            .unwrap_or(Value::Null)
    }
    async fn granted(&self) -> Vec<String> {
        let c = self.creds.lock().await;
        c.as_ref()
            .map(|c| c.granted_scopes.clone())
            .unwrap_or_default()
    }
    /// Replaces the stored access token (keeps the refresh token).
    async fn replace_access_token(&self, bogus: &str) -> Result<()> {
        let mut c = self.creds.lock().await;
        let stored = c.as_mut().context("no stored credentials")?;
        let mut t = serde_json::to_value(
            stored
                .token_response
                .as_ref()
                .context("no token response")?,
        )?;
        t["access_token"] = json!(bogus);
        stored.token_response = Some(serde_json::from_value(t)?);
        Ok(())
    }
}

// ---- the user -------------------------------------------------------------------------------

/// The project's one headless user agent (`mcpgate_testkit::Browser`) and the consent pages it
/// approved.
struct Browser {
    agent: mcpgate_testkit::Browser,
    user: User,
    consents: Vec<Vec<String>>,
}

impl Browser {
    fn new(password: &str, new_password: &str) -> Self {
        let mut user = User::new("admin", password);
        user.new_password = new_password.to_owned();
        Self {
            agent: mcpgate_testkit::Browser::new(),
            user,
            consents: Vec::new(),
        }
    }

    /// Follows an authorization URL through sign-in, password change and consent; returns the
    /// redirect to [`REDIRECT`] (with code, state and iss).
    async fn authorize(&mut self, url: &str) -> Result<String> {
        let played = self
            .agent
            .play(url, REDIRECT, &self.user)
            .await
            .map_err(|e| anyhow!("authorize: {e}"))?;
        self.consents
            .extend(played.consents.into_iter().map(|c| c.scopes));
        Ok(played.redirect)
    }
}

// ---- the flow -------------------------------------------------------------------------------

type Client = RunningService<RoleClient, ClientConfig>;

fn client_info() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("mcpgate-interop-rmcp", "1.0.0"),
    )
}

async fn connect(url: &str, auth: AuthClient<reqwest::Client>) -> Result<Client> {
    let transport = StreamableHttpClientTransport::with_client(
        auth,
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
    );
    Ok(client_info().serve(transport).await?)
}

async fn call(client: &Client, name: &'static str, args: Value) -> Result<CallToolResult> {
    let Value::Object(args) = args else {
        bail!("arguments must be an object")
    };
    Ok(client
        .call_tool(CallToolRequestParams::new(name).with_arguments(args))
        .await?)
}

fn text_of(r: &CallToolResult) -> String {
    serde_json::to_string(&r.content)
        .unwrap_or_default()
        .chars()
        .take(80)
        .collect()
}

fn query(url: &str, key: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

struct Env {
    base: String,
    server: String,
}

async fn run(res: &mut Results, env: &Env, b: &mut Browser) -> Result<()> {
    let server = env.server.as_str();
    // 1. Unauthenticated connect: the 401 challenge names the resource metadata.
    let err = client_info()
        .serve(StreamableHttpClientTransport::from_uri(server.to_owned()))
        .await
        .err()
        .context("an unauthenticated initialize succeeded")?;
    let challenge = err
        .auth_challenge()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no challenge in the initialize error: {err}"))?;
    let params = WWWAuthenticateParams::parse(&challenge, &url::Url::parse(server)?);

    // 2. rmcp's OAuthState: PRM -> AS metadata -> DCR -> authorization URL (PKCE S256).
    let store = Store::default();
    let mut manager = AuthorizationManager::new(server).await?;
    manager.set_credential_store(store.clone());
    let mut state = OAuthState::Unauthorized(manager);
    state
        .start_authorization(
            AuthorizationRequest::new(REDIRECT)
                .with_client_name("mcpgate interop (rmcp)")
                .with_challenge(challenge.clone()),
        )
        .await
        .context("start_authorization")?;
    let auth_url = state.get_authorization_url().await?;
    let discovery = params.resource_metadata_url.as_ref().is_some_and(|u| {
        u.as_str()
            == format!(
                "{}/.well-known/oauth-protected-resource/mcp/notes",
                env.base
            )
    }) && auth_url.starts_with(&format!("{}/oauth/authorize?", env.base));
    let ok = res.check(
        "discovery (401 challenge → PRM → AS metadata, by rmcp)",
        discovery,
        &format!("challenge {challenge:?}"),
    );
    res.cell("discovery", ok, "", false);
    let (client_id, _) = state.get_credentials().await?;
    let ok = res.check(
        "registration (DCR by rmcp)",
        !client_id.is_empty() && query(&auth_url, "client_id").as_deref() == Some(&client_id),
        &format!("client_id {client_id}"),
    );
    res.cell("registration", ok, "", false);

    // 3. The user signs in and approves; rmcp exchanges the code (verifier, iss check).
    let callback = b.authorize(&auth_url).await?;
    let iss = query(&callback, "iss");
    state
        .handle_callback_url(&callback)
        .await
        .context("handle_callback_url")?;
    let granted = store.granted().await;
    let token = store.token().await;
    let pkce = query(&auth_url, "code_challenge_method").as_deref() == Some("S256")
        && query(&auth_url, "code_challenge").is_some()
        && query(&auth_url, "resource").as_deref() == Some(server);
    let ok = res.check(
        "auth code + PKCE (S256, resource, consent approved through the form, iss)",
        pkce && iss.as_deref() == Some(env.base.as_str())
            && !b.consents.is_empty()
            && granted.iter().any(|s| s == "notes:read")
            && token["access_token"].is_string(),
        &format!(
            "scopes shown on consent: {:?}; granted {:?}",
            b.consents.first(),
            granted
        ),
    );
    res.cell("authcode", ok, "", false);
    let OAuthState::Authorized(manager) = state else {
        bail!("OAuthState is not Authorized after the callback");
    };
    let auth = AuthClient::new(reqwest::Client::new(), manager);

    // 4. tools/list + tools/call through rmcp's AuthClient.
    let mut client = connect(server, auth.clone()).await?;
    let tools = client.list_all_tools().await?;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    let listed = res.check(
        "tools/list",
        names.contains(&"list_notes") && names.contains(&"add_note"),
        &names.join(","),
    );
    let r = call(&client, "list_notes", json!({})).await?;
    let called = res.check(
        "tools/call list_notes",
        r.is_error != Some(true),
        &text_of(&r),
    );
    res.cell("tools", listed && called, "", false);

    // 5. Step-up: add_note needs notes:write.
    let add = json!({"title": "interop", "body": "from rmcp"});
    let step = match call(&client, "add_note", add.clone()).await {
        Ok(r) => {
            res.check(
                "step-up: add_note refused with 403 insufficient_scope",
                false,
                &format!("it succeeded: {}", text_of(&r)),
            );
            false
        }
        Err(e) => {
            let challenge = e
                .downcast_ref::<rmcp::ServiceError>()
                .and_then(|e| e.auth_challenge())
                .map(str::to_owned)
                .unwrap_or_default();
            let p = WWWAuthenticateParams::parse(&challenge, &url::Url::parse(server)?);
            let ch_ok = res.check(
                "step-up: 403 insufficient_scope challenge names notes:write (surfaced by rmcp as ServiceError::auth_challenge)",
                p.is_insufficient_scope() && p.scope.as_deref().is_some_and(|s| s.contains("notes:write")),
                &format!("{challenge:?}; error: {e}"),
            );
            // rmcp does not re-authorize by itself: the application asks the manager for the
            // upgrade URL (union of the granted and challenged scopes), the user approves, and
            // the manager exchanges the code.
            let consents = b.consents.len();
            let url = {
                let m = auth.auth_manager.lock().await;
                m.request_scope_upgrade(p.scope.as_deref().unwrap_or("notes:write"))
                    .await?
            };
            let back = b.authorize(&url).await?;
            let cb = AuthorizationCallback::from_redirect_url(&back)?;
            {
                let m = auth.auth_manager.lock().await;
                m.exchange_code_for_token_with_issuer(
                    &cb.code,
                    &cb.csrf_token,
                    cb.issuer.as_deref(),
                )
                .await?;
            }
            let granted = store.granted().await;
            let reauth = res.check(
                "step-up: rmcp's request_scope_upgrade → consent approved again → token with notes:write",
                b.consents.len() > consents && granted.iter().any(|s| s == "notes:write"),
                &format!("consent scopes {:?}; granted {granted:?}", b.consents.last()),
            );
            // Retry on the same session; a transport that gave up after the 403 gets a new one.
            let r = match call(&client, "add_note", add.clone()).await {
                Ok(r) => r,
                Err(e) => {
                    println!("INFO add_note retry on the same session failed ({e}); reconnecting");
                    client = connect(server, auth.clone()).await?;
                    call(&client, "add_note", add.clone()).await?
                }
            };
            let retried = res.check(
                "step-up: add_note retried and succeeded",
                r.is_error != Some(true),
                &text_of(&r),
            );
            ch_ok && reauth && retried
        }
    };
    res.cell(
        "stepup",
        step,
        "rmcp does not step up by itself: on 403 insufficient_scope the transport returns the \
         challenge (ServiceError::auth_challenge) and the application calls \
         AuthorizationManager::request_scope_upgrade, sends the user to the URL and exchanges \
         the code (exchange_code_for_token_with_issuer); with those SDK calls the step-up works",
        true,
    );

    // 6. Refresh: the stored access token is replaced by an unusable one; the gateway answers
    //    401 and rmcp's AuthClient uses the refresh token, then retries.
    let before = store.token().await;
    let has_refresh = before["refresh_token"].is_string();
    let saves = store.saves.load(Ordering::SeqCst);
    store
        .replace_access_token("revoked-or-expired-token")
        .await?;
    let r = call(&client, "list_notes", json!({})).await;
    let after = store.token().await;
    let refreshed = has_refresh
        && store.saves.load(Ordering::SeqCst) > saves
        && after["access_token"] != json!("revoked-or-expired-token")
        && after["access_token"] != before["access_token"]
        && r.as_ref().is_ok_and(|r| r.is_error != Some(true));
    let ok = res.check(
        "refresh: 401 → rmcp's refresh_token grant → call retried",
        refreshed,
        &format!(
            "refresh token held: {has_refresh}; call: {}",
            match &r {
                Ok(r) => text_of(r),
                Err(e) => e.to_string(),
            }
        ),
    );
    res.cell("refresh", ok, "", false);
    let _ = client.cancel().await;
    Ok(())
}

#[tokio::main]
async fn main() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let base = var("MCPGATE_URL");
    let password = var("MCPGATE_PASSWORD");
    if base.is_empty() || password.is_empty() {
        eprintln!("MCPGATE_URL and MCPGATE_PASSWORD are required");
        std::process::exit(2);
    }
    let new_password = std::env::var("MCPGATE_NEW_PASSWORD").unwrap_or_else(|_| password.clone());
    let env = Env {
        server: format!("{base}/mcp/notes"),
        base,
    };
    let mut res = Results::default();
    let mut b = Browser::new(&password, &new_password);
    let outcome = run(&mut res, &env, &mut b).await;
    if let Err(e) = outcome {
        res.check("flow", false, &format!("{e:#}"));
        for k in [
            "discovery",
            "registration",
            "authcode",
            "tools",
            "stepup",
            "refresh",
        ] {
            if !res.cells.contains_key(k) {
                res.cell(k, false, &format!("not reached: {e:#}"), false);
            }
        }
    }
    if let Ok(file) = std::env::var("RESULT_FILE") {
        let v = json!({
            "client": "Rust SDK (`rmcp`, `auth` feature)",
            "version": std::env::var("RMCP_VERSION").unwrap_or_else(|_| "3.11".into()),
            "cells": res.cells,
        });
        if let Err(e) = std::fs::write(&file, serde_json::to_vec_pretty(&v).unwrap_or_default()) {
            eprintln!("cannot write {file}: {e}");
            res.failed = true;
        }
    }
    std::process::exit(i32::from(res.failed));
}
