//! State shared by the application's handles ([`super::publisher`]) and the connection task
//! ([`super::link`]). Both depend on this module; it depends on neither, so that the link
//! never reaches back into the publisher.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, oneshot};

use super::command::Rejection;

/// Command results waiting for the broker; the oldest is dropped beyond this.
const RESULT_QUEUE: usize = 256;

/// State shared between the handles and the link task.
pub(crate) struct Shared {
    /// Something new to send: an event, a status, stats, a result.
    pub wake: Notify,
    pub connected: AtomicBool,
    /// Rows in the outbox.
    pub depth: AtomicU64,
    pub counters: Counters,
    pub pending: Mutex<Pending>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub published: AtomicU64,
    pub acked: AtomicU64,
    pub reconnects: AtomicU64,
    pub publish_errors: AtomicU64,
    pub commands_received: AtomicU64,
    pub commands_rejected: AtomicU64,
    /// Refused command messages by reason, indexed like [`Rejection::ALL`].
    pub rejections: [AtomicU64; Rejection::ALL.len()],
}

impl Counters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Messages that are not events: sent when connected, not stored.
#[derive(Default)]
pub(crate) struct Pending {
    /// Every camera's last known state; `dirty` until it has been handed to the client.
    pub statuses: BTreeMap<String, CameraStatus>,
    /// Only the latest stats are worth sending.
    pub stats: Option<Vec<u8>>,
    pub results: VecDeque<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct CameraStatus {
    pub online: bool,
    pub dirty: bool,
}

impl Shared {
    pub fn new(depth: u64, statuses: BTreeMap<String, CameraStatus>) -> Shared {
        Shared {
            wake: Notify::new(),
            connected: AtomicBool::new(false),
            depth: AtomicU64::new(depth),
            counters: Counters::default(),
            pending: Mutex::new(Pending {
                statuses,
                ..Default::default()
            }),
        }
    }

    pub fn pending(&self) -> MutexGuard<'_, Pending> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep going.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn depth_sub_one(&self) {
        let _ = self
            .depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| Some(d.saturating_sub(1)));
    }
}

pub(crate) struct ShutdownRequest {
    pub grace: Duration,
    pub reply: oneshot::Sender<ShutdownReport>,
}

/// What [`super::Publisher::shutdown`] achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Events acknowledged by the broker during the grace period.
    pub sent: u64,
    /// Events still in the outbox; the next start sends them.
    pub left_in_outbox: u64,
    /// `offline` was published and the connection closed with DISCONNECT.
    pub disconnected_cleanly: bool,
}

/// Queues a message for `{prefix}/cmd/result`, dropping the oldest beyond [`RESULT_QUEUE`].
pub(crate) fn push_result(shared: &Shared, payload: Vec<u8>) {
    let mut pending = shared.pending();
    if pending.results.len() >= RESULT_QUEUE {
        pending.results.pop_front();
        Counters::add(&shared.counters.publish_errors);
        tracing::warn!("command result dropped: {RESULT_QUEUE} results are waiting for the broker");
    }
    pending.results.push_back(payload);
}
