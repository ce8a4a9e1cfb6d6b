//! Checks the untyped tree against the configuration's shape one key at a time, so that
//! every problem is found, not only serde's first: unknown keys (with the closest real
//! key), values of the wrong type (serde's own message, which lists an enum's variants:
//! each value is put alone into the serialised defaults and deserialised), and cameras
//! item by item with their required `name` and `url`. Values that pass go into a clean
//! tree, which then deserialises whole for the range checks.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::Problem;
use super::source::{Tree, display_key};
use crate::video::CameraConfig;

/// Placeholders for a camera's required keys when they are missing or wrong, so that the
/// other cameras keep their indices; problems on these keys are reported once, as missing.
const PLACEHOLDER_URL: &str = "file:///dev/null";

pub(crate) struct Checker<'a> {
    tree: &'a Tree,
    template: Value,
    camera_template: Value,
    pub problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub fn new(tree: &'a Tree) -> Checker<'a> {
        Checker {
            tree,
            template: serde_json::to_value(super::Config::default()).unwrap_or(Value::Null),
            camera_template: serde_json::to_value(CameraConfig::new("door", "rtsp://camera/1")).unwrap_or(Value::Null),
            problems: Vec::new(),
        }
    }

    /// The keys and values that passed, as a tree that deserialises into `Config`.
    pub fn run(&mut self) -> Map<String, Value> {
        let mut clean = Map::new();
        let defaults = self.template.as_object().cloned().unwrap_or_default();
        let tree = self.tree;
        self.walk(&tree.root, &defaults, &mut Vec::new(), &mut clean);
        clean
    }

    fn problem(&mut self, key: &str, message: String) {
        self.problems.push(Problem::new(key, message));
    }

    fn walk(
        &mut self,
        user: &Map<String, Value>,
        defaults: &Map<String, Value>,
        path: &mut Vec<String>,
        clean: &mut Map<String, Value>,
    ) {
        for (name, value) in user {
            path.push(name.clone());
            let key = display_key(path);
            match defaults.get(name) {
                None => self.unknown(&key, name, defaults),
                Some(Value::Object(sub)) if value.is_object() => {
                    let mut inner = Map::new();
                    if let Value::Object(given) = value {
                        self.walk(given, sub, path, &mut inner);
                    }
                    clean.insert(name.clone(), Value::Object(inner));
                }
                Some(_) if path.len() == 1 && name == "cameras" => {
                    let cameras = self.cameras(value);
                    clean.insert(name.clone(), cameras);
                }
                Some(_) => {
                    let template = self.template.clone();
                    if let Some(ok) = self.leaf::<super::Config>(&template, path, &key, value) {
                        clean.insert(name.clone(), ok);
                    }
                }
            }
            path.pop();
        }
    }

    /// The value if its key accepts it (an environment value also as the text it was),
    /// else `None` and a problem.
    fn leaf<T: DeserializeOwned>(
        &mut self,
        template: &Value,
        path: &[String],
        key: &str,
        value: &Value,
    ) -> Option<Value> {
        let error = match accepts::<T>(template, path, value) {
            Ok(()) => return Some(value.clone()),
            Err(e) => e,
        };
        if let Some(text) = self.tree.env_text.get(key) {
            let text = Value::String(text.clone());
            if accepts::<T>(template, path, &text).is_ok() {
                return Some(text);
            }
        }
        let message = match type_hint(key, value, &error) {
            Some(hint) => format!("{error}; {hint}"),
            None => error,
        };
        self.problem(key, message);
        None
    }

    fn unknown(&mut self, key: &str, name: &str, siblings: &Map<String, Value>) {
        let mut message = "unknown key".to_string();
        if let Some(near) = closest(name, siblings.keys().map(String::as_str)) {
            message.push_str(&format!("; did you mean `{near}`?"));
        } else {
            let homes = self.homes_of(name);
            if !homes.is_empty() {
                message.push_str(&format!("; `{name}` is a key of {}", homes.join(", ")));
            }
        }
        self.problem(key, message);
    }

    /// The tables (`[gallery]`, `[[cameras]]`) that have a key called `name`.
    fn homes_of(&self, name: &str) -> Vec<String> {
        fn visit(map: &Map<String, Value>, path: &str, name: &str, out: &mut Vec<String>) {
            for (k, v) in map {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if let Value::Object(sub) = v {
                    if sub.contains_key(name) {
                        out.push(format!("[{here}]"));
                    }
                    visit(sub, &here, name, out);
                }
            }
        }
        let mut out = Vec::new();
        if let Value::Object(root) = &self.template {
            visit(root, "", name, &mut out);
        }
        if self.camera_template.get(name).is_some() {
            out.push("[[cameras]]".into());
        }
        out
    }

    /// Each camera on its own: unknown keys, types, and the required `name` and `url`.
    fn cameras(&mut self, value: &Value) -> Value {
        let Value::Array(items) = value else {
            self.problem(
                "cameras",
                "must be a list of tables: write [[cameras]] (double brackets) for each camera".into(),
            );
            return Value::Array(Vec::new());
        };
        let template = self.camera_template.clone();
        let known = template.as_object().cloned().unwrap_or_default();
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("cameras[{i}]");
            let empty = Map::new();
            let fields = match item {
                Value::Object(fields) => fields,
                _ => {
                    self.problem(&prefix, "must be a table with at least name and url".into());
                    &empty
                }
            };
            let mut clean = Map::new();
            for (name, v) in fields {
                let key = format!("{prefix}.{name}");
                if !known.contains_key(name) {
                    self.unknown(&key, name, &known);
                } else if let Some(ok) = self.leaf::<CameraConfig>(&template, std::slice::from_ref(name), &key, v) {
                    clean.insert(name.clone(), ok);
                }
            }
            for (required, example) in [("name", "\"door\""), ("url", "\"rtsp://camera.example/stream1\"")] {
                if item.is_object() && !fields.contains_key(required) {
                    self.problem(
                        &format!("{prefix}.{required}"),
                        format!("missing; every camera needs one, e.g. {required} = {example}"),
                    );
                }
            }
            // Placeholders keep the camera (and the indices after it); a placeholder name
            // no real camera can have keeps it out of the uniqueness check.
            clean
                .entry("name")
                .or_insert_with(|| Value::String(format!("\u{0}{i}")));
            clean
                .entry("url")
                .or_insert_with(|| Value::String(PLACEHOLDER_URL.into()));
            out.push(Value::Object(clean));
        }
        Value::Array(out)
    }
}

