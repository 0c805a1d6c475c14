//! Item 8: the gateway's JSON-RPC envelope. Before the strict parse the gateway read a body
//! with `serde_json::from_slice` (the last duplicate key wins) and forwarded the bytes it
//! received; now it parses strictly (duplicate and case-colliding keys refused) and forwards
//! its own serialisation. Both, in one process, on three message sizes, with the timing
//! harness of item 1 (median µs/op over several rounds).

use std::fmt::Write as _;
use std::hint::black_box;

use anyhow::Result;
use mcpgate_gateway::config::{self, GatewayFile, UpstreamConfig, UpstreamFile};
use mcpgate_gateway::{jsonrpc, policy, sse};
use mcpgate_guard::Principal;
use serde_json::{Value, json};

use crate::report::{self, Opts, Section};
use crate::validation::measure;

/// An upstream with one denied tool, and a user, for the answer filter.
fn answer_policy() -> Result<(UpstreamConfig, Principal)> {
    let up: UpstreamFile = serde_json::from_value(json!({
        "name": "echo",
        "http": {"url": "http://127.0.0.1:1/mcp"},
        "tools": {"secret": {"allow": false}},
    }))?;
    let settings = config::validate(
        "http://127.0.0.1:1",
        true,
        &GatewayFile::default(),
        &[up],
        &config::secret_as_written,
    )?;
    let principal = Principal {
        issuer: "http://127.0.0.1:1".into(),
        subject: "bench".into(),
        client_id: "bench".into(),
        scopes: Default::default(),
        groups: vec![],
        expires_at: i64::MAX,
        dpop_jkt: None,
    };
    Ok((settings.upstreams[0].clone(), principal))
}

/// A tools/call answer as an rmcp upstream sends it: one SSE event.
fn answer_sse(text_bytes: usize) -> Vec<u8> {
    let msg = json!({"jsonrpc": "2.0", "id": 42, "result": {
        "content": [{"type": "text", "text": "x".repeat(text_bytes.max(24))}],
        "isError": false}});
    format!("id: 0\nevent: message\ndata: {msg}\n\n").into_bytes()
}

fn message(argument_bytes: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..argument_bytes / 32)
        .map(|i| json!({"k": i, "text": "lorem ipsum dolor"}))
        .collect();
    serde_json::to_vec(&json!({
        "jsonrpc": "2.0", "id": 42, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"items": items, "flag": true},
                   "_meta": {"progressToken": "p-1"}}
    }))
    .expect("serialises")
}

pub async fn section(_opts: &Opts) -> Result<Section> {
    let mut rows = Vec::new();
    let mut text = String::new();
    for (label, size) in [("small", 0), ("2 KiB", 2048), ("64 KiB", 65536)] {
        let body = message(size);
        let before = measure(|| {
            let b = &body;
            async move {
                let v: Value = serde_json::from_slice(black_box(b)).expect("json");
                black_box(jsonrpc::parse_value(v).expect("valid"));
            }
        })
        .await;
        let strict = measure(|| {
            let b = &body;
            async move {
                black_box(jsonrpc::parse(black_box(b)).expect("valid"));
            }
        })
        .await;
        let now = measure(|| {
            let b = &body;
            async move {
                let env = jsonrpc::parse(black_box(b)).expect("valid");
                black_box(env.to_bytes());
            }
        })
        .await;
        let _ = writeln!(
            text,
            "envelope {label} ({} B): before {before:.2} µs, strict {strict:.2} µs, strict + serialise {now:.2} µs",
            body.len()
        );
        rows.push(vec![
            format!("{label} ({} B)", body.len()),
            report::fmt_us(before),
            report::fmt_us(strict),
            report::fmt_us(now),
            report::fmt_ratio(now / before),
        ]);
    }
    // The other direction: what an upstream answers. Before, a tools/call
    // answer streamed through untouched; now it is read event by event,
    // parsed strictly, decided on (lists filtered) and written again.
    let (up, principal) = answer_policy()?;
    let mut answer_rows = Vec::new();
    for (label, size) in [("small", 0), ("2 KiB", 2048), ("64 KiB", 65536)] {
        let sse = answer_sse(size);
        let now = measure(|| {
            let b = &sse;
            let up = &up;
            let p = &principal;
            async move {
                let mut d = sse::Decoder::new(usize::MAX);
                for e in d.push(black_box(b)).expect("events") {
                    let mut v = jsonrpc::parse(e.data.as_deref().unwrap_or_default())
                        .expect("valid")
                        .value;
                    policy::filter_response_message(up, p, &mut v);
                    let data = serde_json::to_vec(&v).expect("serialises");
                    black_box(e.write(Some(&data)));
                }
            }
        })
        .await;
        let _ = writeln!(
            text,
            "answer {label} ({} B SSE): decided and written again {now:.2} µs",
            sse.len()
        );
        answer_rows.push(vec![
            format!("{label} ({} B)", sse.len()),
            "0 (streamed through)".into(),
            report::fmt_us(now),
        ]);
    }
    let mut md = report::md_table(
        &[
            "tools/call body",
            "before: serde_json parse",
            "strict parse",
            "strict parse + serialise (now)",
            "now ÷ before",
        ],
        &rows,
    );
    md.push('\n');
    md.push_str(&report::md_table(
        &[
            "tools/call answer (SSE event)",
            "before: gateway work",
            "now: decode, strict parse, policy, write again",
        ],
        &answer_rows,
    ));
    md.push_str("\nReading: the strict visitor compares each object key with the keys seen before it. It does this without allocating for ASCII keys, and it keeps a folded-key set only for objects of 16 keys or more, so it runs at serde_json's speed. The cost that remains is serialising the decided message once more before it is forwarded: about 0.4 µs for a typical call, against a gateway CPU per request of about 100 to 300 µs (section 2). Deciding on the answer costs about 1.7 µs for a typical small one (the event decoded, its message parsed strictly, four list lookups, serialised and written again), about 1% of the gateway's CPU per request.\n");
    Ok(Section {
        title: "8. JSON-RPC envelope".into(),
        markdown: md,
        text,
    })
}
