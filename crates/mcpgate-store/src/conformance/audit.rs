//! Conformance cases for the gateway's audit log.

use super::*;
use crate::traits::DynStore;

fn record(time_ms: i64, request_id: &str, decision: &str) -> AuditRecord {
    AuditRecord {
        time_ms,
        request_id: request_id.to_owned(),
        issuer: Some("https://as.example".to_owned()),
        subject: Some("u1".to_owned()),
        client_id: Some("c1".to_owned()),
        upstream: "files".to_owned(),
        method: Some("tools/call".to_owned()),
        tool: Some("read_file".to_owned()),
        decision: decision.to_owned(),
        reason: "allowed".to_owned(),
        status: 200,
        latency_ms: 12,
    }
}

pub(crate) async fn audit_append_list_purge(store: DynStore) {
    let ms = NOW * 1000;
    assert!(store.list_audit(0, 10).await.unwrap().is_empty());
    let a = record(ms, "r1", "allow");
    // Same millisecond as r1, inserted later: listed before it (newest first).
    let mut b = record(ms, "r2", "deny");
    b.issuer = None;
    b.subject = None;
    b.client_id = None;
    b.method = None;
    b.tool = None;
    b.status = 401;
    let c = record(ms + 5, "r3", "step_up");
    // One record, then a batch; an empty batch writes nothing.
    store.insert_audit(std::slice::from_ref(&a)).await.unwrap();
    store.insert_audit(&[b.clone(), c.clone()]).await.unwrap();
    store.insert_audit(&[]).await.unwrap();
    assert_eq!(
        store.list_audit(0, 10).await.unwrap(),
        vec![c.clone(), b.clone(), a.clone()]
    );
    assert_eq!(store.list_audit(ms + 1, 10).await.unwrap(), vec![c.clone()]);
    assert_eq!(store.list_audit(0, 2).await.unwrap(), vec![c.clone(), b]);
    // Filters: each set one must match; unset ones match everything.
    let q = |f: &dyn Fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        };
        f(&mut q);
        q
    };
    let ids = |v: Vec<AuditRecord>| v.into_iter().map(|r| r.request_id).collect::<Vec<_>>();
    let got = store
        .query_audit(&q(&|q| q.subject = Some("u1".into())))
        .await;
    assert_eq!(ids(got.unwrap()), ["r3", "r1"]);
    let got = store
        .query_audit(&q(&|q| q.decision = Some("deny".into())))
        .await;
    assert_eq!(ids(got.unwrap()), ["r2"]);
    let got = store.query_audit(&q(&|q| q.until_ms = Some(ms + 1))).await;
    assert_eq!(ids(got.unwrap()), ["r2", "r1"]);
    let got = store
        .query_audit(&q(&|q| {
            q.client_id = Some("c1".into());
            q.upstream = Some("files".into());
            q.issuer = Some("https://as.example".into());
            q.decision = Some("allow".into());
        }))
        .await;
    assert_eq!(ids(got.unwrap()), ["r1"]);
    let got = store
        .query_audit(&q(&|q| q.upstream = Some("other".into())))
        .await;
    assert!(got.unwrap().is_empty());
    assert_eq!(store.purge_audit(ms + 1).await.unwrap(), 2);
    assert_eq!(store.list_audit(0, 10).await.unwrap(), vec![c]);
}
