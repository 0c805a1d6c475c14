//! Item 1: token validation.
//!
//! For each algorithm, in one process: the raw signature verification (`jsonwebtoken::decode`
//! with a fixed key and nothing else validated — the limit), full validation through
//! `mcpgate_guard::Guard` with its cache off (cold), and the same with its cache on, repeating
//! one token (cached), and the cached case again with the issuer's revocation set attached
//! (mcpgate's own issuer in `mcpgate serve`: a `StoreRevocations` following a real SQLite
//! store holding a few thousand entries). A plain timing harness: warm-up, then several
//! rounds of N iterations; the median µs/op over the rounds is reported.

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcpgate_gateway::revocation::StoreRevocations;
use mcpgate_guard::{Guard, GuardConfig, Revocations, TrustedIssuer};
use mcpgate_jose::{FixedClock, KeyAlg, SigningKey, Verifier};
use mcpgate_store::{RevocationRecord, RevocationStore, RevocationTarget, SqliteStore};
use mcpgate_types::ScopeSet;

use crate::report::{Opts, Section};

const ISSUER: &str = "https://as.bench.test";
const RESOURCE: &str = "https://mcp.bench.test/mcp";
const PRM_URL: &str = "https://mcp.bench.test/.well-known/oauth-protected-resource/mcp";
const NOW: i64 = 1_800_000_000;

/// Warm-up time before each benchmark (also used to size a round).
const WARMUP: Duration = Duration::from_millis(200);
/// Target time of one round.
const ROUND: Duration = Duration::from_millis(120);
/// Rounds per benchmark.
const ROUNDS: usize = 9;

/// The median of `samples` (mean of the two middle values for an even count); `None` if empty.
fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// Runs `op` for the warm-up time, sizes N so a round takes about `ROUND`, then runs `ROUNDS`
/// rounds of N iterations and returns the median µs/op.
pub(crate) async fn measure<F, Fut>(mut op: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    let mut warm = 0u64;
    while start.elapsed() < WARMUP {
        op().await;
        warm += 1;
    }
    let per_op = start.elapsed().as_secs_f64() / warm as f64;
    let n = ((ROUND.as_secs_f64() / per_op) as u64).max(10);
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..n {
            op().await;
        }
        samples.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    median(&samples).unwrap_or(f64::NAN)
}

/// Rounds of the paired measurement (more than [`ROUNDS`]: the difference is small beside
/// the noise of a shared machine).
const PAIRED_ROUNDS: usize = 31;

/// Measures `b` against `a`: after a warm-up of each, alternates rounds of N iterations of `a`
/// and of `b` (so drift in machine load hits both alike) and returns the medians µs/op of `a`,
/// of `b`, and of the per-pair difference `b - a`.
async fn measure_pair<A, FA, B, FB>(mut a: A, mut b: B) -> (f64, f64, f64)
where
    A: FnMut() -> FA,
    FA: std::future::Future<Output = ()>,
    B: FnMut() -> FB,
    FB: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    let mut warm = 0u64;
    while start.elapsed() < WARMUP {
        a().await;
        b().await;
        warm += 1;
    }
    let per_pair = start.elapsed().as_secs_f64() / warm as f64;
    let n = ((ROUND.as_secs_f64() / per_pair) as u64).max(10);
    let (mut sa, mut sb, mut diff) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..PAIRED_ROUNDS {
        let t = Instant::now();
        for _ in 0..n {
            a().await;
        }
        let ta = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            b().await;
        }
        let tb = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        sa.push(ta);
        sb.push(tb);
        diff.push(tb - ta);
    }
    (
        median(&sa).unwrap_or(f64::NAN),
        median(&sb).unwrap_or(f64::NAN),
        median(&diff).unwrap_or(f64::NAN),
    )
}

/// One algorithm under test: a valid access token, the raw decoding key, and a verifier.
struct Subject {
    name: &'static str,
    token: String,
    alg: Algorithm,
    raw_key: DecodingKey,
    verifier: Arc<Verifier>,
}

fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER,
        "sub": "user-1",
        "aud": RESOURCE,
        "client_id": "client-1",
        "scope": "mcp:tools mcp:read",
        "iat": NOW - 10,
        "exp": NOW + 3600,
        "jti": "bench-jti-1",
        "grant": "bench-grant-1",
    })
}

fn jose_subject(name: &'static str, alg: KeyAlg) -> Result<Subject> {
    let key = SigningKey::generate(format!("{name}-kid"), alg)?;
    let token = key.sign("at+jwt", &claims())?;
    let jwk = key.public_jwk();
    let (jalg, raw_key) = match alg {
        KeyAlg::Es256 => (
            Algorithm::ES256,
            DecodingKey::from_ec_components(&jwk.x, jwk.y.as_deref().context("EC key has no y")?)?,
        ),
        KeyAlg::EdDsa => (Algorithm::EdDSA, DecodingKey::from_ed_components(&jwk.x)?),
    };
    let verifier = Verifier::from_public_jwks(&mcpgate_jose::PublicJwks {
        keys: vec![jwk.clone()],
    })?;
    Ok(Subject {
        name,
        token,
        alg: jalg,
        raw_key,
        verifier: Arc::new(verifier),
    })
}

/// RS256 with a 2048-bit key generated by aws-lc-rs; the token is signed by hand
/// (mcpgate itself never signs RS256, but it accepts RS256 from external issuers).
fn rs256_subject() -> Result<Subject> {
    use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
    let kp = KeyPair::generate(KeySize::Rsa2048).map_err(|e| anyhow::anyhow!("{e}"))?;
    let kid = "RS256-kid";
    let header = serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": kid});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims())?)
    );
    let mut sig = vec![0u8; kp.public_modulus_len()];
    kp.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
    let comps: PublicKeyComponents<Vec<u8>> = kp.public_key().into();
    let n = URL_SAFE_NO_PAD.encode(&comps.n);
    let e = URL_SAFE_NO_PAD.encode(&comps.e);
    let raw_key = DecodingKey::from_rsa_components(&n, &e)?;
    let verifier = Verifier::from_jwks_json(&serde_json::json!({"keys": [
        {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": n, "e": e}
    ]}))?;
    Ok(Subject {
        name: "RS256",
        token,
        alg: Algorithm::RS256,
        raw_key,
        verifier: Arc::new(verifier),
    })
}

fn guard(
    verifier: &Arc<Verifier>,
    cache_capacity: usize,
    revocations: Option<Arc<dyn Revocations>>,
) -> Result<Guard> {
    let mut issuer = TrustedIssuer::local(ISSUER, Arc::new(verifier.clone()));
    if let Some(r) = revocations {
        issuer = issuer.with_revocations(r);
    }
    let mut config = GuardConfig::new(RESOURCE, PRM_URL)
        .with_baseline(ScopeSet::parse("mcp:tools")?)
        .with_issuer(issuer)
        .with_clock(Arc::new(FixedClock::new(NOW)));
    config.cache_capacity = cache_capacity;
    Ok(Guard::new(config)?)
}

/// Entries of each kind in the bench's revocation set (none covers the bench token).
const REVOKED_PER_KIND: usize = 1_000;

/// A revocation set as `mcpgate serve` builds it: a SQLite store with entries of every kind,
/// followed by a `StoreRevocations` (first snapshot loaded, background poll running).
async fn revocations(dir: &std::path::Path) -> Result<Arc<dyn Revocations>> {
    let store = SqliteStore::open(&dir.join("revocations.db")).await?;
    let mut entries = Vec::new();
    for i in 0..REVOKED_PER_KIND {
        for target in [
            RevocationTarget::Grant {
                grant_id: format!("grant-{i}"),
            },
            RevocationTarget::User {
                user_id: format!("user-{}", i + 2),
            },
            RevocationTarget::Consent {
                user_id: "user-1".into(),
                client_id: format!("client-{}", i + 2),
            },
            RevocationTarget::Token {
                jti: format!("jti-{i}"),
            },
        ] {
            entries.push(RevocationRecord {
                target,
                revoked_at: NOW,
                expires_at: NOW + 3600,
            });
        }
    }
    store.revoke(&entries).await?;
    let (revocations, first) = StoreRevocations::start(Arc::new(store)).await;
    first?;
    Ok(Arc::new(revocations))
}

