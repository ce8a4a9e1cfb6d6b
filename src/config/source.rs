//! Where each configuration value comes from: the file, `FACEGATE__SECTION__KEY`
//! environment variables and command-line flags, merged into one untyped tree (later
//! sources win) that remembers which source set each key, so that a problem can say where
//! the bad value came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Prefix of the environment variables that override keys: `FACEGATE__MQTT__HOST`.
pub const ENV_PREFIX: &str = "FACEGATE__";

/// The source that set a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
    Flag(&'static str),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => write!(f, "the default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "{var}"),
            Origin::Flag(flag) => write!(f, "{flag}"),
        }
    }
}

/// The merged configuration before it is typed.
#[derive(Debug, Default)]
pub struct Tree {
    /// Tables, arrays and values as written; keys are not checked yet.
    pub root: Map<String, Value>,
    /// The configuration file that was read, if any.
    pub file: Option<PathBuf>,
    /// Keys set by an environment variable or a flag (the rest come from the file).
    pub overridden: BTreeMap<String, Origin>,
    /// What environment variables said before it was read as a number or boolean, for keys
    /// that turn out to be strings (`FACEGATE__MQTT__CLIENT_ID=1234`).
    pub env_text: BTreeMap<String, String>,
    /// Problems found while reading (values that cannot be represented).
    pub problems: Vec<(String, String)>,
}

impl Tree {
    /// Where `key` (`section.key`, `cameras[1].url`) got its value.
    pub fn origin(&self, key: &str) -> Origin {
        if let Some(origin) = self.overridden.get(key) {
            return origin.clone();
        }
        match &self.file {
            Some(file) if self.lookup(key).is_some() => Origin::File(file.clone()),
            _ => Origin::Default,
        }
    }

    /// The value at a dotted key, if the sources set one.
    pub fn lookup(&self, key: &str) -> Option<&Value> {
        let mut parts = key_parts(key).into_iter();
        let mut node = self.root.get(&parts.next()?)?;
        for part in parts {
            node = match (node, part.parse::<usize>()) {
                (Value::Array(items), Ok(i)) => items.get(i)?,
                (Value::Object(map), _) => map.get(&part)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Sets the value at `path`, creating tables on the way; numeric parts index arrays
    /// that are already there (`FACEGATE__CAMERAS__0__URL`).
    pub fn set(&mut self, path: &[String], value: Value, origin: Origin) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut map = &mut self.root;
        for part in parents {
            let slot = map.entry(part.clone()).or_insert_with(|| Value::Object(Map::new()));
            // A deeper key replaces a value that is not a table: the later source wins.
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let Value::Object(inner) = slot else {
                return;
            };
            map = inner;
        }
        map.insert(last.clone(), value);
        self.overridden.insert(display_key(path), origin);
    }
}

/// `["cameras", "2", "url"]` → `cameras[2].url`.
pub fn display_key(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.parse::<usize>().is_ok() && !out.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// `cameras[2].url` → `["cameras", "2", "url"]`.
pub fn key_parts(key: &str) -> Vec<String> {
    key.replace('[', ".")
        .replace(']', "")
        .split('.')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads the TOML file into the tree. A file that does not parse is one problem, with
/// its line and column.
pub fn read_file(tree: &mut Tree, path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, col) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((1, 1));
        format!("{}:{line}:{col}: {}", path.display(), e.message().trim())
    })?;
    let mut problems = Vec::new();
    for (key, value) in table {
        let path = vec![key];
        if let Some(v) = toml_to_json(value, &path, &mut problems) {
            tree.root.insert(path[0].clone(), v);
        }
    }
    tree.problems.extend(problems);
    tree.file = Some(path.to_path_buf());
    Ok(())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// TOML → JSON. Dates become strings (no key takes one, the type check says so);
/// `nan` and `inf`, which JSON cannot hold, are problems here.
fn toml_to_json(value: toml::Value, path: &[String], problems: &mut Vec<(String, String)>) -> Option<Value> {
    Some(match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => match serde_json::Number::from_f64(f) {
            Some(n) => Value::Number(n),
            None => {
                problems.push((display_key(path), format!("{f} is not a finite number")));
                return None;
            }
        },
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let p = [path, &[i.to_string()]].concat();
                    toml_to_json(v, &p, problems).unwrap_or(Value::Null)
                })
                .collect(),
        ),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .filter_map(|(k, v)| {
                    let p = [path, std::slice::from_ref(&k)].concat();
                    toml_to_json(v, &p, problems).map(|v| (k, v))
                })
                .collect(),
        ),
    })
}

