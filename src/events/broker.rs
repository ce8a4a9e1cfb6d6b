//! The in-process broker (rumqttd) used when no broker host is configured.
//!
//! It listens on 127.0.0.1 only, without TLS or accounts: it is there so that a first run
//! and the demo need nothing external. rumqttd has no way to stop; its threads end with the
//! process.
//!
//! rumqttd drops a message that matches no subscription, and its API says nothing about
//! subscriptions. So the listener is built here from rumqttd's parts (router, server) with
//! a codec that wraps rumqttd's own MQTT 3.1.1 codec: it sees every SUBSCRIBE a client sends
//! and the SUBACK the broker answers, and so learns when someone has subscribed to the
//! events ([`Listeners`]). It counts at the SUBACK because the router writes it after it has
//! registered the subscription: anything published from then on reaches the subscriber.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttd::protocol::v4::V4;
use rumqttd::protocol::{Packet, Protocol, SubscribeReasonCode};
use tokio_util::bytes::BytesMut;

use crate::error::Error;

/// Largest message the broker accepts: enrollment photos travel as base64 inside JSON.
pub(crate) const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// How long the broker may take to accept connections after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether anyone has subscribed to every camera's events on the in-process broker.
pub(crate) struct Listeners {
    /// The prefix's levels: a filter must match `{prefix}/{any camera}/events`.
    prefix: Vec<String>,
    heard: AtomicBool,
    arrived: tokio::sync::Notify,
}

impl Listeners {
    pub fn new(prefix: &str) -> Arc<Listeners> {
        Arc::new(Listeners {
            prefix: prefix.split('/').map(str::to_owned).collect(),
            heard: AtomicBool::new(false),
            arrived: tokio::sync::Notify::new(),
        })
    }

    /// A subscription covering every camera's events has been granted since the broker
    /// started. It stays true: the hold it ends is the one at start.
    pub fn heard(&self) -> bool {
        self.heard.load(Ordering::Relaxed)
    }

    /// Returns once [`Listeners::heard`] is true.
    pub async fn arrival(&self) {
        while !self.heard() {
            // A notification between the check and the wait is kept as a permit.
            self.arrived.notified().await;
        }
    }

    pub(crate) fn subscribed(&self) {
        if !self.heard.swap(true, Ordering::Relaxed) {
            self.arrived.notify_one();
        }
    }

    /// Whether `filter` matches `{prefix}/{camera}/events` whatever the camera: `+` or `#`
    /// where the camera goes. A filter naming one camera does not count: it would release
    /// the other cameras' events to nobody. A shared subscription counts like its filter.
    pub fn covers_events(&self, filter: &str) -> bool {
        let filter = shared_filter(filter).unwrap_or(filter);
        let wanted = self
            .prefix
            .iter()
            .map(|l| Some(l.as_str()))
            .chain([None, Some("events")]);
        let mut levels = filter.split('/');
        for want in wanted {
            match levels.next() {
                Some("#") => return true,
                Some("+") => {}
                Some(level) if want == Some(level) => {}
                _ => return false,
            }
        }
        // `a/b/#` also matches `a/b`.
        matches!(levels.next(), None | Some("#"))
    }
}

/// The filter of a shared subscription, `$share/{group}/{filter}`.
fn shared_filter(filter: &str) -> Option<&str> {
    let rest = filter.strip_prefix("$share/")?;
    Some(rest.split_once('/')?.1)
}

/// rumqttd's MQTT 3.1.1 codec, watching the subscriptions of one connection. The server
/// clones it for every connection it accepts: a clone starts with nothing pending.
pub(crate) struct WatchingCodec {
    codec: V4,
    listeners: Arc<Listeners>,
    /// SUBSCRIBE packet id → positions of the filters that cover the events.
    pending: Mutex<HashMap<u16, Vec<usize>>>,
}

