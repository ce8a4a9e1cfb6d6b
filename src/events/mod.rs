//! Identity events over MQTT, never lost.
//!
//! - [`Event`] is the JSON contract of `{prefix}/{camera}/events` (docs/mqtt.md, "The event contract").
//! - [`Publisher`] stores every event in an SQLite outbox before it returns, and a background
//!   task drives rumqttc's event loop: it publishes the outbox in order with QoS 1 and deletes
//!   a row only when the broker's PUBACK for that row arrives. It also keeps
//!   `{prefix}/available` and the cameras' retained status topics right across reconnects,
//!   and hands remote enrollment/removal commands to the application: signed with a shared
//!   key (HMAC-SHA256), fresh, never replayed, and off unless `[commands]` turns them on.
//! - With no broker host configured, an in-process broker (rumqttd) listens on
//!   127.0.0.1 so that a first run needs nothing external. At start, events wait in the
//!   outbox until someone subscribes to them there ([`hold`]): it would drop them otherwise.
//! - [`watch`] is `facegate watch`: events as a person wants to read them.

mod broker;
mod command;
mod config;
mod hold;
mod intake;
mod link;
mod model;
mod outbox;
mod publisher;
mod replay;
mod signing;
mod state;
mod watch;

pub use command::{Command, CommandError, Rejection};
pub use config::{CommandsConfig, MqttConfig};
pub use model::{
    EVENT_FIELDS, Event, EventKind, Liveness, LivenessCues, PersonRef, Topics, check_topic_segment, timestamp,
};
pub use publisher::{CommandRejections, Publisher, PublisherMetrics};
pub use signing::{CommandKey, MIN_KEY_BYTES, sign_command};
pub use state::ShutdownReport;
pub use watch::{WatchFilter, WatchOptions, watch};

#[cfg(test)]
mod tests {
    use super::*;

    /// The application spawns these on a multi-threaded runtime and shares the handle.
    #[test]
    fn handles_and_futures_can_cross_threads() {
        fn send<T: Send>(_: &T) {}
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Publisher>();
        let cfg = MqttConfig::default();
        send(&watch(&cfg, &WatchOptions::default()));
        let commands = CommandsConfig::default();
        send(&Publisher::start(
            &cfg,
            &commands,
            &[],
            tokio_util::sync::CancellationToken::new(),
        ));
    }
}
