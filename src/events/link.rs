//! The connection task: drives rumqttc's event loop, sends the outbox in order and deletes
//! each row when the broker acknowledges it.
//!
//! How acknowledgements are matched to rows: rumqttc assigns packet ids itself and reports
//! them only as `Outgoing::Publish(pkid)` when it takes a request from its channel (in channel
//! order), and as `Outgoing::AwaitAck(pkid)` when that id is still in use (the request is then
//! held back and reported again as `Outgoing::Publish(pkid)` right after the PUBACK that frees
//! the id). This task is the only one that writes to the channel, remembers in order what it
//! wrote, and so learns which packet id carries which outbox row. `Incoming::PubAck(pkid)` then
//! deletes exactly that row.
//!
//! On a lost connection rumqttc keeps unacknowledged publishes to resend them itself; this
//! task throws that copy away (and any request still queued) and starts the next connection
//! from the oldest row of the outbox, so that the bookkeeping above starts from a clean slate.
//! Rows that reached the broker but whose PUBACK was lost go out again: subscribers drop
//! duplicates by `event_id`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, LastWill, MqttOptions, MqttState, Outgoing, Packet,
    Publish, QoS, SubscribeFilter, SubscribeReasonCode, Transport,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::broker::MAX_PAYLOAD;
use super::command::CommandError;
use super::config::MqttConfig;
use super::hold::{self, Hold, Release};
use super::intake::CommandIntake;
use super::model::Topics;
use super::outbox::Outbox;
use super::state::{CameraStatus, Counters, Shared, ShutdownReport, ShutdownRequest, push_result};
use crate::backoff::Backoff;
use crate::error::Error;

/// Events sent and not yet acknowledged, at most.
pub(crate) const WINDOW: usize = 32;
/// Requests queued towards rumqttc's event loop, at most (its bounded channel).
const CHANNEL_CAP: usize = 64;
/// Packet ids rumqttc cycles through. Well above `WINDOW` plus the few other QoS 1
/// messages, so that an id comes round again only long after its PUBACK.
const RUMQTTC_INFLIGHT: u16 = 100;
/// Largest packet we send. Events are a few hundred bytes.
pub(crate) const MAX_OUTGOING: usize = 1024 * 1024;
/// Largest packet we accept: enrollment photos.
const MAX_INCOMING: usize = MAX_PAYLOAD;
/// A connection that lasted this long ends an outage: the next wait starts short again.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Time allowed, after the grace period, for `offline` and DISCONNECT.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The wall clock in Unix seconds, as command timestamps are.
fn unix_now() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

/// A publish whose header, topic and payload exceed what we send.
pub(crate) fn packet_too_large(topic: &str, payload: usize) -> bool {
    // Fixed header (≤ 5), topic length (2), packet id (2).
    payload + topic.len() + 9 > MAX_OUTGOING
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Session {
    /// Clean session off and a last will: the daemon.
    Persistent,
    /// Clean session, no will: `watch`.
    Clean,
}

/// rumqttc options from the configuration: credentials, TLS, keep-alive, session, will.
pub(crate) fn mqtt_options(
    cfg: &MqttConfig,
    topics: &Topics,
    client_id: &str,
    session: Session,
) -> Result<MqttOptions, Error> {
    let mut o = MqttOptions::new(client_id, cfg.connect_host_for_socket(), cfg.port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_s.max(1)));
    o.set_max_packet_size(MAX_INCOMING, MAX_OUTGOING);
    o.set_inflight(RUMQTTC_INFLIGHT);
    if let Some(user) = &cfg.username {
        o.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
    }
    if let Some(ca_file) = &cfg.ca_file {
        let ca = read_pem(ca_file, "CERTIFICATE")?;
        let client_auth = match (&cfg.client_cert, &cfg.client_key) {
            (Some(cert), Some(key)) => Some((read_pem(cert, "CERTIFICATE")?, read_pem(key, "PRIVATE KEY")?)),
            _ => None,
        };
        o.set_transport(Transport::tls(ca, client_auth, None));
    }
    if session == Session::Persistent {
        if client_id.is_empty() {
            // rumqttc panics on this combination.
            return Err(Error::Config(vec!["mqtt.client_id: must not be empty".into()]));
        }
        o.set_clean_session(false);
        o.set_last_will(LastWill::new(topics.available(), "offline", QoS::AtLeastOnce, true));
    }
    Ok(o)
}