/// Applies every `FACEGATE__…` variable, in name order. Values that read as a number or a
/// boolean are taken as one; the text is kept in case the key wants a string.
pub fn read_env(tree: &mut Tree, vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>) {
    let mut vars: Vec<(String, std::ffi::OsString)> = vars
        .into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            tree.problems
                .push((var.clone(), "is not of the form FACEGATE__SECTION__KEY".into()));
            continue;
        }
        let Ok(text) = raw.into_string() else {
            tree.problems.push((display_key(&path), format!("{var} is not UTF-8")));
            continue;
        };
        tree.env_text.insert(display_key(&path), text.clone());
        set_indexed(tree, &path, parse_env_value(&text), Origin::Env(var));
    }
}

/// Like [`Tree::set`], but a numeric part indexes an existing array of tables, so that
/// `FACEGATE__CAMERAS__0__URL` changes the first camera's url.
fn set_indexed(tree: &mut Tree, path: &[String], value: Value, origin: Origin) {
    if let Some(first) = path.first()
        && let Some(Value::Array(items)) = tree.root.get_mut(first)
        && let Some(Ok(i)) = path.get(1).map(|p| p.parse::<usize>())
        && let Some(Value::Object(item)) = items.get_mut(i)
        && path.len() == 3
    {
        item.insert(path[2].clone(), value);
        tree.overridden.insert(display_key(path), origin);
        return;
    }
    tree.set(path, value, origin);
}

/// An environment value as a boolean or number when it reads as one, else as text.
pub fn parse_env_value(text: &str) -> Value {
    let t = text.trim();
    if t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false") {
        return Value::Bool(t.eq_ignore_ascii_case("true"));
    }
    if let Ok(i) = t.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(u) = t.parse::<u64>() {
        return Value::from(u);
    }
    if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
        return Value::Number(n);
    }
    Value::String(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_display_and_split_the_same_way() {
        let path = ["cameras", "2", "url"].map(String::from);
        assert_eq!(display_key(&path), "cameras[2].url");
        assert_eq!(key_parts("cameras[2].url"), path);
        assert_eq!(key_parts("gallery.index.shortlist"), ["gallery", "index", "shortlist"]);
    }

    #[test]
    fn environment_values_are_typed_and_remember_their_variable() {
        let mut tree = Tree::default();
        tree.root
            .insert("cameras".into(), serde_json::json!([{"name": "a", "url": "rtsp://x"}]));
        let vars = [
            ("FACEGATE__INFERENCE__EMBED_BATCH", "4"),
            ("FACEGATE__MQTT__CLIENT_ID", "1234"),
            ("FACEGATE__CAMERAS__0__URL", "rtsp://y"),
            ("FACEGATE_LOG", "debug"),
            ("FACEGATE__BAD____KEY", "1"),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        read_env(&mut tree, vars);
        assert_eq!(tree.lookup("inference.embed_batch"), Some(&Value::from(4)));
        assert_eq!(tree.lookup("cameras[0].url"), Some(&Value::from("rtsp://y")));
        assert_eq!(tree.env_text["mqtt.client_id"], "1234");
        assert_eq!(
            tree.origin("mqtt.client_id"),
            Origin::Env("FACEGATE__MQTT__CLIENT_ID".into())
        );
        assert_eq!(tree.origin("mqtt.port"), Origin::Default);
        assert_eq!(tree.problems.len(), 1, "{:?}", tree.problems);
    }

    #[test]
    fn a_file_that_does_not_parse_is_one_line_with_its_position() {
        let dir = std::env::temp_dir().join(format!("facegate-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("broken.toml");
        std::fs::write(&f, "[mqtt]\nport = 1883\nhost = \n").unwrap();
        let err = read_file(&mut Tree::default(), &f).unwrap_err();
        assert!(err.contains("broken.toml:3:"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let nan = dir.join("nan.toml");
        std::fs::write(&nan, "[recognition]\nthreshold = nan\n").unwrap();
        let mut tree = Tree::default();
        read_file(&mut tree, &nan).unwrap();
        assert_eq!(tree.problems[0].0, "recognition.threshold");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
