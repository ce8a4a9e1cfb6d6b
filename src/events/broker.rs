//! The in-process broker (rumqttd) used when no broker host is configured.
//!
//! It listens on 127.0.0.1 only, without TLS or accounts: it is there so that a first run
//! and the demo need nothing external. rumqttd has no way to stop; its threads end with the
//! process.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::Error;

/// Largest message the broker accepts: enrollment photos travel as base64 inside JSON.
pub(crate) const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// How long the broker may take to accept connections after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

fn broker_error(addr: SocketAddr, reason: String) -> Error {
    Error::Input {
        path: PathBuf::from(format!("mqtt://{addr}")),
        reason,
    }
}

/// Starts rumqttd on 127.0.0.1:`port` and returns once it listens.
pub(crate) fn start_embedded(port: u16) -> Result<SocketAddr, Error> {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    // rumqttd only logs a failed bind from its own thread; find out here, with a clear message.
    match TcpListener::bind(addr) {
        Ok(probe) => drop(probe),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(broker_error(
                addr,
                format!(
                    "cannot start the in-process broker: port {port} is already in use \
                     (another broker or facegate?); set mqtt.host to use that broker or choose another mqtt.port"
                ),
            ));
        }
        Err(e) => return Err(broker_error(addr, format!("cannot start the in-process broker: {e}"))),
    }

    // Our probe below may, for the microseconds it holds the port, be in rumqttd's way: then
    // rumqttd's thread ends at once and we start it again.
    for _ in 0..3 {
        let config = embedded_config(addr);
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(config);
                // Returns only when every listener has stopped (a failed bind included).
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "in-process MQTT broker stopped");
                }
            })
            .map_err(|e| broker_error(addr, format!("cannot start the in-process broker thread: {e}")))?;
        let started = Instant::now();
        while !thread.is_finished() {
            if listening(addr)? {
                tracing::info!(%addr, "in-process MQTT broker listening");
                return Ok(addr);
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(broker_error(
                    addr,
                    format!("the in-process broker did not listen within {READY_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Err(broker_error(
        addr,
        "the in-process broker stopped at start (is the port taken?)".into(),
    ))
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
        Err(e) => Err(broker_error(
            addr,
            format!("cannot check the in-process broker's port: {e}"),
        )),
    }
}

fn embedded_config(addr: SocketAddr) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "facegate-embedded".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let router = rumqttd::RouterConfig {
        max_connections: 1000,
        max_outgoing_packet_count: 200,
        // Per-filter commit log: a few segments, each able to hold the largest message.
        max_segment_size: MAX_PAYLOAD * 2,
        max_segment_count: 4,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    rumqttd::Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    }
}
