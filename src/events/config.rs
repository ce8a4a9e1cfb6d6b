//! `[mqtt]`: where events go and how the connection behaves.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::check_prefix;

/// Broker connection, topics and the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host name or address. Absent: start an in-process broker (rumqttd) listening
    /// on 127.0.0.1:`port` only, so that a first run needs nothing external.
    pub host: Option<String>,
    /// Broker port; with no `host`, the port the in-process broker listens on.
    pub port: u16,
    /// First level(s) of every topic: `{prefix}/available`, `{prefix}/{camera}/events`, …
    pub prefix: String,
    /// MQTT client id. The session is persistent (clean session off), which needs a non-empty
    /// id that no other client uses on the same broker.
    pub client_id: String,
    /// User name for brokers that require one.
    pub username: Option<String>,
    /// Password to go with `username`.
    pub password: Option<String>,
    /// CA certificate (PEM) that signed the broker's certificate. Setting it turns TLS on
    /// (rustls); the broker's certificate must name `host`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for brokers that authenticate clients by certificate.
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Seconds between keep-alive pings; a broker that stays silent for 1.5× this long is
    /// taken as gone, and the last will (`{prefix}/available` = `offline`) fires.
    pub keep_alive_s: u64,
    /// First wait before reconnecting, in milliseconds; it doubles per failed attempt.
    pub backoff_initial_ms: u64,
    /// Longest wait between reconnection attempts, in milliseconds. Waits are jittered ±20 %.
    pub backoff_max_ms: u64,
    /// SQLite file holding events until the broker acknowledges them (created when missing).
    /// Production installs point this at the service's state directory.
    pub outbox_path: PathBuf,
    /// Seconds between `{prefix}/stats` messages; 0 turns them off.
    pub stats_interval_s: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: None,
            port: 1883,
            prefix: "facegate".into(),
            client_id: "facegate".into(),
            username: None,
            password: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            keep_alive_s: 15,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            outbox_path: PathBuf::from("data/outbox.db"),
            stats_interval_s: 10,
        }
    }
}

/// Keep-alive bounds: MQTT carries it in 16 bits; under 5 s makes pings most of the traffic.
const KEEP_ALIVE_S: std::ops::RangeInclusive<u64> = 5..=65_535;
/// One hour: a longer wait would hide an outage that has ended.
const BACKOFF_LIMIT_MS: u64 = 3_600_000;

impl MqttConfig {
    /// Every problem with the values, each as `{key}.field: …` (`key` is usually `mqtt`).
    pub fn validate(&self, key: &str) -> Vec<String> {
        let mut p = Vec::new();
        match &self.host {
            Some(host) if host.trim().is_empty() => p.push(format!(
                "{key}.host: is empty; leave it out to start the in-process broker"
            )),
            Some(host) if host.contains("://") => p.push(format!(
                "{key}.host: {host:?} is a URL; give the host name or address only (and mqtt.port)"
            )),
            Some(host) if host.chars().any(|c| c.is_whitespace() || c == '/') => {
                p.push(format!("{key}.host: {host:?} is not a host name or address"))
            }
            _ => {}
        }
        if self.port == 0 {
            p.push(format!("{key}.port: 0 is not a port"));
        }
        if let Err(why) = check_prefix(&self.prefix) {
            p.push(format!("{key}.prefix: {why}"));
        }
        if self.client_id.is_empty() {
            p.push(format!(
                "{key}.client_id: must not be empty (the MQTT session is persistent)"
            ));
        } else if self.client_id.len() > 256 || self.client_id.chars().any(char::is_control) {
            p.push(format!(
                "{key}.client_id: {:?} must be at most 256 bytes without control characters",
                self.client_id
            ));
        }
        match (&self.username, &self.password) {
            (Some(u), _) if u.is_empty() => p.push(format!("{key}.username: is empty; leave it out instead")),
            (None, Some(_)) => p.push(format!("{key}.password: is set but {key}.username is not")),
            _ => {}
        }
        for (field, path) in [
            ("ca_file", &self.ca_file),
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
        ] {
            if let Some(path) = path
                && let Some(why) = unreadable_file(path)
            {
                p.push(format!("{key}.{field}: {}: {why}", path.display()));
            }
        }
        match (&self.client_cert, &self.client_key) {
            (Some(_), None) => p.push(format!("{key}.client_key: needed with {key}.client_cert")),
            (None, Some(_)) => p.push(format!("{key}.client_cert: needed with {key}.client_key")),
            _ => {}
        }
        if self.ca_file.is_none() && self.client_cert.is_some() {
            p.push(format!(
                "{key}.client_cert: is set but TLS is off; TLS is on when {key}.ca_file is set"
            ));
        }
        if self.host.is_none() {
            // The in-process broker listens on loopback without TLS or accounts.
            if self.ca_file.is_some() {
                p.push(format!(
                    "{key}.ca_file: the in-process broker has no TLS; set {key}.host to use TLS with an external broker"
                ));
            }
            if self.username.is_some() {
                p.push(format!(
                    "{key}.username: the in-process broker has no accounts; set {key}.host to log in to an external broker"
                ));
            }
        }
        if !KEEP_ALIVE_S.contains(&self.keep_alive_s) {
            p.push(format!(
                "{key}.keep_alive_s: {} is not within {}–{}",
                self.keep_alive_s,
                KEEP_ALIVE_S.start(),
                KEEP_ALIVE_S.end()
            ));
        }
        if self.backoff_initial_ms == 0 || self.backoff_initial_ms > BACKOFF_LIMIT_MS {
            p.push(format!(
                "{key}.backoff_initial_ms: {} is not within 1–{BACKOFF_LIMIT_MS}",
                self.backoff_initial_ms
            ));
        }
        if self.backoff_max_ms < self.backoff_initial_ms || self.backoff_max_ms > BACKOFF_LIMIT_MS {
            p.push(format!(
                "{key}.backoff_max_ms: {} is not within {key}.backoff_initial_ms ({})–{BACKOFF_LIMIT_MS}",
                self.backoff_max_ms, self.backoff_initial_ms
            ));
        }
        if self.outbox_path.as_os_str().is_empty() {
            p.push(format!("{key}.outbox_path: must name a file"));
        } else if self.outbox_path.is_dir() {
            p.push(format!(
                "{key}.outbox_path: {} is a directory",
                self.outbox_path.display()
            ));
        }
        if self.stats_interval_s > 86_400 {
            p.push(format!(
                "{key}.stats_interval_s: {} is more than a day; use 0 to turn stats off",
                self.stats_interval_s
            ));
        }
        p
    }

