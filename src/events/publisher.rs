//! The application's handle on the MQTT side: store events, report camera state, receive
//! commands, shut down cleanly. The connection itself lives in [`super::link`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::broker::{self, Listeners};
use super::command::{Command, Rejection};
use super::config::{CommandsConfig, MqttConfig};
use super::hold::Hold;
use super::intake::CommandIntake;
use super::link::{self, Link, MAX_OUTGOING};
use super::model::{Event, Topics, check_topic_segment};
use super::outbox::{Durability, Outbox};
use super::state::{CameraStatus, Counters, Shared, ShutdownReport, ShutdownRequest, push_result};
use crate::error::Error;

/// Commands waiting for the application; more are refused as busy.
const COMMAND_QUEUE: usize = 16;

/// Starts the in-process broker when no host is configured, and returns the hold on events
/// that goes with it (none when `mqtt.hold_for_subscriber_s` is 0).
async fn start_embedded_broker(cfg: &MqttConfig, topics: &Topics, waiting: u64) -> Result<Option<Hold>, Error> {
    if cfg.host.is_some() {
        return Ok(None);
    }
    let listeners = Listeners::new(topics.prefix());
    let (port, watching) = (cfg.port, listeners.clone());
    tokio::task::spawn_blocking(move || broker::start_embedded(port, watching))
        .await
        .map_err(|e| Error::Environment(format!("the in-process MQTT broker did not start: {e}")))??;
    if cfg.hold_for_subscriber_s == 0 {
        return Ok(None);
    }
    let filter = topics.camera_events("+");
    tracing::info!(
        waiting,
        filter = %filter,
        hold_for_subscriber_s = cfg.hold_for_subscriber_s,
        "events wait in the outbox until someone subscribes to them"
    );
    let limit = std::time::Duration::from_secs(cfg.hold_for_subscriber_s);
    Ok(Some(Hold::new(listeners, limit, filter)))
}

/// Publishes identity events and daemon state; see the module documentation.
///
/// Cheap to clone. Dropping every clone without [`Publisher::shutdown`] closes the connection
/// without DISCONNECT, so the broker publishes the last will (`offline`).
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Inserting connection (synced to disk on every commit).
    outbox: Mutex<Outbox>,
    topics: Topics,
    /// Held only here: when the last clone goes, the link sees the channel close.
    shutdown_tx: mpsc::Sender<ShutdownRequest>,
}

/// Counters since the publisher started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PublisherMetrics {
    /// Event messages handed to the broker (a resend after a reconnect counts again).
    pub published: u64,
    /// Events the broker acknowledged (and that left the outbox).
    pub acked: u64,
    /// Connections made after the first.
    pub reconnects: u64,
    /// Events that could not be stored, and other messages dropped.
    pub publish_errors: u64,
    /// Messages on the command topics.
    pub commands_received: u64,
    /// Command messages refused, for any reason; `command_rejections` says which.
    pub commands_rejected: u64,
    pub command_rejections: CommandRejections,
}

/// Refused command messages by reason (the `code` of their result); they add up to
/// [`PublisherMetrics::commands_rejected`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CommandRejections {
    /// Remote commands are off (`[commands] enabled = false`).
    pub disabled: u64,
    /// Not a signed envelope.
    pub malformed: u64,
    /// The signature does not match: another key, or an altered body.
    pub bad_signature: u64,
    /// Signed, but not a valid command for its topic.
    pub invalid: u64,
    /// Timestamp older than `commands.max_age_s`.
    pub stale: u64,
    /// Timestamp ahead of the daemon's clock by more than `commands.max_age_s`.
    pub future: u64,
    /// A signed message accepted before.
    pub replayed: u64,
    /// Published with the retain flag.
    pub retained: u64,
    /// Too many commands waiting or accepted lately.
    pub busy: u64,
    /// The application had stopped taking commands.
    pub shutting_down: u64,
}

impl CommandRejections {
    /// The count for one reason.
    pub fn get(&self, reason: Rejection) -> u64 {
        match reason {
            Rejection::Disabled => self.disabled,
            Rejection::Malformed => self.malformed,
            Rejection::BadSignature => self.bad_signature,
            Rejection::Invalid => self.invalid,
            Rejection::Stale => self.stale,
            Rejection::Future => self.future,
            Rejection::Replayed => self.replayed,
            Rejection::Retained => self.retained,
            Rejection::Busy => self.busy,
            Rejection::ShuttingDown => self.shutting_down,
        }
    }

