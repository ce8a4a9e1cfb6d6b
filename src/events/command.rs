//! Remote enrollment and removal: what a command holds, how its fields are read, and why a
//! command message can be refused.
//!
//! Commands travel signed (see [`super::signing`] and docs/remote-commands.md); this module
//! reads the command's own fields from the signed body:
//! - enroll: `{"request_id"?, "name": string, "image": base64 image, "append"?: bool,
//!   "largest"?: bool, "force"?: bool, "metadata"?: object}`
//! - remove: `{"request_id"?, "name": string}`

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value, json};

/// A command for the application, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Enroll `name` from the photo.
    Enroll {
        request_id: Option<String>,
        name: String,
        /// The decoded `image` field: JPEG, PNG, WebP or BMP (the formats the decoder knows).
        image: Vec<u8>,
        /// Add to an existing person instead of refusing a name that is taken.
        append: bool,
        /// Enroll the largest face when the photo shows several (otherwise such a photo is
        /// refused: the wrong person could be enrolled).
        largest: bool,
        /// Enroll even when the face matches another enrolled person.
        force: bool,
        /// Free-form JSON object stored with the person.
        metadata: Option<Value>,
    },
    /// Remove `name` from the gallery.
    Remove { request_id: Option<String>, name: String },
}

impl Command {
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Command::Enroll { request_id, .. } | Command::Remove { request_id, .. } => request_id.as_deref(),
        }
    }

    /// `enroll` or `remove`.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Enroll { .. } => "enroll",
            Command::Remove { .. } => "remove",
        }
    }

    /// The fields of this command as a signed body carries them (with `command` and
    /// `timestamp`); [`parse_fields`] reads them back.
    pub fn body(&self, timestamp: i64) -> Value {
        let mut body = json!({"command": self.verb(), "timestamp": timestamp});
        if let Some(id) = self.request_id() {
            body["request_id"] = json!(id);
        }
        match self {
            Command::Enroll {
                name,
                image,
                append,
                largest,
                force,
                metadata,
                ..
            } => {
                body["name"] = json!(name);
                body["image"] = json!(base64::engine::general_purpose::STANDARD.encode(image));
                body["append"] = json!(append);
                body["largest"] = json!(largest);
                body["force"] = json!(force);
                if let Some(m) = metadata {
                    body["metadata"] = m.clone();
                }
            }
            Command::Remove { name, .. } => body["name"] = json!(name),
        }
        body
    }
}

/// Why a command message was refused, for the counters and for integrators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Remote commands are off (`[commands] enabled = false`).
    Disabled,
    /// Not a signed envelope: not JSON, a field missing or unknown, a signature that is not hex.
    Malformed,
    /// The signature does not match the body: another key, or an altered body.
    BadSignature,
    /// Signed, but not a valid command for this topic: body not a JSON object, `command`
    /// not the topic's verb, a field missing or wrong.
    Invalid,
    /// The timestamp is older than `commands.max_age_s`.
    Stale,
    /// The timestamp is ahead of the daemon's clock by more than `commands.max_age_s`.
    Future,
    /// The same signed message was accepted before, within `commands.max_age_s`.
    Replayed,
    /// Published with the retain flag: it would run again at every subscription.
    Retained,
    /// The application has too many commands waiting, or too many were accepted lately.
    Busy,
    /// The application has stopped taking commands.
    ShuttingDown,
}

impl Rejection {
    /// Every reason, in the order of the counters.
    pub const ALL: [Rejection; 10] = [
        Rejection::Disabled,
        Rejection::Malformed,
        Rejection::BadSignature,
        Rejection::Invalid,
        Rejection::Stale,
        Rejection::Future,
        Rejection::Replayed,
        Rejection::Retained,
        Rejection::Busy,
        Rejection::ShuttingDown,
    ];

    /// The `code` of the refusal on `{prefix}/cmd/result`.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::Disabled => "disabled",
            Rejection::Malformed => "malformed",
            Rejection::BadSignature => "bad_signature",
            Rejection::Invalid => "invalid",
            Rejection::Stale => "stale",
            Rejection::Future => "future",
            Rejection::Replayed => "replayed",
            Rejection::Retained => "retained",
            Rejection::Busy => "busy",
            Rejection::ShuttingDown => "shutting_down",
        }
    }

    /// Position in [`Rejection::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Why a command message was refused, with the request id when one could be read from an
/// authenticated body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{verb} command refused: {reason}")]
pub struct CommandError {
    pub verb: &'static str,
    pub request_id: Option<String>,
    pub kind: Rejection,
    pub reason: String,
}

impl CommandError {
    /// The message for `{prefix}/cmd/result`.
    pub fn result_json(&self) -> Value {
        json!({
            "request_id": self.request_id,
            "command": self.verb,
            "ok": false,
            "code": self.kind.code(),
            "error": self.reason,
        })
    }
}

/// Longest person name accepted from the network.
const MAX_NAME_CHARS: usize = 200;
/// Longest request id echoed back.
const MAX_REQUEST_ID_CHARS: usize = 200;