impl WatchingCodec {
    pub fn new(listeners: Arc<Listeners>) -> WatchingCodec {
        WatchingCodec {
            codec: V4,
            listeners,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Vec<usize>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clone for WatchingCodec {
    fn clone(&self) -> Self {
        WatchingCodec::new(self.listeners.clone())
    }
}

impl Protocol for WatchingCodec {
    fn read_mut(&mut self, stream: &mut BytesMut, max_size: usize) -> Result<Packet, rumqttd::protocol::Error> {
        let packet = self.codec.read_mut(stream, max_size)?;
        if let Packet::Subscribe(subscribe, _) = &packet
            && !self.listeners.heard()
        {
            let covering: Vec<usize> = (subscribe.filters.iter().enumerate())
                .filter(|(_, f)| self.listeners.covers_events(&f.path))
                .map(|(i, _)| i)
                .collect();
            if !covering.is_empty() {
                self.pending().insert(subscribe.pkid, covering);
            }
        }
        Ok(packet)
    }

    fn write(&self, packet: Packet, write: &mut BytesMut) -> Result<usize, rumqttd::protocol::Error> {
        if let Packet::SubAck(ack, _) = &packet {
            let covering = self.pending().remove(&ack.pkid).unwrap_or_default();
            let granted = covering.iter().any(|&i| ack.return_codes.get(i).is_some_and(granted));
            if granted {
                self.listeners.subscribed();
            }
        }
        self.codec.write(packet, write)
    }
}

fn granted(code: &SubscribeReasonCode) -> bool {
    matches!(
        code,
        SubscribeReasonCode::QoS0
            | SubscribeReasonCode::QoS1
            | SubscribeReasonCode::QoS2
            | SubscribeReasonCode::Success(_)
    )
}

fn port_in_use(addr: SocketAddr) -> Error {
    Error::Environment(format!(
        "cannot start the in-process MQTT broker on {addr}: the port is already in use \
         (another broker or facegate?); set mqtt.host to use that broker or choose another mqtt.port"
    ))
}

fn broker_error(addr: SocketAddr, reason: String) -> Error {
    Error::Environment(format!("in-process MQTT broker on {addr}: {reason}"))
}

/// Starts rumqttd on 127.0.0.1:`port` and returns once it listens. `listeners` learns who
/// subscribes to the events.
pub(crate) fn start_embedded(port: u16, listeners: Arc<Listeners>) -> Result<SocketAddr, Error> {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    // rumqttd only logs a failed bind from its own thread; find out here, with a clear message.
    match TcpListener::bind(addr) {
        Ok(probe) => drop(probe),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(port_in_use(addr)),
        Err(e) => return Err(broker_error(addr, format!("cannot listen: {e}"))),
    }

    // Our probe below may, for the microseconds it holds the port, be in rumqttd's way: then
    // rumqttd's thread ends at once and we start it again.
    for _ in 0..3 {
        let codec = WatchingCodec::new(listeners.clone());
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || serve(addr, codec))
            .map_err(|e| broker_error(addr, format!("cannot start its thread: {e}")))?;
        let started = Instant::now();
        while !thread.is_finished() {
            if listening(addr)? {
                tracing::info!(%addr, "in-process MQTT broker listening");
                return Ok(addr);
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(broker_error(
                    addr,
                    format!("did not listen within {} s", READY_TIMEOUT.as_secs()),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Err(broker_error(addr, "stopped at start (is the port taken?)".into()))
}

/// What `rumqttd::Broker::start` does for one MQTT 3.1.1 listener, with our codec.
/// Returns only when the listener has stopped (a failed bind included).
fn serve(addr: SocketAddr, codec: WatchingCodec) {
    let router = rumqttd::Router::new(0, router_config()).spawn();
    let mut server = rumqttd::Server::new(server_settings(addr), router, codec);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "in-process MQTT broker has no runtime");
            return;
        }
    };
    if let Err(e) = runtime.block_on(server.start(rumqttd::LinkType::Remote)) {
        tracing::error!(error = %e, "in-process MQTT broker stopped");
    }
}

/// Whether something listens on `addr`, found out by trying to bind it: connecting would
/// make rumqttd log an error for the connection that never says CONNECT, or disconnects.
fn listening(addr: SocketAddr) -> Result<bool, Error> {
    match TcpListener::bind(addr) {
        Ok(probe) => {
            drop(probe);
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(true),
        Err(e) => Err(broker_error(addr, format!("cannot check its port: {e}"))),
    }
}

fn server_settings(addr: SocketAddr) -> rumqttd::ServerSettings {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    rumqttd::ServerSettings {
        name: "facegate-embedded".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    }
}

fn router_config() -> rumqttd::RouterConfig {
    rumqttd::RouterConfig {
        max_connections: 1000,
        max_outgoing_packet_count: 200,
        // Per-filter commit log: a few segments, each able to hold the largest message.
        max_segment_size: MAX_PAYLOAD * 2,
        max_segment_count: 4,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_that_cover_every_cameras_events() {
        let l = Listeners::new("site1/fg");
        for (filter, covers) in [
            ("site1/fg/+/events", true),
            ("site1/fg/#", true),
            ("site1/#", true),
            ("#", true),
            ("+/+/+/events", true),
            ("+/fg/+/#", true),
            ("site1/fg/+/events/#", true),
            ("$share/g/site1/fg/+/events", true),
            ("site1/fg/door/events", false),
            ("site1/fg/+/status", false),
            ("site1/fg/+", false),
            ("site1/fg/+/events/x", false),
            ("site1/+/events", false),
            ("other/fg/+/events", false),
            ("$share/g", false),
        ] {
            assert_eq!(l.covers_events(filter), covers, "{filter}");
        }
    }

    #[test]
    fn a_granted_subscription_is_heard_once_and_wakes_the_waiter() {
        let l = Listeners::new("fg");
        assert!(!l.heard());
        l.subscribed();
        l.subscribed();
        assert!(l.heard());
        // The permit left by the first notification, or the flag, ends the wait at once.
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(l.arrival());
    }
}