/// Advice for a problem that the range checks found, from the value given.
pub(crate) fn value_hint(key: &str, cfg: &super::Config) -> Option<String> {
    match key {
        "mqtt.host" => broker_url_hint(cfg.mqtt.host.as_deref()?),
        _ => None,
    }
}

/// `mqtt://broker.lan:1883` → `write host = "broker.lan" and port = 1883`.
fn broker_url_hint(host: &str) -> Option<String> {
    let (scheme, rest) = host.trim().split_once("://")?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    let (name, port) = match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, Some(p)),
        _ => (authority, None),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let mut hint = format!("write host = \"{name}\"");
    if let Some(port) = port {
        hint.push_str(&format!(" and port = {port}"));
    }
    if matches!(scheme.to_ascii_lowercase().as_str(), "mqtts" | "ssl" | "tls") {
        hint.push_str(" (TLS is turned on by mqtt.ca_file)");
    }
    Some(hint)
}

/// Whether `T` deserialises from `template` with `value` put at `path`.
fn accepts<T: DeserializeOwned>(template: &Value, path: &[String], value: &Value) -> Result<(), String> {
    let mut doc = template.clone();
    let mut slot = &mut doc;
    for part in path {
        slot = slot
            .get_mut(part.as_str())
            .ok_or_else(|| format!("`{part}` is not a key"))?;
    }
    *slot = value.clone();
    serde_json::from_value::<T>(doc).map(drop).map_err(|e| e.to_string())
}

