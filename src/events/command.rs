//! Remote enrollment and removal: `{prefix}/cmd/enroll` and `{prefix}/cmd/remove`.
//!
//! Payloads are JSON objects:
//! - enroll: `{"request_id"?: string, "name": string, "image": base64 JPEG, "append"?: bool}`
//! - remove: `{"request_id"?: string, "name": string}`
//!
//! Anything else is refused with a reason that goes back on `{prefix}/cmd/result`.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value, json};

/// A command for the application, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Enroll `name` from the photo (`append`: add to an existing person instead of refusing
    /// a name that is taken).
    Enroll {
        request_id: Option<String>,
        name: String,
        /// The decoded `image` field (JPEG, or another format the image decoder knows).
        jpeg: Vec<u8>,
        append: bool,
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
}

/// Why a command message was refused, with the request id when one could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{verb} command refused: {reason}")]
pub struct CommandError {
    pub verb: &'static str,
    pub request_id: Option<String>,
    pub reason: String,
}

impl CommandError {
    /// The message for `{prefix}/cmd/result`.
    pub fn result_json(&self) -> Value {
        json!({
            "request_id": self.request_id,
            "command": self.verb,
            "ok": false,
            "error": self.reason,
        })
    }
}

/// Longest person name accepted from the network.
const MAX_NAME_CHARS: usize = 200;

/// Decodes standard or URL-safe base64, padded or not.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Parses the payload of a command topic. `verb` is the topic's last level.
pub(crate) fn parse_command(verb: &'static str, payload: &[u8]) -> Result<Command, CommandError> {
    let fail = |request_id: Option<String>, reason: String| CommandError {
        verb,
        request_id,
        reason,
    };
    let value: Value = serde_json::from_slice(payload).map_err(|e| fail(None, format!("payload is not JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(fail(None, "payload is not a JSON object".into()));
    };
    let request_id = match obj.remove("request_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        // A number is a common choice; keep it so the caller can match the result.
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => return Err(fail(None, format!("request_id must be a string, not {}", kind(&other)))),
    };
    let fail = |reason: String| fail(request_id.clone(), reason);
    let name = take_name(&mut obj).map_err(fail)?;
    let command = match verb {
        "enroll" => {
            let image = match obj.remove("image") {
                Some(Value::String(s)) => s,
                Some(other) => return Err(fail(format!("image must be a base64 string, not {}", kind(&other)))),
                None => return Err(fail("image is missing (a base64 JPEG)".into())),
            };
            let jpeg = decode_image(&image).map_err(fail)?;
            let append = match obj.remove("append") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => b,
                Some(other) => return Err(fail(format!("append must be true or false, not {}", kind(&other)))),
            };
            Command::Enroll {
                request_id: request_id.clone(),
                name,
                jpeg,
                append,
            }
        }
        "remove" => Command::Remove {
            request_id: request_id.clone(),
            name,
        },
        other => return Err(fail(format!("unknown command {other:?}"))),
    };
    if let Some(extra) = obj.keys().next() {
        return Err(fail(format!("unknown field {extra:?}")));
    }
    Ok(command)
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
        return Err("image is not a JPEG (nor PNG, WebP or BMP) file".into());
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

fn kind(v: &Value) -> &'static str {
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

    fn enroll(v: Value) -> Result<Command, CommandError> {
        parse_command("enroll", v.to_string().as_bytes())
    }

    #[test]
    fn valid_enroll_and_remove() {
        let c = enroll(json!({"request_id": "r1", "name": " Ann ", "image": b64(JPEG), "append": true})).unwrap();
        assert_eq!(
            c,
            Command::Enroll {
                request_id: Some("r1".into()),
                name: "Ann".into(),
                jpeg: JPEG.to_vec(),
                append: true
            }
        );
        assert_eq!(c.request_id(), Some("r1"));
        assert_eq!(c.verb(), "enroll");
        let c = enroll(json!({"name": "Bob", "image": b64(JPEG)})).unwrap();
        assert_eq!(
            c,
            Command::Enroll {
                request_id: None,
                name: "Bob".into(),
                jpeg: JPEG.to_vec(),
                append: false
            }
        );
        let c = parse_command("remove", br#"{"request_id": 17, "name": "Ann"}"#).unwrap();
        assert_eq!(
            c,
            Command::Remove {
                request_id: Some("17".into()),
                name: "Ann".into()
            }
        );
    }

    #[test]
    fn images_in_common_base64_spellings_are_accepted() {
        let plain = b64(JPEG);
        let wrapped = format!("{}\n{}\n", &plain[..6], &plain[6..]);
        let unpadded = plain.trim_end_matches('=').to_owned();
        let data_url = format!("data:image/jpeg;base64,{plain}");
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xFF, 0xD8, 0xFF, 0xFB, 0xEF]);
        for text in [plain, wrapped, unpadded, data_url, url_safe] {
            assert!(enroll(json!({"name": "A", "image": text})).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn malformed_commands_say_why_and_keep_the_request_id() {
        let cases: Vec<(&'static str, &[u8], Option<&str>, &str)> = vec![
            ("enroll", b"not json", None, "not JSON"),
            ("enroll", b"[1,2]", None, "not a JSON object"),
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
                "not a JPEG",
            ),
            (
                "enroll",
                br#"{"request_id": "r8", "name": "A", "image": ""}"#,
                Some("r8"),
                "image is empty",
            ),
            (
                "remove",
                br#"{"request_id": "r9", "name": "A", "nmae": "B"}"#,
                Some("r9"),
                "unknown field \"nmae\"",
            ),
            (
                "remove",
                br#"{"request_id": "r10", "name": "A\u0007"}"#,
                Some("r10"),
                "control characters",
            ),
        ];
        for (verb, payload, id, why) in cases {
            let err = parse_command(verb, payload).unwrap_err();
            assert_eq!(err.request_id.as_deref(), id, "{err}");
            assert!(
                err.reason.contains(why),
                "{:?} → {err}",
                String::from_utf8_lossy(payload)
            );
            let result = err.result_json();
            assert_eq!(result["ok"], false);
            assert_eq!(result["command"], verb);
            assert_eq!(
                result["request_id"],
                id.map_or(Value::Null, |s| Value::String(s.into()))
            );
            assert!(result["error"].as_str().unwrap().contains(why));
        }
        let err = enroll(json!({"name": "A", "image": b64(JPEG), "append": "yes"})).unwrap_err();
        assert!(err.reason.contains("append must be true or false"), "{err}");
        let long = "x".repeat(201);
        assert!(parse_command("remove", json!({"name": long}).to_string().as_bytes()).is_err());
    }
}