    /// `host:port` of the broker this configuration connects to.
    pub fn broker_address(&self) -> String {
        format!("{}:{}", self.connect_host(), self.port)
    }

    /// The host as rumqttc needs it: it appends `:port`, so an IPv6 address needs brackets.
    pub(crate) fn connect_host_for_socket(&self) -> String {
        let host = self.connect_host();
        if host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{host}]")
        } else {
            host.to_owned()
        }
    }

    /// TLS is on when a CA file is configured.
    pub fn tls(&self) -> bool {
        self.ca_file.is_some()
    }

    fn connect_host(&self) -> &str {
        self.host.as_deref().unwrap_or("127.0.0.1")
    }
}

fn unreadable_file(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => None,
        Ok(_) => Some("is not a file".into()),
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = MqttConfig::default();
        assert_eq!(c.validate("mqtt"), Vec::<String>::new());
        assert_eq!(c.host, None);
        assert_eq!(c.port, 1883);
        assert_eq!(c.prefix, "facegate");
        assert_eq!(c.client_id, "facegate");
        assert_eq!(c.keep_alive_s, 15);
        assert_eq!((c.backoff_initial_ms, c.backoff_max_ms), (500, 30_000));
        assert_eq!(c.outbox_path, PathBuf::from("data/outbox.db"));
        assert_eq!(c.stats_interval_s, 10);
        assert_eq!(c.broker_address(), "127.0.0.1:1883");
        assert_eq!(c.connect_host_for_socket(), "127.0.0.1");
        let v6 = MqttConfig {
            host: Some("::1".into()),
            ..Default::default()
        };
        assert_eq!(v6.connect_host_for_socket(), "[::1]");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let c = MqttConfig {
            host: None,
            port: 0,
            prefix: "fg/#".into(),
            client_id: String::new(),
            username: Some("u".into()),
            password: None,
            ca_file: Some("/nonexistent/ca.pem".into()),
            client_cert: None,
            client_key: Some("/nonexistent/key.pem".into()),
            keep_alive_s: 0,
            backoff_initial_ms: 0,
            backoff_max_ms: 10_000_000,
            outbox_path: PathBuf::new(),
            stats_interval_s: 100_000,
        };
        let problems = c.validate("mqtt");
        let keys: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "mqtt.port",
                "mqtt.prefix",
                "mqtt.client_id",
                "mqtt.ca_file",
                "mqtt.client_key",
                "mqtt.client_cert",
                "mqtt.ca_file",
                "mqtt.username",
                "mqtt.keep_alive_s",
                "mqtt.backoff_initial_ms",
                "mqtt.backoff_max_ms",
                "mqtt.outbox_path",
                "mqtt.stats_interval_s",
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn host_must_be_a_host() {
        for (host, ok) in [
            ("broker.lan", true),
            ("10.0.0.2", true),
            ("::1", true),
            ("", false),
            ("mqtt://broker", false),
            ("a b", false),
        ] {
            let c = MqttConfig {
                host: Some(host.into()),
                ..Default::default()
            };
            assert_eq!(c.validate("mqtt").is_empty(), ok, "{host:?}: {:?}", c.validate("mqtt"));
        }
    }

    #[test]
    fn password_needs_a_user_and_certificates_need_tls() {
        let c = MqttConfig {
            host: Some("b".into()),
            password: Some("p".into()),
            client_cert: Some("Cargo.toml".into()),
            client_key: Some("Cargo.toml".into()),
            ..Default::default()
        };
        let p = c.validate("mqtt");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("mqtt.password:"));
        assert!(p[1].starts_with("mqtt.client_cert:") && p[1].contains("TLS is off"));
    }

    #[test]
    fn unknown_keys_are_rejected_and_missing_ones_default() {
        let c: MqttConfig = serde_json::from_value(serde_json::json!({"host": "b", "port": 8883})).unwrap();
        assert_eq!(c.host.as_deref(), Some("b"));
        assert_eq!(c.prefix, "facegate");
        let err = serde_json::from_value::<MqttConfig>(serde_json::json!({"hots": "b"})).unwrap_err();
        assert!(err.to_string().contains("hots"), "{err}");
    }
}