/// Advice for the common ways a value of the right meaning is written wrong.
fn type_hint(key: &str, value: &Value, error: &str) -> Option<String> {
    let field = key.rsplit('.').next().unwrap_or(key);
    if key == "admin.listen" {
        return Some("use an IP address and port such as 127.0.0.1:9464 (host names are not looked up)".into());
    }
    let text = value.as_str()?;
    if key == "inference.precision" && ["fp16", "int8"].contains(&text.trim().to_lowercase().as_str()) {
        return Some(
            "fp16 and int8 are not offered: OpenVINO's CPU plugin ran fp16 slower than fp32 where measured, and the int8 SFace does not load in it (README, Devices)"
                .into(),
        );
    }
    if let Some(near) = closest(text, enum_variants(error).iter().map(String::as_str)) {
        return Some(format!("did you mean `{near}`?"));
    }
    let wants_number = ["expected u", "expected i", "expected f"]
        .iter()
        .any(|p| error.contains(p));
    if error.contains("expected a boolean") && matches!(text.trim(), "true" | "false") {
        return Some(format!("write {} without quotes", text.trim()));
    }
    if wants_number && text.trim().parse::<f64>().is_ok() {
        return Some(format!("write {} without quotes", text.trim()));
    }
    if wants_number && (field.ends_with("_ms") || field.ends_with("_s")) {
        let unit = if field.ends_with("_ms") {
            "milliseconds"
        } else {
            "seconds"
        };
        return Some(format!("give a plain number of {unit}, without a unit"));
    }
    None
}

/// The variants serde lists in "unknown variant `x`, expected one of `a`, `b`".
fn enum_variants(error: &str) -> Vec<String> {
    let Some(list) = error.split_once("expected ").map(|(_, rest)| rest) else {
        return Vec::new();
    };
    if !error.starts_with("unknown variant") {
        return Vec::new();
    }
    list.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The candidate closest to `name` when it is close enough to be a slip of the keyboard:
/// at most one edit per three characters (a swap of two letters is one edit).
pub(crate) fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let name_lc = name.to_lowercase();
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .map(|c| (edit_distance(&name_lc, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// neighbours.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_keys_are_suggested_and_far_ones_not() {
        let keys = ["threshold", "max_batch_frames"];
        assert_eq!(closest("threshhold", keys.iter().copied()), Some("threshold"));
        assert_eq!(closest("treshold", keys.iter().copied()), Some("threshold"));
        assert_eq!(closest("Threshold", keys.iter().copied()), Some("threshold"));
        assert_eq!(closest("margin", keys.iter().copied()), None);
        assert_eq!(edit_distance("modles", "models"), 1);
    }

    #[test]
    fn enum_variants_come_from_serdes_message() {
        let e = "unknown variant `cudaa`, expected one of `auto`, `cpu`, `cuda`";
        assert_eq!(enum_variants(e), ["auto", "cpu", "cuda"]);
        assert_eq!(
            type_hint("inference.device", &Value::from("cudaa"), e).as_deref(),
            Some("did you mean `cuda`?")
        );
        assert!(enum_variants("invalid type: string \"x\", expected u16").is_empty());
        let e = "unknown variant `fp16`, expected `fp32` or `bf16`";
        assert_eq!(enum_variants(e), ["fp32", "bf16"]);
        assert!(
            type_hint("inference.precision", &Value::from("fp16"), e)
                .unwrap()
                .starts_with("fp16 and int8 are not offered")
        );
    }

    #[test]
    fn quoted_numbers_and_units_get_advice() {
        let hint = |key: &str, v: &str, e: &str| type_hint(key, &Value::from(v), e);
        assert_eq!(
            hint("mqtt.port", "1883", "invalid type: string \"1883\", expected u16").as_deref(),
            Some("write 1883 without quotes")
        );
        assert_eq!(
            hint("mqtt.keep_alive_s", "15s", "invalid type: string \"15s\", expected u64").as_deref(),
            Some("give a plain number of seconds, without a unit")
        );
        assert!(hint("admin.listen", "door.lan:9464", "invalid socket address syntax").is_some());
    }

    #[test]
    fn a_broker_url_is_taken_apart() {
        assert_eq!(
            broker_url_hint("mqtt://broker.lan:1884").as_deref(),
            Some("write host = \"broker.lan\" and port = 1884")
        );
        assert_eq!(
            broker_url_hint("mqtts://u:p@[::1]/x").as_deref(),
            Some("write host = \"::1\" (TLS is turned on by mqtt.ca_file)")
        );
        assert_eq!(broker_url_hint("broker.lan"), None);
    }
}