/// Decodes standard or URL-safe base64, padded or not.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Takes `request_id` out of a body. A number is kept as text: it is a common choice, and
/// the caller matches the result by it.
pub(crate) fn take_request_id(obj: &mut Map<String, Value>) -> Result<Option<String>, String> {
    let id = match obj.remove("request_id") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(format!("request_id must be a string, not {}", kind(&other))),
    };
    if id.chars().count() > MAX_REQUEST_ID_CHARS {
        return Err(format!("request_id is longer than {MAX_REQUEST_ID_CHARS} characters"));
    }
    Ok(Some(id))
}

/// Reads the command's own fields; `command`, `timestamp` and `request_id` are taken out
/// already. Unknown fields are refused: a misspelt `apend` must not be ignored.
pub(crate) fn parse_fields(
    verb: &str,
    request_id: Option<String>,
    mut obj: Map<String, Value>,
) -> Result<Command, String> {
    let name = take_name(&mut obj)?;
    let command = match verb {
        "enroll" => {
            let image = match obj.remove("image") {
                Some(Value::String(s)) => decode_image(&s)?,
                Some(other) => return Err(format!("image must be a base64 string, not {}", kind(&other))),
                None => return Err("image is missing (a base64 JPEG, PNG, WebP or BMP)".into()),
            };
            let metadata = match obj.remove("metadata") {
                None | Some(Value::Null) => None,
                Some(m @ Value::Object(_)) => Some(m),
                Some(other) => return Err(format!("metadata must be a JSON object, not {}", kind(&other))),
            };
            Command::Enroll {
                request_id,
                name,
                image,
                append: take_flag(&mut obj, "append")?,
                largest: take_flag(&mut obj, "largest")?,
                force: take_flag(&mut obj, "force")?,
                metadata,
            }
        }
        "remove" => Command::Remove { request_id, name },
        other => return Err(format!("unknown command {other:?}")),
    };
    if let Some(extra) = obj.keys().next() {
        return Err(format!("unknown field {extra:?}"));
    }
    Ok(command)
}

fn take_flag(obj: &mut Map<String, Value>, field: &str) -> Result<bool, String> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(other) => Err(format!("{field} must be true or false, not {}", kind(&other))),
    }
}

fn take_name(obj: &mut Map<String, Value>) -> Result<String, String> {
    let name = match obj.remove("name") {
        Some(Value::String(s)) => s,
        Some(other) => return Err(format!("name must be a string, not {}", kind(&other))),
        None => return Err("name is missing".into()),
    };
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err("name is empty".into());
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(format!("name is longer than {MAX_NAME_CHARS} characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err("name holds control characters".into());
    }
    Ok(trimmed.to_owned())
}

fn decode_image(text: &str) -> Result<Vec<u8>, String> {
    // Accept a data URL and line-wrapped output of `base64` without -w0.
    let body = match text.split_once(";base64,") {
        Some((head, body)) if head.starts_with("data:") => body,
        _ => text,
    };
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err("image is empty".into());
    }
    let bytes = STANDARD_LENIENT
        .decode(&compact)
        .or_else(|_| URL_SAFE_LENIENT.decode(&compact))
        .map_err(|e| format!("image is not valid base64: {e}"))?;
    if !is_known_image(&bytes) {
        return Err("image is not a JPEG, PNG, WebP or BMP file".into());
    }
    Ok(bytes)
}