struct Row {
    alg: &'static str,
    raw: f64,
    cold: f64,
    cached: f64,
    cached_revocations: f64,
    revocation_added: f64,
    token_len: usize,
}

async fn bench(s: &Subject, revocations: &Arc<dyn Revocations>) -> Result<Row> {
    // (1) raw signature verification: decode with a fixed key, nothing else validated.
    let mut validation = Validation::new(s.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<serde::de::IgnoredAny>(&s.token, &s.raw_key, &validation)
        .context("raw verification of the bench token")?;
    let raw = measure(|| {
        let r = jsonwebtoken::decode::<serde::de::IgnoredAny>(
            black_box(&s.token),
            &s.raw_key,
            &validation,
        );
        assert!(r.is_ok());
        async {}
    })
    .await;

    // (2) full validation, cold: cache off.
    let cold_guard = guard(&s.verifier, 0, None)?;
    let p = cold_guard
        .validate_token(&s.token)
        .await
        .map_err(|c| anyhow::anyhow!("{}: guard refused the bench token: {c:?}", s.name))?;
    if p.subject != "user-1" || p.client_id != "client-1" {
        bail!("{}: unexpected principal {p:?}", s.name);
    }
    let cold = measure(|| async {
        let r = cold_guard.validate_token(black_box(&s.token)).await;
        assert!(r.is_ok());
    })
    .await;
    let stats = cold_guard.stats();
    if stats.cache_hits != 0 {
        bail!("{}: the cold guard hit its cache", s.name);
    }

    // (3) full validation, cached: one token repeated; (4) the same with the issuer's
    // revocation set consulted on every hit, measured in alternating rounds.
    let warm_guard = guard(&s.verifier, 10_000, None)?;
    let revoking_guard = guard(&s.verifier, 10_000, Some(revocations.clone()))?;
    let (cached, cached_revocations, revocation_added) = measure_pair(
        || async {
            let r = warm_guard.validate_token(black_box(&s.token)).await;
            assert!(r.is_ok());
        },
        || async {
            let r = revoking_guard.validate_token(black_box(&s.token)).await;
            assert!(r.is_ok());
        },
    )
    .await;
    let stats = warm_guard.stats();
    if stats.verifications != 1 {
        bail!(
            "{}: the cached guard verified {} times",
            s.name,
            stats.verifications
        );
    }

    if revoking_guard.stats().verifications != 1 {
        bail!("{}: the revoking guard verified more than once", s.name);
    }
    Ok(Row {
        alg: s.name,
        raw,
        cold,
        cached,
        cached_revocations,
        revocation_added,
        token_len: s.token.len(),
    })
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| alg | raw signature verify (µs/op) | full validation, cold (µs/op) | cold / raw | full validation, cached (µs/op) | cached / raw | cached + revocation check (µs/op) | revocation check adds (µs) |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.2}x | {:.3} | {:.4}x | {:.3} | {:+.3} |",
            r.alg,
            r.raw,
            r.cold,
            r.cold / r.raw,
            r.cached,
            r.cached / r.raw,
            r.cached_revocations,
            r.revocation_added
        );
    }
    out
}