/// Reads a PEM file; rumqttc would only find out at the first connection.
fn read_pem(path: &std::path::Path, label: &str) -> Result<Vec<u8>, Error> {
    let fail = |reason: String| Error::Input {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN ") || !text.contains(&format!("{label}-----")) {
        return Err(fail(format!("holds no PEM {}", label.to_lowercase())));
    }
    Ok(bytes)
}

/// A request written to rumqttc's channel, in order, until rumqttc reports taking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// An outbox row.
    Event(i64),
    /// A status, result or stats message.
    Other,
    Subscribe,
    Disconnect,
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sent::Event(seq) => write!(f, "event {seq}"),
            Sent::Other => f.write_str("a status, result or stats message"),
            Sent::Subscribe => f.write_str("the command subscriptions"),
            Sent::Disconnect => f.write_str("DISCONNECT"),
        }
    }
}

/// What was written before, for the logs: `nothing` when the queue is empty.
fn described(sent: Option<Sent>) -> String {
    sent.map_or_else(|| "nothing".to_owned(), |s| s.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Sending the outbox until it is empty or the deadline.
    Draining {
        deadline: Instant,
    },
    /// `offline`, then DISCONNECT once everything is acknowledged, then waiting for the
    /// broker to close the connection.
    Closing(Goodbye),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Goodbye {
    deadline: Instant,
    offline_sent: bool,
    disconnect_sent: bool,
    /// DISCONNECT is on the wire. We still read until the broker closes: closing the socket
    /// with its PUBACKs unread would send a TCP reset, and a broker that sees the reset before
    /// the DISCONNECT publishes the last will after our own `offline`.
    disconnect_written: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// The task is done.
    Stop,
    /// Drop this connection and make a new one.
    Reconnect,
}

struct Outage {
    since: Instant,
    attempts: u32,
}

pub(crate) struct Link {
    client: AsyncClient,
    eventloop: Option<EventLoop>,
    shared: Arc<Shared>,
    outbox: Outbox,
    topics: Topics,
    broker: String,
    commands: CommandIntake,
    token: CancellationToken,
    backoff: Backoff,

    ever_connected: bool,
    connected_at: Option<Instant>,
    outage: Option<Outage>,
    /// Written to rumqttc's channel and not yet reported taken, oldest first.
    submitted: VecDeque<Sent>,
    /// Packet id → what it carries, until its PUBACK.
    awaiting_ack: HashMap<u16, Sent>,
    /// A request rumqttc holds back for a packet id still in use.
    collided: Option<Sent>,
    /// Last outbox row handed over on this connection.
    cursor: i64,
    events_in_flight: usize,
    outbox_failing: bool,
    /// Events wait for a subscriber while this is set (in-process broker, at start).
    hold: Option<Hold>,

    phase: Phase,
    acked_at_drain: u64,
    reply: Option<tokio::sync::oneshot::Sender<ShutdownReport>>,
}

impl Link {
    pub fn new(
        cfg: &MqttConfig,
        options: MqttOptions,
        topics: Topics,
        shared: Arc<Shared>,
        outbox: Outbox,
        commands: CommandIntake,
        token: CancellationToken,
    ) -> Link {
        let (client, eventloop) = AsyncClient::new(options, CHANNEL_CAP);
        Link {
            client,
            eventloop: Some(eventloop),
            shared,
            outbox,
            topics,
            broker: cfg.broker_address(),
            commands,
            token,
            backoff: Backoff::new(
                Duration::from_millis(cfg.backoff_initial_ms),
                Duration::from_millis(cfg.backoff_max_ms),
            ),
            ever_connected: false,
            connected_at: None,
            outage: None,
            submitted: VecDeque::new(),
            awaiting_ack: HashMap::new(),
            collided: None,
            cursor: 0,
            events_in_flight: 0,
            outbox_failing: false,
            hold: None,
            phase: Phase::Running,
            acked_at_drain: 0,
            reply: None,
        }
    }

    /// Events wait for a subscriber until `hold` is over.
    pub fn with_hold(mut self, hold: Option<Hold>) -> Link {
        self.hold = hold;
        self
    }

    pub async fn run(mut self, mut shutdown_rx: mpsc::Receiver<ShutdownRequest>) {
        let Some(mut eventloop) = self.eventloop.take() else {
            return;
        };
        let shared = self.shared.clone();
        let token = self.token.clone();
        let mut retry_at: Option<Instant> = None;
        loop {
            // Between connection attempts.
            if let Some(at) = retry_at.take() {
                loop {
                    let deadline = self.deadline();
                    let flow = tokio::select! {
                        _ = sleep_until(at) => break,
                        req = shutdown_rx.recv(), if self.phase == Phase::Running => self.on_shutdown_request(req),
                        _ = token.cancelled(), if self.commands.open() => self.stop_commands(),
                        _ = sleep_until(deadline.unwrap_or(at)), if deadline.is_some() => self.on_deadline(),
                        _ = hold::signal(self.hold.as_ref()), if self.hold.is_some() => self.on_hold_signal(),
                        _ = shared.wake.notified() => { self.pump(); Flow::Continue }
                    };
                    if flow == Flow::Stop {
                        return;
                    }
                }
            }

            // One step of rumqttc's event loop; the poll future stays alive while other
            // work is done, and is never dropped half-way.
            let polled = {
                let poll = eventloop.poll();
                tokio::pin!(poll);
                loop {
                    let deadline = self.deadline();
                    let flow = tokio::select! {
                        res = &mut poll => break Some(res),
                        req = shutdown_rx.recv(), if self.phase == Phase::Running => self.on_shutdown_request(req),
                        _ = token.cancelled(), if self.commands.open() => self.stop_commands(),
                        _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => self.on_deadline(),
                        _ = hold::signal(self.hold.as_ref()), if self.hold.is_some() => self.on_hold_signal(),
                        _ = shared.wake.notified() => { self.pump(); Flow::Continue }
                    };
                    if flow == Flow::Stop {
                        break None;
                    }
                }
            };
            let flow = match polled {
                None => Flow::Stop,
                Some(Ok(event)) => self.on_event(event),
                // The broker closing after our DISCONNECT is the end we wanted.
                Some(Err(_)) if self.disconnect_written() => self.finish(true),
                Some(Err(e)) => {
                    self.on_connection_error(&e);
                    Flow::Reconnect
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::Stop => return,
                Flow::Reconnect => {
                    self.forget_connection(&mut eventloop);
                    if self.after_disconnect() == Flow::Stop {
                        return;
                    }
                    let mut delay = self.backoff.next_delay();
                    if let Some(deadline) = self.deadline() {
                        // Keep trying within the grace period.
                        delay = delay.min(deadline.saturating_duration_since(Instant::now()));
                    }
                    retry_at = Some(Instant::now() + delay);
                }
            }
        }
    }

    fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running => None,
            Phase::Draining { deadline } | Phase::Closing(Goodbye { deadline, .. }) => Some(deadline),
        }
    }

    fn room(&self) -> bool {
        self.submitted.len() < CHANNEL_CAP
    }

    // ---- rumqttc events -------------------------------------------------------------------

    fn on_event(&mut self, event: MqttEvent) -> Flow {
        let flow = match event {
            MqttEvent::Incoming(Packet::ConnAck(ack)) => self.on_connected(ack.session_present),
            MqttEvent::Incoming(Packet::PubAck(ack)) => self.on_puback(ack.pkid),
            MqttEvent::Incoming(Packet::Publish(publish)) => self.on_publish(publish),
            MqttEvent::Incoming(Packet::SubAck(ack)) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    tracing::warn!(
                        broker = %self.broker,
                        "the broker refused the command subscriptions (ACL?): remote enrollment is off"
                    );
                }
                Flow::Continue
            }
            MqttEvent::Outgoing(Outgoing::Publish(pkid)) => self.on_taken_publish(pkid),
            MqttEvent::Outgoing(Outgoing::AwaitAck(pkid)) => match self.submitted.pop_front() {
                Some(sent @ (Sent::Event(_) | Sent::Other)) => {
                    tracing::debug!(pkid, "packet id still in use; rumqttc holds the publish back");
                    self.collided = Some(sent);
                    Flow::Continue
                }
                other => self.lost_track(format!("AwaitAck({pkid}) for {}", described(other))),
            },
            MqttEvent::Outgoing(Outgoing::Subscribe(_)) => match self.submitted.pop_front() {
                Some(Sent::Subscribe) => Flow::Continue,
                other => self.lost_track(format!("Subscribe for {}", described(other))),
            },
            MqttEvent::Outgoing(Outgoing::Disconnect) => match (self.submitted.pop_front(), self.phase) {
                // Written and flushed: the broker discards the will and closes the connection.
                (Some(Sent::Disconnect), Phase::Closing(goodbye)) => {
                    self.phase = Phase::Closing(Goodbye {
                        disconnect_written: true,
                        ..goodbye
                    });
                    Flow::Continue
                }
                (other, _) => self.lost_track(format!("Disconnect for {}", described(other))),
            },
            _ => Flow::Continue,
        };
        if flow == Flow::Continue {
            self.pump();
            return self.check_drained();
        }
        flow
    }

    fn on_connected(&mut self, session_present: bool) -> Flow {
        let now = Instant::now();
        self.shared.connected.store(true, Ordering::Relaxed);
        self.connected_at = Some(now);
        let waiting = self.shared.depth.load(Ordering::Relaxed);
        if self.ever_connected {
            Counters::add(&self.shared.counters.reconnects);
            let (down_s, attempts) = self
                .outage
                .as_ref()
                .map_or((0.0, 0), |o| (now.duration_since(o.since).as_secs_f64(), o.attempts));
            tracing::info!(broker = %self.broker, down_s, attempts, waiting, "MQTT connection back");
        } else {
            tracing::info!(broker = %self.broker, session_present, waiting, "connected to the MQTT broker");
        }
        self.ever_connected = true;
        self.outage = None;
        if self.phase == Phase::Running {
            // Again on every connection: a broker without our session has lost them.
            // Subscribed even with commands disabled: a command then gets an answer that
            // says how to turn them on, rather than silence.
            let filters =
                [self.topics.cmd_enroll(), self.topics.cmd_remove()].map(|t| SubscribeFilter::new(t, QoS::AtLeastOnce));
            if self.client.try_subscribe_many(filters).is_ok() {
                self.submitted.push_back(Sent::Subscribe);
            }
            let available = self.topics.available();
            if self
                .client
                .try_publish(available, QoS::AtLeastOnce, true, "online")
                .is_ok()
            {
                self.submitted.push_back(Sent::Other);
            }
            for status in self.shared.pending().statuses.values_mut() {
                status.dirty = true;
            }
        }
        Flow::Continue
    }

    fn on_taken_publish(&mut self, pkid: u16) -> Flow {
        if let Some(sent) = self.collided.take() {
            // The held-back publish went out after the PUBACK that freed its id.
            if matches!(sent, Sent::Event(_)) {
                Counters::add(&self.shared.counters.published);
            }
            self.awaiting_ack.insert(pkid, sent);
            return Flow::Continue;
        }
        match self.submitted.pop_front() {
            Some(sent @ Sent::Event(seq)) => {
                Counters::add(&self.shared.counters.published);
                tracing::trace!(seq, pkid, "event handed to the broker");
                self.awaiting_ack.insert(pkid, sent);
                Flow::Continue
            }
            Some(Sent::Other) => {
                if pkid != 0 {
                    self.awaiting_ack.insert(pkid, Sent::Other);
                }
                Flow::Continue
            }
            other => self.lost_track(format!("Publish({pkid}) for {}", described(other))),
        }
    }

    fn on_puback(&mut self, pkid: u16) -> Flow {
        match self.awaiting_ack.remove(&pkid) {
            Some(Sent::Event(seq)) => {
                self.events_in_flight = self.events_in_flight.saturating_sub(1);
                Counters::add(&self.shared.counters.acked);
                match self.outbox.remove(seq) {
                    Ok(true) => self.shared.depth_sub_one(),
                    Ok(false) => {}
                    Err(e) => {
                        // The row stays and goes again on the next connection.
                        Counters::add(&self.shared.counters.publish_errors);
                        tracing::error!(seq, error = %e, "acknowledged event not removed from the outbox");
                    }
                }
            }
            Some(_) => {}
            None => tracing::debug!(pkid, "PUBACK for a packet id not awaiting one"),
        }
        Flow::Continue
    }

    /// The bookkeeping no longer matches what rumqttc reports. Deleting rows now could
    /// delete the wrong ones, so start a new connection from the oldest row instead.
    fn lost_track(&mut self, what: String) -> Flow {
        tracing::error!(what = %what, "lost track of MQTT packet ids; reconnecting to resend from the outbox");
        Counters::add(&self.shared.counters.publish_errors);
        self.on_connection_error_msg("bookkeeping reset");
        Flow::Reconnect
    }

    // ---- commands -------------------------------------------------------------------------

    fn on_publish(&mut self, publish: Publish) -> Flow {
        let verb = if publish.topic == self.topics.cmd_enroll() {
            "enroll"
        } else if publish.topic == self.topics.cmd_remove() {
            "remove"
        } else {
            tracing::debug!(topic = %publish.topic, "message on a topic we do not handle");
            return Flow::Continue;
        };
        Counters::add(&self.shared.counters.commands_received);
        match self.commands.take(verb, &publish.payload, publish.retain, unix_now()) {
            Ok(()) => {
                tracing::info!(verb = %verb, "command received");
                Flow::Continue
            }
            Err(e) => self.refuse(e),
        }
    }

    fn refuse(&mut self, e: CommandError) -> Flow {
        Counters::add(&self.shared.counters.commands_rejected);
        Counters::add(&self.shared.counters.rejections[e.kind.index()]);
        tracing::warn!(
            verb = %e.verb, request_id = %e.request_id.as_deref().unwrap_or("-"), code = %e.kind.code(), reason = %e.reason,
            "command refused"
        );
        push_result(&self.shared, e.result_json().to_string().into_bytes());
        Flow::Continue
    }

    fn stop_commands(&mut self) -> Flow {
        // The application is stopping: end its command stream; events keep flowing.
        self.commands.close();
        Flow::Continue
    }

    // ---- sending --------------------------------------------------------------------------

    /// Hands rumqttc what is waiting, as far as its channel and the window allow.
    fn pump(&mut self) {
        if !self.connected() {
            // Stats are only worth sending fresh; the rest waits for the connection.
            self.shared.pending().stats = None;
            return;
        }
        let closing = matches!(self.phase, Phase::Closing(_));
        self.send_statuses();
        if !closing && !self.holding() {
            self.send_outbox();
        }
        self.send_results();
        if self.phase == Phase::Running {
            let stats = self.shared.pending().stats.take();
            // QoS 0 and soon stale: dropped rather than queued when the channel is full.
            if let Some(stats) = stats
                && self.room()
                && self
                    .client
                    .try_publish(self.topics.stats(), QoS::AtMostOnce, false, stats)
                    .is_ok()
            {
                self.submitted.push_back(Sent::Other);
            }
        }
        if closing {
            self.send_goodbye();
        }
    }

    // ---- holding events for a subscriber ---------------------------------------------------

    /// Whether events still wait for a subscriber; ends the hold, for good, once one has
    /// subscribed or the time is up.
    fn holding(&mut self) -> bool {
        let Some(hold) = &self.hold else {
            return false;
        };
        let Some(release) = hold.released(Instant::now()) else {
            return true;
        };
        let waiting = self.shared.depth.load(Ordering::Relaxed);
        match release {
            Release::Subscriber => tracing::info!(
                filter = %hold.filter(),
                waiting,
                "someone subscribed to the events; sending those waiting in the outbox"
            ),
            Release::TimeUp => tracing::warn!(
                filter = %hold.filter(),
                waiting,
                hold_for_subscriber_s = hold.limit_s(),
                "nobody subscribed to the events in time; sending them anyway (the in-process broker drops what nobody subscribed to)"
            ),
        }
        self.hold = None;
        false
    }

    fn on_hold_signal(&mut self) -> Flow {
        if !self.holding() {
            self.pump();
        }
        self.check_drained()
    }

    fn send_statuses(&mut self) {
        let shared = self.shared.clone();
        let mut pending = shared.pending();
        for (camera, status) in pending.statuses.iter_mut().filter(|(_, s)| s.dirty) {
            if !self.room() {
                return;
            }
            let payload = if status.online { "online" } else { "offline" };
            let topic = self.topics.camera_status(camera);
            if self.client.try_publish(topic, QoS::AtLeastOnce, true, payload).is_err() {
                return;
            }
            self.submitted.push_back(Sent::Other);
            status.dirty = false;
        }
    }

    fn send_outbox(&mut self) {
        while self.events_in_flight < WINDOW && self.room() {
            let want = (WINDOW - self.events_in_flight).min(CHANNEL_CAP - self.submitted.len());
            let rows = match self.outbox.after(self.cursor, want) {
                Ok(rows) => {
                    if self.outbox_failing {
                        tracing::info!("outbox readable again");
                        self.outbox_failing = false;
                    }
                    rows
                }
                Err(e) => {
                    if !self.outbox_failing {
                        tracing::error!(error = %e, "cannot read the outbox; events wait");
                        self.outbox_failing = true;
                    }
                    return;
                }
            };
            if rows.is_empty() {
                return;
            }
            for row in rows {
                if !rumqttc::valid_topic(&row.topic) || packet_too_large(&row.topic, row.payload.len()) {
                    // Never stored by this version; would block the outbox for good.
                    tracing::error!(seq = row.seq, topic = %row.topic, "outbox row cannot be published; deleted");
                    Counters::add(&self.shared.counters.publish_errors);
                    if let Ok(true) = self.outbox.remove(row.seq) {
                        self.shared.depth_sub_one();
                    }
                    self.cursor = row.seq;
                    continue;
                }
                if self
                    .client
                    .try_publish(row.topic, QoS::AtLeastOnce, false, row.payload)
                    .is_err()
                {
                    return;
                }
                self.submitted.push_back(Sent::Event(row.seq));
                self.cursor = row.seq;
                self.events_in_flight += 1;
            }
        }
    }

    fn send_results(&mut self) {
        while self.room() {
            let Some(result) = self.shared.pending().results.pop_front() else {
                return;
            };
            if let Err(e) = self
                .client
                .try_publish(self.topics.cmd_result(), QoS::AtLeastOnce, false, result)
            {
                if let rumqttc::ClientError::TryRequest(rumqttc::Request::Publish(p)) = e {
                    self.shared.pending().results.push_front(p.payload.to_vec());
                }
                return;
            }
            self.submitted.push_back(Sent::Other);
        }
    }

    /// While closing: after the statuses (all `offline` by now) and results, `offline` for the
    /// daemon; DISCONNECT once all of it is acknowledged.
    fn send_goodbye(&mut self) {
        let Phase::Closing(mut goodbye) = self.phase else {
            return;
        };
        let statuses_done = self.shared.pending().statuses.values().all(|s| !s.dirty);
        if !statuses_done || !self.shared.pending().results.is_empty() {
            return;
        }
        if !goodbye.offline_sent
            && self.room()
            && self
                .client
                .try_publish(self.topics.available(), QoS::AtLeastOnce, true, "offline")
                .is_ok()
        {
            self.submitted.push_back(Sent::Other);
            goodbye.offline_sent = true;
        }
        let all_acknowledged = self.submitted.is_empty() && self.awaiting_ack.is_empty();
        if goodbye.offline_sent && !goodbye.disconnect_sent && all_acknowledged && self.client.try_disconnect().is_ok()
        {
            self.submitted.push_back(Sent::Disconnect);
            goodbye.disconnect_sent = true;
        }
        self.phase = Phase::Closing(goodbye);
    }

    fn disconnect_written(&self) -> bool {
        matches!(
            self.phase,
            Phase::Closing(Goodbye {
                disconnect_written: true,
                ..
            })
        )
    }

    // ---- connection loss ------------------------------------------------------------------

    fn on_connection_error(&mut self, e: &ConnectionError) {
        self.on_connection_error_msg(&e.to_string());
    }

    fn on_connection_error_msg(&mut self, error: &str) {
        let now = Instant::now();
        let was_connected = self.shared.connected.swap(false, Ordering::Relaxed);
        let waiting = self.shared.depth.load(Ordering::Relaxed);
        if was_connected {
            if self.connected_at.is_some_and(|t| now.duration_since(t) >= STABLE_AFTER) {
                self.backoff.reset();
            }
            tracing::warn!(
                broker = %self.broker, error = %error, waiting,
                "lost the MQTT connection; reconnecting with backoff (events wait in the outbox)"
            );
            self.outage = Some(Outage {
                since: now,
                attempts: 1,
            });
        } else if let Some(outage) = &mut self.outage {
            outage.attempts += 1;
            tracing::debug!(broker = %self.broker, error = %error, attempts = outage.attempts, "MQTT broker still unreachable");
        } else {
            tracing::warn!(
                broker = %self.broker, error = %error, waiting,
                "cannot reach the MQTT broker; retrying with backoff (events wait in the outbox)"
            );
            self.outage = Some(Outage {
                since: now,
                attempts: 1,
            });
        }
    }

    /// Forgets everything about the connection that ended, in rumqttc and here.
    fn forget_connection(&mut self, eventloop: &mut EventLoop) {
        // Drops the socket and moves queued and unacknowledged requests to `pending`…
        eventloop.clean();
        // …which we do not want replayed: the outbox is the copy that counts.
        eventloop.pending.clear();
        eventloop.state = MqttState::new(RUMQTTC_INFLIGHT, false);
        self.shared.connected.store(false, Ordering::Relaxed);
        self.submitted.clear();
        self.awaiting_ack.clear();
        self.collided = None;
        self.cursor = 0;
        self.events_in_flight = 0;
        if self.phase == Phase::Running {
            // Results queued for the old connection stay queued in `pending`; stats go.
            self.shared.pending().stats = None;
        }
    }

    fn after_disconnect(&mut self) -> Flow {
        match self.phase {
            Phase::Running => Flow::Continue,
            // Nothing left to deliver: no reason to wait for the broker.
            Phase::Draining { .. } if self.shared.depth.load(Ordering::Relaxed) == 0 => self.finish(false),
            Phase::Draining { .. } => Flow::Continue,
            Phase::Closing(_) => self.finish(false),
        }
    }

    // ---- shutdown -------------------------------------------------------------------------

    fn on_shutdown_request(&mut self, req: Option<ShutdownRequest>) -> Flow {
        let Some(req) = req else {
            // Every handle is gone without shutdown: close without DISCONNECT, like a crash,
            // so that the broker publishes the last will.
            tracing::warn!("MQTT publisher dropped without shutdown; closing the connection uncleanly");
            self.shared.connected.store(false, Ordering::Relaxed);
            return Flow::Stop;
        };
        self.commands.close();
        self.reply = Some(req.reply);
        self.acked_at_drain = self.shared.counters.acked.load(Ordering::Relaxed);
        self.phase = Phase::Draining {
            deadline: Instant::now() + req.grace,
        };
        tracing::info!(
            waiting = self.shared.depth.load(Ordering::Relaxed),
            grace_s = req.grace.as_secs_f64(),
            "MQTT publisher shutting down"
        );
        if !self.connected() && self.shared.depth.load(Ordering::Relaxed) == 0 {
            return self.finish(false);
        }
        self.check_drained()
    }

    fn check_drained(&mut self) -> Flow {
        if !matches!(self.phase, Phase::Draining { .. }) || !self.connected() || self.events_in_flight > 0 {
            return Flow::Continue;
        }
        let waiting = self.shared.depth.load(Ordering::Relaxed);
        if waiting == 0 {
            self.start_closing();
        } else if self.holding() {
            // Nobody to send them to: waiting out the grace period would not change that.
            tracing::info!(
                waiting,
                "nobody subscribed to the events yet; they stay in the outbox for the next start"
            );
            self.start_closing();
        }
        Flow::Continue
    }

    fn start_closing(&mut self) {
        self.phase = Phase::Closing(Goodbye {
            deadline: Instant::now() + CLOSE_TIMEOUT,
            offline_sent: false,
            disconnect_sent: false,
            disconnect_written: false,
        });
        for status in self.shared.pending().statuses.values_mut() {
            *status = CameraStatus {
                online: false,
                dirty: true,
            };
        }
        self.pump();
    }

    fn on_deadline(&mut self) -> Flow {
        match self.phase {
            Phase::Running => Flow::Continue,
            Phase::Draining { .. } if self.connected() => {
                tracing::warn!(
                    waiting = self.shared.depth.load(Ordering::Relaxed),
                    "grace period over; events left in the outbox go at the next start"
                );
                self.start_closing();
                Flow::Continue
            }
            Phase::Draining { .. } => self.finish(false),
            // A broker that does not close after DISCONNECT has had it all the same.
            Phase::Closing(goodbye) => self.finish(goodbye.disconnect_written),
        }
    }

    fn finish(&mut self, clean: bool) -> Flow {
        self.shared.connected.store(false, Ordering::Relaxed);
        let acked = self.shared.counters.acked.load(Ordering::Relaxed);
        let report = ShutdownReport {
            sent: acked - self.acked_at_drain,
            left_in_outbox: self.shared.depth.load(Ordering::Relaxed),
            disconnected_cleanly: clean,
        };
        tracing::info!(
            sent = report.sent,
            left_in_outbox = report.left_in_outbox,
            clean,
            "MQTT publisher stopped"
        );
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(report);
        }
        Flow::Stop
    }
}