/// Magic numbers of the formats the image decoder is built with.
fn is_known_image(b: &[u8]) -> bool {
    b.starts_with(&[0xFF, 0xD8, 0xFF])
        || b.starts_with(b"\x89PNG\r\n\x1a\n")
        || (b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP")
        || b.starts_with(b"BM")
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00];

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// A body as the signed envelope carries it, less `command` and `timestamp`.
    fn parse(verb: &str, payload: &[u8]) -> Result<Command, (Option<String>, String)> {
        let value: Value = serde_json::from_slice(payload).map_err(|e| (None, e.to_string()))?;
        let Value::Object(mut obj) = value else {
            return Err((None, "not an object".into()));
        };
        let id = take_request_id(&mut obj).map_err(|e| (None, e))?;
        parse_fields(verb, id.clone(), obj).map_err(|e| (id, e))
    }

    fn enroll(v: Value) -> Result<Command, (Option<String>, String)> {
        parse("enroll", v.to_string().as_bytes())
    }

    #[test]
    fn valid_enroll_and_remove() {
        let c = enroll(json!({
            "request_id": "r1", "name": " Ann ", "image": b64(JPEG), "append": true,
            "largest": true, "metadata": {"badge": 1042}
        }))
        .unwrap();
        assert_eq!(
            c,
            Command::Enroll {
                request_id: Some("r1".into()),
                name: "Ann".into(),
                image: JPEG.to_vec(),
                append: true,
                largest: true,
                force: false,
                metadata: Some(json!({"badge": 1042})),
            }
        );
        assert_eq!(c.request_id(), Some("r1"));
        assert_eq!(c.verb(), "enroll");
        let c = enroll(json!({"name": "Bob", "image": b64(JPEG), "metadata": null})).unwrap();
        assert_eq!(
            c,
            Command::Enroll {
                request_id: None,
                name: "Bob".into(),
                image: JPEG.to_vec(),
                append: false,
                largest: false,
                force: false,
                metadata: None,
            }
        );
        let c = parse("remove", br#"{"request_id": 17, "name": "Ann"}"#).unwrap();
        assert_eq!(
            c,
            Command::Remove {
                request_id: Some("17".into()),
                name: "Ann".into()
            }
        );
    }

    #[test]
    fn a_command_survives_its_body() {
        let commands = [
            Command::Enroll {
                request_id: Some("r1".into()),
                name: "Ann".into(),
                image: JPEG.to_vec(),
                append: true,
                largest: false,
                force: false,
                metadata: Some(json!({"badge": 7})),
            },
            Command::Remove {
                request_id: None,
                name: "Bob".into(),
            },
        ];
        for c in commands {
            let Value::Object(mut body) = c.body(1_700_000_000) else {
                panic!("a body is an object");
            };
            assert_eq!(body.remove("command"), Some(json!(c.verb())));
            assert_eq!(body.remove("timestamp"), Some(json!(1_700_000_000)));
            let id = take_request_id(&mut body).unwrap();
            assert_eq!(parse_fields(c.verb(), id, body).unwrap(), c);
        }
    }

    #[test]
    fn images_in_common_base64_spellings_are_accepted() {
        let plain = b64(JPEG);
        let wrapped = format!("{}\n{}\n", &plain[..6], &plain[6..]);
        let unpadded = plain.trim_end_matches('=').to_owned();
        let data_url = format!("data:image/jpeg;base64,{plain}");
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xFF, 0xD8, 0xFF, 0xFB, 0xEF]);
        let png = b64(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
        for text in [plain, wrapped, unpadded, data_url, url_safe, png] {
            assert!(enroll(json!({"name": "A", "image": text})).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn malformed_commands_say_why_and_keep_the_request_id() {
        let cases: Vec<(&'static str, &[u8], Option<&str>, &str)> = vec![
            (
                "enroll",
                br#"{"request_id": [1], "name": "A"}"#,
                None,
                "request_id must be a string",
            ),
            (
                "enroll",
                br#"{"request_id": "r2", "image": "/9j/"}"#,
                Some("r2"),
                "name is missing",
            ),
            (
                "enroll",
                br#"{"request_id": "r3", "name": "  "}"#,
                Some("r3"),
                "name is empty",
            ),
            (
                "enroll",
                br#"{"request_id": "r4", "name": 5}"#,
                Some("r4"),
                "name must be a string",
            ),
            (
                "enroll",
                br#"{"request_id": "r5", "name": "A"}"#,
                Some("r5"),
                "image is missing",
            ),
            (
                "enroll",
                br#"{"request_id": "r6", "name": "A", "image": "%%%"}"#,
                Some("r6"),
                "not valid base64",
            ),
            (
                "enroll",
                br#"{"request_id": "r7", "name": "A", "image": "aGVsbG8="}"#,
                Some("r7"),
                "not a JPEG, PNG, WebP or BMP",
            ),
            (
                "enroll",
                br#"{"request_id": "r8", "name": "A", "image": ""}"#,
                Some("r8"),
                "image is empty",
            ),
            (
                "enroll",
                br#"{"request_id": "r9", "name": "A", "image": "/9j/", "metadata": [1]}"#,
                Some("r9"),
                "metadata must be a JSON object, not an array",
            ),
            (
                "enroll",
                br#"{"request_id": "r10", "name": "A", "image": "/9j/", "largest": 1}"#,
                Some("r10"),
                "largest must be true or false",
            ),
            (
                "remove",
                br#"{"request_id": "r11", "name": "A", "nmae": "B"}"#,
                Some("r11"),
                "unknown field \"nmae\"",
            ),
            (
                "remove",
                br#"{"request_id": "r12", "name": "A\u0007"}"#,
                Some("r12"),
                "control characters",
            ),
        ];
        for (verb, payload, id, why) in cases {
            let (got_id, reason) = parse(verb, payload).unwrap_err();
            assert_eq!(got_id.as_deref(), id, "{reason}");
            assert!(
                reason.contains(why),
                "{:?} → {reason}",
                String::from_utf8_lossy(payload)
            );
        }
        let (_, reason) = enroll(json!({"name": "A", "image": b64(JPEG), "append": "yes"})).unwrap_err();
        assert!(reason.contains("append must be true or false"), "{reason}");
        let long = "x".repeat(201);
        assert!(parse("remove", json!({"name": long}).to_string().as_bytes()).is_err());
        let long_id = json!({"request_id": "x".repeat(201), "name": "A"});
        assert!(parse("remove", long_id.to_string().as_bytes()).is_err());
    }

    #[test]
    fn refusals_carry_their_code() {
        let e = CommandError {
            verb: "remove",
            request_id: Some("r1".into()),
            kind: Rejection::Replayed,
            reason: "seen before".into(),
        };
        assert_eq!(
            e.result_json(),
            json!({"request_id": "r1", "command": "remove", "ok": false, "code": "replayed", "error": "seen before"})
        );
        for (i, r) in Rejection::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
