//! Resumable event streams of stdio sessions (MCP Streamable HTTP,
//! 2025-11-25 "resumability and redelivery"), as an HTTP upstream offers
//! them: every event of a session's streams carries an id, a POST stream
//! starts with a priming event (an id and empty data) so the client can
//! resume it at once, and `GET` with `Last-Event-ID` replays what followed
//! that event **on the same stream** and carries on from there.
//!
//! Each stream is a [`Log`]: the messages routed to it, already decided
//! ([`crate::outbound::Outbound`]), written by one pump task whether or not
//! a client is reading, and read by any number of cursors. A client that
//! drops a POST stream therefore loses nothing, and the request is not
//! cancelled (a disconnection is not a cancellation before 2026-07-28).
//! Memory is bounded, also against a child that floods its streams:
//! [`MAX_EVENTS`] and [`MAX_LOG_BYTES`] per stream (older events are
//! dropped and can no longer be replayed; the newest is always kept) and
//! [`MAX_STREAMS`] per session (the oldest finished streams go first).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::watch;

use crate::sse;

/// Events kept per stream.
pub const MAX_EVENTS: usize = 1024;
/// Bytes of serialised messages kept per stream (beyond the newest event).
pub const MAX_LOG_BYTES: usize = 4 * 1024 * 1024;
/// Streams kept per session.
pub const MAX_STREAMS: usize = 16;
/// A comment is sent after this long without an event, so that proxies
/// keep the connection and a client that left is noticed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One stream's events.
pub struct Log {
    no: u64,
    inner: Mutex<LogInner>,
    /// The number of events ever appended, and whether the stream ended.
    seen: watch::Sender<(u64, bool)>,
}

struct LogInner {
    /// Sequence number of `events[0]` (events are numbered from 1; 0 is the
    /// priming event).
    base: u64,
    /// The decided messages, serialised once for every reader.
    events: VecDeque<Bytes>,
    bytes: usize,
}

impl Log {
    fn new(no: u64) -> Self {
        Self {
            no,
            inner: Mutex::new(LogInner {
                base: 1,
                events: VecDeque::new(),
                bytes: 0,
            }),
            seen: watch::Sender::new((0, false)),
        }
    }

    /// Appends one decided message.
    pub fn push(&self, msg: Value) {
        let data = Bytes::from(serde_json::to_vec(&msg).expect("a JSON value serialises"));
        let mut inner = self.inner.lock().expect("stream log lock");
        inner.bytes += data.len();
        inner.events.push_back(data);
        while inner.events.len() > MAX_EVENTS
            || (inner.bytes > MAX_LOG_BYTES && inner.events.len() > 1)
        {
            let gone = inner.events.pop_front().map_or(0, |e| e.len());
            inner.bytes -= gone;
            inner.base += 1;
        }
        let total = inner.base - 1 + inner.events.len() as u64;
        drop(inner);
        self.seen.send_modify(|s| s.0 = total);
    }

    /// No more events will come (the response was sent, or the child is gone).
    pub fn finish(&self) {
        self.seen.send_modify(|s| s.1 = true);
    }

    fn is_finished(&self) -> bool {
        self.seen.borrow().1
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.no)
    }

    /// The event `seq` if it is still kept; `Err(())` when it was dropped.
    fn get(&self, seq: u64) -> Result<Option<Bytes>, ()> {
        let inner = self.inner.lock().expect("stream log lock");
        if seq < inner.base {
            return Err(());
        }
        Ok(inner.events.get((seq - inner.base) as usize).cloned())
    }

    /// The events after `after` in wire form, live until the stream ends,
    /// with a comment every [`KEEP_ALIVE`] of silence; a priming event (an
    /// id and an empty `data`) first when `prime` (a fresh stream).
    pub fn events(
        self: Arc<Self>,
        after: u64,
        prime: bool,
    ) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
        let rx = self.seen.subscribe();
        futures_util::stream::unfold(
            (self, rx, after, prime),
            |(log, mut rx, cursor, prime)| async move {
                if prime {
                    let e = sse::Event {
                        id: Some(log.id(0)),
                        ..Default::default()
                    };
                    return Some((Ok(e.write(Some(b""))), (log, rx, cursor, false)));
                }
                loop {
                    let (total, finished) = *rx.borrow_and_update();
                    if cursor < total {
                        let next = cursor + 1;
                        // An event dropped for space ends the replay rather than
                        // skip silently over it.
                        let data = log.get(next).ok()??;
                        let e = sse::Event {
                            id: Some(log.id(next)),
                            event: Some("message".into()),
                            ..Default::default()
                        };
                        return Some((Ok(e.write(Some(&data))), (log, rx, next, prime)));
                    }
                    if finished {
                        return None;
                    }
                    match tokio::time::timeout(KEEP_ALIVE, rx.changed()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return None,
                        Err(_) => {
                            return Some((Ok(sse::keep_alive()), (log, rx, cursor, prime)));
                        }
                    }
                }
            },
        )
    }
}