    fn from_counters(counters: &[AtomicU64; Rejection::ALL.len()]) -> CommandRejections {
        let get = |r: Rejection| counters[r.index()].load(Ordering::Relaxed);
        CommandRejections {
            disabled: get(Rejection::Disabled),
            malformed: get(Rejection::Malformed),
            bad_signature: get(Rejection::BadSignature),
            invalid: get(Rejection::Invalid),
            stale: get(Rejection::Stale),
            future: get(Rejection::Future),
            replayed: get(Rejection::Replayed),
            retained: get(Rejection::Retained),
            busy: get(Rejection::Busy),
            shutting_down: get(Rejection::ShuttingDown),
        }
    }
}

impl Publisher {
    /// Opens the outbox, starts the in-process broker when `cfg.host` is absent, and starts
    /// the connection task. Returns at once: an unreachable broker is retried in the
    /// background (events wait in the outbox). `cameras` get a retained `offline` status
    /// until [`Publisher::camera_status`] says otherwise.
    ///
    /// Remote commands that pass `commands` (see [`CommandsConfig`]) arrive on the returned
    /// receiver, at most 16 waiting (more are refused as busy). When `shutdown` is
    /// cancelled, command intake stops (the receiver reports the channel disconnected); the
    /// connection stays up so that [`Publisher::shutdown`] can drain the outbox. The
    /// command key is read here, once.
    pub async fn start(
        cfg: &MqttConfig,
        commands: &CommandsConfig,
        cameras: &[String],
        shutdown: CancellationToken,
    ) -> Result<(Publisher, crossbeam_channel::Receiver<Command>), Error> {
        let mut problems = cfg.validate("mqtt");
        problems.extend(commands.validate("commands"));
        for camera in cameras {
            if let Err(why) = check_topic_segment(camera) {
                problems.push(format!("cameras: name {why}"));
            }
        }
        if !problems.is_empty() {
            return Err(Error::Config(problems));
        }
        let key = commands.load_key("commands")?;
        let topics = Topics::new(&cfg.prefix);
        let writer = Outbox::open(&cfg.outbox_path, Durability::Full)?;
        let reader = Outbox::open(&cfg.outbox_path, Durability::Normal)?;
        let depth = reader.depth()?;

        let hold = start_embedded_broker(cfg, &topics, depth).await?;
        let options = link::mqtt_options(cfg, &topics, &cfg.client_id, link::Session::Persistent)?;

        let statuses = cameras
            .iter()
            .map(|c| {
                (
                    c.clone(),
                    CameraStatus {
                        online: false,
                        dirty: true,
                    },
                )
            })
            .collect();
        let shared = Arc::new(Shared::new(depth, statuses));
        let (command_tx, command_rx) = crossbeam_channel::bounded(COMMAND_QUEUE);
        let intake = CommandIntake::new(command_tx, key, commands.max_age_s);
        let (shutdown_tx, shutdown_rx) = mpsc::channel(1);
        let link = Link::new(cfg, options, topics.clone(), shared.clone(), reader, intake, shutdown).with_hold(hold);
        tracing::info!(
            broker = %cfg.broker_address(),
            embedded = cfg.host.is_none(),
            outbox = %cfg.outbox_path.display(),
            waiting = depth,
            remote_commands = commands.enabled,
            "MQTT publisher started"
        );
        tokio::spawn(link.run(shutdown_rx));
        let inner = Inner {
            shared,
            outbox: Mutex::new(writer),
            topics,
            shutdown_tx,
        };
        Ok((Publisher { inner: Arc::new(inner) }, command_rx))
    }

    /// Stores the event in the outbox (committed to disk) and wakes the sender. With the
    /// in-process broker, events are sent once someone subscribes to them or
    /// `mqtt.hold_for_subscriber_s` after the start, whichever comes first. Returns once
    /// the event is stored, whether or not the broker is reachable. Blocks for the length of
    /// one SQLite commit.
    pub fn publish_event(&self, event: &Event) -> Result<(), Error> {
        let stored = self.store_event(event);
        if stored.is_err() {
            Counters::add(&self.inner.shared.counters.publish_errors);
        }
        stored
    }

