//! The effective configuration as `facegate config show` prints it: every key with the
//! value in force, secrets masked.

use super::Config;

const MASK: &str = "********";

/// Whether a key holds a secret itself. Paths to secrets (`commands.key_file`,
/// `mqtt.client_key`) are shown: they say where the secret is, not what it is.
pub fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if n.ends_with("_file") || n.ends_with("_path") || n.ends_with("_dir") {
        return false;
    }
    n == "key"
        || [
            "password",
            "passwd",
            "secret",
            "token",
            "api_key",
            "apikey",
            "private_key",
        ]
        .iter()
        .any(|s| n.contains(s))
}

impl Config {
    /// The configuration as JSON, secrets masked (unset keys are `null`).
    pub fn to_masked_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        mask_json(&mut value);
        value
    }

    /// The configuration as TOML in the order of `config/facegate.toml`, secrets masked;
    /// unset keys are left out, as TOML has no null.
    pub fn to_masked_toml(&self) -> Result<String, String> {
        let mut value = toml::Value::try_from(self).map_err(|e| e.to_string())?;
        mask_toml(&mut value);
        toml::to_string(&value).map_err(|e| e.to_string())
    }
}

/// The shortest decimal of a value that is exactly an `f32` (every float of the
/// configuration is): serialised as f64 it would print as 0.6000000238418579.
fn tidy_float(f: f64) -> f64 {
    let narrow = f as f32;
    if f64::from(narrow) == f {
        narrow.to_string().parse().unwrap_or(f)
    } else {
        f
    }
}

fn mask_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(tidy) = n.as_f64().map(tidy_float).and_then(serde_json::Number::from_f64) {
                *n = tidy;
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret(k) && !v.is_null() {
                    *v = serde_json::Value::from(MASK);
                } else {
                    mask_json(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_json),
        _ => {}
    }
}

fn mask_toml(value: &mut toml::Value) {
    match value {
        toml::Value::Float(f) => *f = tidy_float(*f),
        toml::Value::Table(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret(k) {
                    *v = toml::Value::from(MASK);
                } else {
                    mask_toml(v);
                }
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(mask_toml),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_paths_to_keys_shown() {
        let mut c = Config::default();
        c.mqtt.host = Some("broker".into());
        c.mqtt.username = Some("door".into());
        c.mqtt.password = Some("hunter2".into());
        c.mqtt.client_key = Some("/etc/facegate/client.key".into());
        c.commands.key_file = Some("/etc/facegate/command.key".into());
        let json = c.to_masked_json();
        assert_eq!(json["mqtt"]["password"], MASK);
        assert_eq!(json["mqtt"]["username"], "door");
        assert_eq!(json["mqtt"]["client_key"], "/etc/facegate/client.key");
        assert_eq!(json["commands"]["key_file"], "/etc/facegate/command.key");
        let text = c.to_masked_toml().unwrap();
        assert!(!text.contains("hunter2") && text.contains(MASK), "{text}");
        assert!(text.contains("key_file = \"/etc/facegate/command.key\""), "{text}");
        // In the documented order, and it reads back as the same configuration.
        assert!(text.find("[models]") < text.find("[inference]"), "{text}");
        assert!(text.contains("score_threshold = 0.6\n"), "{text}");
        assert_eq!(json["recognition"]["threshold"], serde_json::json!(0.363));
        let back: Config = toml::from_str(&text.replace(MASK, "hunter2")).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&c).unwrap());
    }
}