/// The streams of one stdio session.
#[derive(Default)]
pub struct Streams {
    inner: Mutex<StreamsInner>,
}

#[derive(Default)]
struct StreamsInner {
    next: u64,
    logs: VecDeque<Arc<Log>>,
}

impl Streams {
    /// A new stream's log (its events are `{no}-{seq}`).
    pub fn open(&self) -> Arc<Log> {
        let mut inner = self.inner.lock().expect("streams lock");
        inner.next += 1;
        let log = Arc::new(Log::new(inner.next));
        if inner.logs.len() >= MAX_STREAMS {
            // The oldest finished stream goes first, else the oldest.
            let i = inner.logs.iter().position(|l| l.is_finished()).unwrap_or(0);
            inner.logs.remove(i);
        }
        inner.logs.push_back(log.clone());
        log
    }

    /// The stream and position a `Last-Event-ID` names, if it is one of
    /// this session's streams still kept.
    pub fn resume(&self, last_event_id: &str) -> Option<(Arc<Log>, u64)> {
        let (no, seq) = last_event_id.split_once('-')?;
        let (no, seq): (u64, u64) = (no.parse().ok()?, seq.parse().ok()?);
        let inner = self.inner.lock().expect("streams lock");
        let log = inner.logs.iter().find(|l| l.no == no)?.clone();
        drop(inner);
        // The event after `seq` must still be kept (or not yet written).
        match log.get(seq + 1) {
            Ok(_) => Some((log, seq)),
            Err(()) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use serde_json::json;

    async fn ids(log: Arc<Log>, after: u64, prime: bool) -> Vec<String> {
        log.events(after, prime)
            .map(|e| String::from_utf8(e.unwrap().to_vec()).unwrap())
            .collect()
            .await
    }

    #[tokio::test]
    async fn replay_after_an_id_then_live_until_finished() {
        let streams = Streams::default();
        let log = streams.open();
        log.push(json!({"n": 1}));
        log.push(json!({"n": 2}));
        let (again, after) = streams.resume("1-1").unwrap();
        let reader = tokio::spawn(ids(again, after, false));
        log.push(json!({"n": 3}));
        log.finish();
        let got = reader.await.unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], "id: 1-2\nevent: message\ndata: {\"n\":2}\n\n");
        assert!(got[1].contains("1-3"), "{got:?}");
        // A fresh POST stream starts with the priming event 1-0.
        let all = ids(log.clone(), 0, true).await;
        assert_eq!(all.len(), 4);
        assert_eq!(all[0], "id: 1-0\ndata: \n\n", "{all:?}");
    }

    #[test]
    fn unknown_foreign_and_dropped_ids_do_not_resume() {
        let streams = Streams::default();
        let log = streams.open();
        for i in 0..(MAX_EVENTS as u64 + 5) {
            log.push(json!(i));
        }
        for bad in ["", "1", "x-1", "2-0", "1-1", "1--1", "-1-0"] {
            assert!(streams.resume(bad).is_none(), "{bad}");
        }
        assert!(streams.resume("1-5").is_some());
        assert!(streams.resume(&format!("1-{}", MAX_EVENTS + 5)).is_some());
    }

    /// A flood of large messages keeps at most MAX_LOG_BYTES (and always
    /// the newest), so a hostile child cannot grow a session's memory.
    #[test]
    fn a_stream_is_bounded_in_bytes() {
        let streams = Streams::default();
        let log = streams.open();
        let big = json!("x".repeat(MAX_LOG_BYTES / 4));
        for _ in 0..20 {
            log.push(big.clone());
        }
        let inner = log.inner.lock().unwrap();
        assert!(inner.bytes <= MAX_LOG_BYTES, "{}", inner.bytes);
        assert!(inner.events.len() >= 3, "{}", inner.events.len());
        assert_eq!(inner.base - 1 + inner.events.len() as u64, 20);
        drop(inner);
        assert!(streams.resume("1-0").is_none(), "the first events are gone");
        assert!(streams.resume("1-19").is_some());
        // One message larger than the budget is still kept, alone.
        log.push(json!("y".repeat(MAX_LOG_BYTES + 1)));
        assert_eq!(log.inner.lock().unwrap().events.len(), 1);
    }

    #[test]
    fn streams_per_session_are_bounded_oldest_finished_first() {
        let streams = Streams::default();
        let first = streams.open();
        let second = streams.open();
        second.finish();
        for _ in 2..MAX_STREAMS {
            streams.open();
        }
        streams.open();
        assert!(streams.resume("1-0").is_some(), "the unfinished one stays");
        assert!(streams.resume("2-0").is_none(), "the finished one went");
        drop(first);
    }
}