/// Runs item 1 for ES256, EdDSA and RS256.
pub async fn section(_opts: &Opts) -> Result<Section> {
    let mut subjects = vec![
        jose_subject("ES256", KeyAlg::Es256)?,
        jose_subject("EdDSA", KeyAlg::EdDsa)?,
    ];
    let mut skipped = Vec::new();
    match rs256_subject() {
        Ok(s) => subjects.push(s),
        Err(e) => skipped.push(format!("RS256 skipped: {e}")),
    }
    let dir =
        std::env::temp_dir().join(format!("mcpgate-bench-revocations-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let revocations = revocations(&dir).await?;
    let mut rows = Vec::new();
    for s in &subjects {
        eprintln!("  validation: {} ...", s.name);
        rows.push(bench(s, &revocations).await?);
    }
    drop(revocations);
    let _ = std::fs::remove_dir_all(&dir);
    let mut dpop = Vec::new();
    for alg in [KeyAlg::Es256, KeyAlg::EdDsa] {
        eprintln!("  validation: DPoP {} ...", alg.as_str());
        dpop.push(dpop_row(alg).await?);
    }
    eprintln!("  validation: user_oauth vault ...");
    let vault = vault_row(dpop.first().map_or(f64::NAN, |d| d.bearer)).await?;
    let mut text = table(&rows);
    for s in &skipped {
        let _ = writeln!(text, "{s}");
    }
    text.push_str(&dpop_table(&dpop));
    text.push_str(&vault_table(&vault));
    let mut md = markdown(&rows, &skipped);
    md.push_str(&dpop_markdown(&dpop));
    md.push_str(&vault_markdown(&vault));
    Ok(Section {
        title: "1. Token validation".into(),
        markdown: md,
        text,
    })
}

/// Proofs made ahead of the DPoP measurement: each request needs a fresh one (the guard
/// refuses a `jti` it has seen), and making them is the client's cost, not the server's.
const DPOP_PROOFS: usize = 27_000;

struct DpopRow {
    alg: &'static str,
    proof_verify: f64,
    bearer: f64,
    dpop: f64,
    added: f64,
    proof_len: usize,
}

/// The request as the guard receives it.
fn parts(authorization: &str, proof: Option<&str>) -> Result<http::request::Parts> {
    let mut b = http::Request::post("/mcp").header("authorization", authorization);
    if let Some(p) = proof {
        b = b.header("dpop", p);
    }
    Ok(b.body(())?.into_parts().0)
}

/// Item 1b: one request with a DPoP-bound token (its proof checked: signature, claims,
/// `ath`, the replay cache) beside one with a bearer token, both through
/// `Guard::authenticate` with the token itself cached, in alternating rounds; and the proof's
/// signature check alone, the limit of what DPoP can cost.
async fn dpop_row(alg: KeyAlg) -> Result<DpopRow> {
    use mcpgate_guard::Authenticate;
    let issuer_key = SigningKey::generate("at", KeyAlg::Es256)?;
    let holder = SigningKey::generate("dpop", alg)?;
    let verifier = Arc::new(Verifier::from_public_jwks(&mcpgate_jose::PublicJwks {
        keys: vec![issuer_key.public_jwk().clone()],
    })?);
    let bearer_token = issuer_key.sign("at+jwt", &claims())?;
    let mut bound = claims();
    bound["cnf"] = serde_json::json!({"jkt": holder.public_jwk().thumbprint()});
    let bound_token = issuer_key.sign("at+jwt", &bound)?;
    let g = guard(&verifier, 10_000, None)?;
    let rng = mcpgate_jose::SystemRng::new();
    let proofs = (0..DPOP_PROOFS)
        .map(|_| {
            mcpgate_jose::dpop::proof(
                &holder,
                "POST",
                RESOURCE,
                Some(&bound_token),
                None,
                NOW,
                &rng,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let requests = proofs
        .iter()
        .map(|p| parts(&format!("DPoP {bound_token}"), Some(p)))
        .collect::<Result<Vec<_>>>()?;
    let bearer = parts(&format!("Bearer {bearer_token}"), None)?;
    g.authenticate(&bearer)
        .await
        .map_err(|c| anyhow::anyhow!("bearer refused: {c:?}"))?;

    // The proof's signature and claims alone (no replay cache), one proof repeated.
    let want = mcpgate_jose::dpop::ProofCheck {
        htm: "POST",
        htu: RESOURCE,
        access_token: Some(&bound_token),
        jkt: None,
        now: NOW,
        iat_window: 60,
    };
    mcpgate_jose::dpop::check(&proofs[0], &want).map_err(|e| anyhow::anyhow!("{e}"))?;
    let proof_verify = measure(|| {
        let r = mcpgate_jose::dpop::check(black_box(&proofs[0]), &want);
        assert!(r.is_ok());
        async {}
    })
    .await;

    // Alternating rounds over the proofs made ahead, each used once.
    let per_round = DPOP_PROOFS / PAIRED_ROUNDS;
    let (mut sb, mut sd, mut diff) = (Vec::new(), Vec::new(), Vec::new());
    let mut next = requests.iter();
    for _ in 0..PAIRED_ROUNDS {
        let t = Instant::now();
        for _ in 0..per_round {
            let r = g.authenticate(black_box(&bearer)).await;
            assert!(r.is_ok());
        }
        let tb = t.elapsed().as_secs_f64() * 1e6 / per_round as f64;
        let t = Instant::now();
        for req in next.by_ref().take(per_round) {
            let r = g.authenticate(black_box(req)).await;
            assert!(r.is_ok(), "{r:?}");
        }
        let td = t.elapsed().as_secs_f64() * 1e6 / per_round as f64;
        sb.push(tb);
        sd.push(td);
        diff.push(td - tb);
    }
    Ok(DpopRow {
        alg: alg.as_str(),
        proof_verify,
        bearer: median(&sb).unwrap_or(f64::NAN),
        dpop: median(&sd).unwrap_or(f64::NAN),
        added: median(&diff).unwrap_or(f64::NAN),
        proof_len: proofs[0].len(),
    })
}

fn dpop_table(rows: &[DpopRow]) -> String {
    let mut out = String::new();
    out.push_str(
        "\n| DPoP proof alg | proof check alone (µs/op) | bearer request (µs/op) | DPoP request (µs/op) | DPoP adds (µs) | DPoP request / proof check |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.3} | {:.2} | {:+.2} | {:.2}x |",
            r.alg,
            r.proof_verify,
            r.bearer,
            r.dpop,
            r.added,
            r.dpop / r.proof_verify
        );
    }
    out
}

fn dpop_markdown(rows: &[DpopRow]) -> String {
    let mut md = String::from("\n### DPoP-bound tokens\n");
    md.push_str(&dpop_table(rows));
    let _ = writeln!(
        md,
        "\n- **bearer request** — `Guard::authenticate` on a request with `Authorization: Bearer` and an ES256 access token already in the guard's cache: the header parse, the cached validation, the scheme check.\n- **DPoP request** — the same with a DPoP-bound ES256 token (also cached) and a fresh `DPoP` proof per request, made ahead ({DPOP_PROOFS} of them; each is used once, as the replay cache demands): the proof header parse, the embedded key, the proof signature, `htm`/`htu`/`iat`/`ath`, the thumbprint against `cnf.jkt` and the replay cache. The two are measured in {PAIRED_ROUNDS} alternating rounds; **DPoP adds** is the median of the per-round differences.\n- **proof check alone** — `mcpgate_jose::dpop::check` on one proof, repeated: the limit, since every DPoP request needs one signature verification that a cached bearer token does not.\n\nProof sizes: {}.",
        rows.iter()
            .map(|r| format!("{} {} bytes", r.alg, r.proof_len))
            .collect::<Vec<_>>()
            .join(", ")
    );
    md
}

/// Item 1c: what a request to a `user_oauth` upstream adds: the user's own
/// upstream token from the vault (a store read, AES-256-GCM open, JSON).
struct VaultRow {
    /// The store read alone (`get_upstream_grant`, SQLite): the limit.
    read: f64,
    /// `Vault::access_token` for a grant that needs no refresh.
    vault: f64,
    /// The vault's median addition to the read, in the same rounds.
    added: f64,
    /// A cached bearer request of the same run (the DPoP table's), for scale.
    bearer: f64,
    token_len: usize,
}

/// A grant made the way the connect flow makes one: a code redeemed at a
/// token endpoint (on loopback, here) that hands out a JWT-sized access
/// token with no expiry, so no lookup in the measurement refreshes.
async fn vault_row(bearer: f64) -> Result<VaultRow> {
    use mcpgate_store::{DynStore, UserRecord};
    use mcpgate_vault::{AuthMethod, Connection, Endpoints, ServerSource, Vault, VaultDeps};
    let token = format!("eyJ{}", "x".repeat(800));
    let answer = serde_json::json!({"access_token": token, "token_type": "Bearer"});
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move || {
            let answer = answer.clone();
            async move { axum::Json(answer) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let dir = tempfile::tempdir()?;
    let store: DynStore = Arc::new(SqliteStore::open(&dir.path().join("vault.db")).await?);
    store
        .create_user(&UserRecord {
            id: "u_bench".into(),
            username: "bench".into(),
            display_name: None,
            password_hash: None,
            groups: vec![],
            must_change_password: false,
            disabled: false,
            created_at: NOW,
            updated_at: NOW,
        })
        .await?;
    let rng = Arc::new(mcpgate_jose::SystemRng::new());
    let conn = Connection {
        upstream: "partner".into(),
        title: "Partner".into(),
        upstream_url: "https://mcp.partner.test/mcp".into(),
        server: ServerSource::Endpoints(Endpoints {
            issuer: None,
            authorization_endpoint: "https://as.partner.test/authorize".into(),
            token_endpoint: format!("http://{addr}/token"),
            revocation_endpoint: None,
            iss_parameter_supported: false,
        }),
        client_id: "gw".into(),
        client_secret: mcpgate_types::Secret::new("s"),
        auth_method: AuthMethod::ClientSecretBasic,
        scopes: vec![],
        resource: None,
        allow_http_loopback: true,
    };
    let vault = Vault::new(
        vec![conn.clone()],
        VaultDeps {
            store: store.clone(),
            master_key: Arc::new(mcpgate_jose::MasterKey::generate(rng.as_ref()).0),
            rng,
            clock: Arc::new(FixedClock::new(NOW)),
            fetcher: mcpgate_net::SafeFetcher::new(mcpgate_net::policy::FetchPolicy::loopback_dev()),
            pages_base: "https://gw.bench.test".into(),
        },
    );
    vault
        .redeem(
            "u_bench",
            &conn,
            "code",
            "verifier",
            "https://gw.bench.test/cb",
        )
        .await
        .map_err(|e| anyhow::anyhow!("redeeming the bench grant: {e}"))?;
    server.abort();
    let got = vault.access_token("u_bench", "partner").await?;
    if got.expose() != token {
        bail!("the vault gave back another token");
    }
    let (read, vault_us, added) = measure_pair(
        || async {
            let g = store
                .get_upstream_grant(black_box("u_bench"), "partner")
                .await;
            assert!(g.is_ok());
        },
        || async {
            let t = vault.access_token(black_box("u_bench"), "partner").await;
            assert!(t.is_ok());
        },
    )
    .await;
    Ok(VaultRow {
        read,
        vault: vault_us,
        added,
        bearer,
        token_len: token.len(),
    })
}

fn vault_table(r: &VaultRow) -> String {
    let mut out = String::new();
    out.push_str(
        "\n| per request to a user_oauth upstream | store read alone (µs/op) | vault token (µs/op) | vault adds to the read (µs) | cached bearer request (µs/op) |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|\n");
    let _ = writeln!(
        out,
        "| SQLite | {:.2} | {:.2} | {:+.2} | {:.3} |",
        r.read, r.vault, r.added, r.bearer
    );
    out
}

fn vault_markdown(r: &VaultRow) -> String {
    let mut md = String::from("\n### Each user's own upstream token (`user_oauth`)\n");
    md.push_str(&vault_table(r));
    let _ = writeln!(
        md,
        "\n- **vault token** — `mcpgate_vault::Vault::access_token` for a grant that needs no refresh, what the gateway does on every request to a `user_oauth` upstream: the store read of the (user, upstream) row, AES-256-GCM open of the sealed token set ({} byte access token), JSON, the expiry check. Nothing is cached in memory, so an unlink or a revocation holds on every replica from the next request.\n- **store read alone** — `get_upstream_grant` on the same SQLite store (its read pool): the limit, since the row must be read. The two are measured in {PAIRED_ROUNDS} alternating rounds; **vault adds** is the median of the per-round differences.\n- **cached bearer request** — the DPoP table's bearer figure of this run, for scale: what authenticating the MCP request itself costs.",
        r.token_len
    );
    md
}

fn markdown(rows: &[Row], skipped: &[String]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Single thread, one process. Each cell is the median over {ROUNDS} rounds of µs per operation; each round runs N iterations, N sized so a round takes about {} ms, after {} ms of warm-up. Ratios are to the raw signature verification of the same algorithm.\n",
        ROUND.as_millis(),
        WARMUP.as_millis()
    );
    md.push_str(&table(rows));
    md.push('\n');
    for s in skipped {
        let _ = writeln!(md, "{s}\n");
    }
    md.push_str("What is measured:\n\n");
    md.push_str("- **raw signature verify** — the limit: `jsonwebtoken::decode` with a fixed `DecodingKey` and a `Validation` that checks nothing but the signature and algorithm (claims deserialised into `IgnoredAny`). Base64 decoding of the three parts plus the public-key operation.\n");
    md.push_str("- **full validation, cold** — `mcpgate_guard::Guard::validate_token` with `cache_capacity: 0`: issuer peek, issuer lookup, key lookup by `kid`, `typ` check, signature, `iss`/`aud`/`exp` checks, claims into a `Principal` (subject, client, scopes), and the cache-key hash (SHA-256 of the token).\n");
    md.push_str("- **full validation, cached** — the same guard with its cache on, one token repeated: SHA-256 of the token, a cache lookup, the check that the signing key is still published, and a clone of the `Principal`.\n");
    let _ = writeln!(
        md,
        "- **cached + revocation check** — the same, with the issuer's revocation set attached as `mcpgate serve` attaches it to its own issuer: a `StoreRevocations` following a SQLite store that holds {} entries ({REVOKED_PER_KIND} each of grant, user, consent and token id; none covers the bench token). On a hit the guard compares the set's generation (one atomic load) with the one the cached token was last checked at; the set itself is consulted only when it changed. The two cached columns are measured together, in {PAIRED_ROUNDS} alternating rounds of each, so drift in the machine's load hits both alike: their cells are the median of each, and the last column is the median of the per-round differences (budget: ≤ 0.1 µs).\n",
        4 * REVOKED_PER_KIND
    );
    md.push_str("### Reading\n\n");
    md.push_str("- **Raw**: bound by the public-key crypto (aws-lc-rs). P-256 ECDSA verify (ES256) is the most expensive, Ed25519 (EdDSA) next; RSA-2048 verify with e = 65537 (RS256) is the cheapest of the three, so for RS256 the fixed per-token costs (base64, JSON) are a larger share of the total.\n");
    md.push_str("- **Cold**: the crypto plus what mcpgate adds — a second header decode and claims peek to route by issuer, JSON parsing of the claims into a `serde_json::Value` and then into typed claims, scope parsing, a few `String` allocations, and the SHA-256 cache key. For ES256/EdDSA that overhead is small beside the signature; for RS256 it is a larger fraction because the signature is cheap.\n");
    md.push_str("- **Cached**: no signature check; bound by hashing the token (SHA-256) for the cache key, the shard lock and map lookup, the key-still-published check, and cloning the `Principal` (strings and scope set). The SHA-256 share grows with token length, which is why the RS256 row (longest token: a 256-byte signature) is the slowest cached.\n\n");
    md.push_str("Token sizes in this run: ");
    let sizes: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {} bytes", r.alg, r.token_len))
        .collect();
    md.push_str(&sizes.join(", "));
    md.push_str(".\n");
    md
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_is_the_middle_value() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[4.0]), Some(4.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[9.0, 1.0, 5.0, 3.0]), Some(4.0));
        assert_eq!(median(&[2.0, 100.0, 1.0, 3.0, 2.5]), Some(2.5));
    }
}
