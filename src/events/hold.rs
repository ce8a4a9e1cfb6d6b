//! Holding events at start until someone listens (in-process broker only).
//!
//! A broker that has just started has no subscribers, and rumqttd drops a message that
//! matches no subscription: the outbox's backlog, sent at once, would reach nobody and
//! still leave the outbox on its PUBACK. So events wait in the outbox until a subscription
//! covering every camera's events is granted, or until `mqtt.hold_for_subscriber_s` is over.
//! The hold ends once, for good: later, events go out as they come, listened to or not.
//!
//! With an external broker there is no hold: its subscriptions cannot be seen from here, and
//! it keeps messages for the persistent sessions of its subscribers (clean session off, QoS 1)
//! while they are away, also across its own restarts when its persistence is on.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::broker::Listeners;

/// Why a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    Subscriber,
    TimeUp,
}

pub(crate) struct Hold {
    listeners: Arc<Listeners>,
    until: Instant,
    limit: Duration,
    /// The filter a subscriber would use, for the logs.
    filter: String,
}

impl Hold {
    pub fn new(listeners: Arc<Listeners>, limit: Duration, filter: String) -> Hold {
        Hold {
            listeners,
            until: Instant::now() + limit,
            limit,
            filter,
        }
    }

    /// `None` while events must wait.
    pub fn released(&self, now: Instant) -> Option<Release> {
        if self.listeners.heard() {
            Some(Release::Subscriber)
        } else if now >= self.until {
            Some(Release::TimeUp)
        } else {
            None
        }
    }

    /// What the link's select loops wait on: returns when the hold may be over.
    pub fn signal(&self) -> Signal {
        let (listeners, until) = (self.listeners.clone(), self.until);
        Box::pin(async move {
            tokio::select! {
                _ = listeners.arrival() => {}
                _ = sleep_until(until) => {}
            }
        })
    }

    pub fn filter(&self) -> &str {
        &self.filter
    }

    pub fn limit_s(&self) -> u64 {
        self.limit.as_secs()
    }
}

pub(crate) type Signal = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The signal of a hold that [`Option`] may not hold: without one, it never comes.
pub(crate) fn signal(hold: Option<&Hold>) -> Signal {
    match hold {
        Some(hold) => hold.signal(),
        None => Box::pin(std::future::pending()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hold_ends_when_its_time_is_up_or_with_a_subscriber() {
        let hold = Hold::new(Listeners::new("fg"), Duration::from_millis(50), "fg/+/events".into());
        assert_eq!(hold.released(Instant::now()), None);
        hold.signal().await;
        assert_eq!(hold.released(Instant::now()), Some(Release::TimeUp));

        let listeners = Listeners::new("fg");
        let hold = Hold::new(listeners.clone(), Duration::from_secs(3600), "fg/+/events".into());
        assert_eq!(hold.released(Instant::now()), None);
        listeners.subscribed();
        hold.signal().await;
        assert_eq!(hold.released(Instant::now()), Some(Release::Subscriber));
    }
}
