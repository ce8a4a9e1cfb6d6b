//! `[mqtt]`: where events go and how the connection behaves.
//! `[commands]`: whether remote enrollment and removal are accepted, and how they are signed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::check_prefix;
use super::signing::CommandKey;
use crate::error::Error;

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
    /// In-process broker only: at start, events (the outbox's backlog and new ones) wait in
    /// the outbox until someone subscribes to every camera's events (`{prefix}/+/events` or
    /// a wildcard covering it), for at most this many seconds; then they go out whether
    /// anyone listens or not. 0: no wait. rumqttd drops what nobody subscribed to, and
    /// nobody can have subscribed to a broker that has just started.
    pub hold_for_subscriber_s: u64,
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
            hold_for_subscriber_s: 30,
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
        let mut p = self.validate_connection(key);
        p.extend(self.validate_credentials(key));
        p.extend(self.validate_timing_and_files(key));
        p
    }

    /// Host, port, topic prefix and client id.
    fn validate_connection(&self, key: &str) -> Vec<String> {
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
        p
    }

    /// Accounts and TLS files, and what the in-process broker cannot do.
    fn validate_credentials(&self, key: &str) -> Vec<String> {
        let mut p = Vec::new();
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
        p
    }

    /// Keep-alive, backoff, the outbox file and the periodic and waiting times.
    fn validate_timing_and_files(&self, key: &str) -> Vec<String> {
        let mut p = Vec::new();
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
        if self.hold_for_subscriber_s > 86_400 {
            p.push(format!(
                "{key}.hold_for_subscriber_s: {} is more than a day; use 0 not to wait",
                self.hold_for_subscriber_s
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

/// Remote enrollment and removal on `{prefix}/cmd/enroll` and `{prefix}/cmd/remove`
/// (docs/remote-commands.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsConfig {
    /// Accept commands. Off (the default): every command message is answered on
    /// `{prefix}/cmd/result` with a refusal that says how to turn them on. On: only commands
    /// signed with the key of `key_file` are accepted.
    pub enabled: bool,
    /// File holding the shared key (HMAC-SHA256), e.g. made with
    /// `openssl rand -hex 32 > command.key` and `chmod 600`: its text, surrounding
    /// whitespace trimmed, at least 32 bytes. Required when `enabled`. Read once at start.
    /// A systemd credential works: `LoadCredential=command-key:/etc/facegate/command.key`
    /// in the unit and `key_file = "$CREDENTIALS_DIRECTORY/command-key"` here (a leading
    /// `$CREDENTIALS_DIRECTORY` is taken from the environment).
    pub key_file: Option<PathBuf>,
    /// Seconds a signed command stays valid: accepted clock difference between the signer
    /// and the daemon, in both directions. A message is refused as a replay within it.
    pub max_age_s: u64,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        CommandsConfig {
            enabled: false,
            key_file: None,
            max_age_s: 30,
        }
    }
}

/// An hour: a captured command stays usable for this long after it was signed.
const MAX_AGE_LIMIT_S: u64 = 3600;
const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

impl CommandsConfig {
    /// Every problem with the values, each as `{key}.field: …` (`key` is usually `commands`).
    /// The key file itself is read at start ([`CommandsConfig::load_key`]): a systemd
    /// credential only exists inside the service.
    pub fn validate(&self, key: &str) -> Vec<String> {
        let mut p = Vec::new();
        match &self.key_file {
            None if self.enabled => p.push(format!(
                "{key}.key_file: required when {key}.enabled = true (make a key with `openssl rand -hex 32 > command.key`)"
            )),
            Some(path) if path.as_os_str().is_empty() => p.push(format!("{key}.key_file: must name a file")),
            _ => {}
        }
        if !(1..=MAX_AGE_LIMIT_S).contains(&self.max_age_s) {
            p.push(format!(
                "{key}.max_age_s: {} is not within 1–{MAX_AGE_LIMIT_S}",
                self.max_age_s
            ));
        }
        p
    }

    /// The key when commands are enabled, `None` when they are not. Errors name `{key}.key_file`.
    pub fn load_key(&self, key: &str) -> Result<Option<CommandKey>, Error> {
        if !self.enabled {
            return Ok(None);
        }
        let fail = |what: String| Error::Config(vec![format!("{key}.key_file: {what}")]);
        let Some(file) = &self.key_file else {
            return Err(fail(format!("required when {key}.enabled = true")));
        };
        let path = resolve_credentials(file, std::env::var_os(CREDENTIALS_DIRECTORY)).map_err(fail)?;
        let loaded = CommandKey::from_file(&path).map_err(|why| fail(format!("{}: {why}", path.display())))?;
        Ok(Some(loaded))
    }
}

/// Replaces a leading `$CREDENTIALS_DIRECTORY` (or `${CREDENTIALS_DIRECTORY}`) with `dir`.
fn resolve_credentials(file: &Path, dir: Option<std::ffi::OsString>) -> Result<PathBuf, String> {
    let mut parts = file.components();
    let first = parts.next().map(|c| c.as_os_str().to_string_lossy().into_owned());
    if !matches!(
        first.as_deref(),
        Some("$CREDENTIALS_DIRECTORY" | "${CREDENTIALS_DIRECTORY}")
    ) {
        return Ok(file.to_path_buf());
    }
    match dir {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir).join(parts.as_path())),
        _ => Err(format!(
            "{}: ${CREDENTIALS_DIRECTORY} is not set (systemd sets it for a unit with LoadCredential=)",
            file.display()
        )),
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
        assert_eq!(c.hold_for_subscriber_s, 30);
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
            hold_for_subscriber_s: 86_401,
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
                "mqtt.hold_for_subscriber_s",
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

    #[test]
    fn commands_are_off_by_default_and_need_a_key_when_on() {
        let c = CommandsConfig::default();
        assert_eq!((c.enabled, c.key_file.as_ref(), c.max_age_s), (false, None, 30));
        assert!(c.validate("commands").is_empty());
        assert!(c.load_key("commands").unwrap().is_none());
        let on = CommandsConfig {
            enabled: true,
            max_age_s: 0,
            ..Default::default()
        };
        let problems = on.validate("commands");
        let keys: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(keys, ["commands.key_file", "commands.max_age_s"], "{problems:?}");
        assert!(problems[0].contains("commands.enabled = true"));
        let empty = CommandsConfig {
            key_file: Some(PathBuf::new()),
            max_age_s: 3601,
            ..Default::default()
        };
        assert_eq!(empty.validate("commands").len(), 2);
        let err = serde_json::from_value::<CommandsConfig>(serde_json::json!({"max_age": 5})).unwrap_err();
        assert!(err.to_string().contains("max_age"), "{err}");
    }

    #[test]
    fn the_key_is_read_at_start_and_problems_name_the_key_file() {
        let dir = std::env::temp_dir().join(format!("facegate-cmdkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short.key");
        std::fs::write(&short, "abc\n").unwrap();
        let on = |file: PathBuf| CommandsConfig {
            enabled: true,
            key_file: Some(file),
            ..Default::default()
        };
        let err = on(short.clone()).load_key("commands").unwrap_err().to_string();
        assert!(
            err.contains("commands.key_file") && err.contains("short.key") && err.contains("3 bytes"),
            "{err}"
        );
        let err = on(dir.join("none.key")).load_key("commands").unwrap_err().to_string();
        assert!(err.contains("commands.key_file") && err.contains("none.key"), "{err}");
        let good = dir.join("good.key");
        std::fs::write(&good, "f".repeat(64)).unwrap();
        assert!(on(good).load_key("commands").unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_systemd_credential_is_found_in_its_directory() {
        let creds = Some(std::ffi::OsString::from("/run/credentials/facegate.service"));
        for spelling in [
            "$CREDENTIALS_DIRECTORY/command-key",
            "${CREDENTIALS_DIRECTORY}/command-key",
        ] {
            assert_eq!(
                resolve_credentials(Path::new(spelling), creds.clone()).unwrap(),
                PathBuf::from("/run/credentials/facegate.service/command-key")
            );
            let err = resolve_credentials(Path::new(spelling), None).unwrap_err();
            assert!(err.contains("LoadCredential="), "{err}");
        }
        assert_eq!(
            resolve_credentials(Path::new("keys/command.key"), None).unwrap(),
            PathBuf::from("keys/command.key")
        );
    }
}