    fn store_event(&self, event: &Event) -> Result<(), Error> {
        check_topic_segment(&event.camera).map_err(|why| Error::Rejected(format!("event camera name {why}")))?;
        let finite = event.similarity.is_none_or(f32::is_finite)
            && event.threshold.is_finite()
            && event.liveness.is_none_or(|l| l.is_finite())
            && event.bbox.iter().all(|v| v.is_finite());
        if !finite {
            return Err(Error::Rejected(format!(
                "event {} holds a non-finite number (JSON cannot carry it)",
                event.event_id
            )));
        }
        let topic = self.inner.topics.camera_events(&event.camera);
        let payload =
            serde_json::to_vec(event).map_err(|e| Error::Rejected(format!("event cannot be encoded: {e}")))?;
        if link::packet_too_large(&topic, payload.len()) {
            return Err(Error::Rejected(format!(
                "event {} is larger than {MAX_OUTGOING} bytes",
                event.event_id
            )));
        }
        let seq = {
            let outbox = self.inner.outbox.lock().unwrap_or_else(|e| e.into_inner());
            outbox.push(&topic, &payload)?
        };
        let shared = &self.inner.shared;
        shared.depth.fetch_add(1, Ordering::Relaxed);
        shared.wake.notify_one();
        tracing::debug!(seq, event_id = %event.event_id, camera = %event.camera, "event stored in the outbox");
        Ok(())
    }

    /// Sets the camera's retained `{prefix}/{camera}/status` (`online` / `offline`); it is
    /// published again after every reconnect.
    pub fn camera_status(&self, camera: &str, online: bool) {
        if let Err(why) = check_topic_segment(camera) {
            tracing::error!(camera = %camera, "camera status not published: name {why}");
            return;
        }
        let shared = &self.inner.shared;
        shared
            .pending()
            .statuses
            .insert(camera.to_owned(), CameraStatus { online, dirty: true });
        shared.wake.notify_one();
    }

    /// Publishes `{prefix}/stats` (QoS 0, not retained) when connected; dropped otherwise.
    pub fn stats(&self, json: serde_json::Value) {
        let shared = &self.inner.shared;
        let payload = json.to_string().into_bytes();
        if link::packet_too_large(&self.inner.topics.stats(), payload.len()) {
            Counters::add(&shared.counters.publish_errors);
            tracing::error!(bytes = payload.len(), "stats not published: too large");
            return;
        }
        shared.pending().stats = Some(payload);
        shared.wake.notify_one();
    }

    /// Publishes a command result on `{prefix}/cmd/result` (QoS 1). Results wait for the
    /// connection in memory (the newest 256).
    pub fn command_result(&self, json: serde_json::Value) {
        let shared = &self.inner.shared;
        let payload = json.to_string().into_bytes();
        if link::packet_too_large(&self.inner.topics.cmd_result(), payload.len()) {
            Counters::add(&shared.counters.publish_errors);
            tracing::error!(bytes = payload.len(), "command result not published: too large");
            return;
        }
        push_result(shared, payload);
        shared.wake.notify_one();
    }

    /// Connected to the broker now.
    pub fn connected(&self) -> bool {
        self.inner.shared.connected.load(Ordering::Relaxed)
    }

    /// Events in the outbox: stored and not yet acknowledged.
    pub fn outbox_depth(&self) -> u64 {
        self.inner.shared.depth.load(Ordering::Relaxed)
    }

    pub fn metrics(&self) -> PublisherMetrics {
        let c = &self.inner.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PublisherMetrics {
            published: get(&c.published),
            acked: get(&c.acked),
            reconnects: get(&c.reconnects),
            publish_errors: get(&c.publish_errors),
            commands_received: get(&c.commands_received),
            commands_rejected: get(&c.commands_rejected),
            command_rejections: CommandRejections::from_counters(&c.rejections),
        }
    }

    /// Sends what the outbox holds for at most `grace`, then publishes every camera's status
    /// and `{prefix}/available` as `offline` (retained) and disconnects cleanly (allowing
    /// itself one more second for that). With the broker unreachable it gives up at the end
    /// of `grace` (at once when the outbox is empty); what is left stays in the outbox for
    /// the next start. Events stored by other clones after this call stay in the outbox too.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        let (reply, answer) = oneshot::channel();
        let asked = self
            .inner
            .shutdown_tx
            .send(ShutdownRequest { grace, reply })
            .await
            .is_ok();
        if asked && let Ok(report) = answer.await {
            return report;
        }
        // The connection task is gone already (an earlier shutdown through another clone).
        ShutdownReport {
            sent: 0,
            left_in_outbox: self.outbox_depth(),
            disconnected_cleanly: false,
        }
    }
}
