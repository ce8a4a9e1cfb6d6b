//! Signed commands: the envelope on the wire and the one implementation of signing and
//! verifying it, used by the daemon and by `facegate sign`.
//!
//! ```text
//! {"body": "<the command as JSON text>", "signature": "<hex HMAC-SHA256 of the body's bytes>"}
//! ```
//!
//! The body travels as a string so that the exact bytes that were signed arrive: no JSON
//! re-encoding on the way can break the signature, and a shell can sign it with
//! `openssl dgst -sha256 -hmac "$(cat command.key)"` (docs/remote-commands.md).

use std::io::Read as _;
use std::path::Path;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::broker::MAX_PAYLOAD;
use super::command::Command;

/// Shortest key accepted: `openssl rand -hex 32` gives 64 characters.
pub const MIN_KEY_BYTES: usize = 32;
/// A key file longer than this is not a key file (and is not read into memory).
const MAX_KEY_FILE_BYTES: u64 = 4096;
/// Bytes of an HMAC-SHA256.
pub(crate) const SIGNATURE_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The shared secret of signed commands. Its bytes are never printed.
#[derive(Clone)]
pub struct CommandKey {
    /// HMAC state keyed once; cloned for every message.
    mac: HmacSha256,
}

impl std::fmt::Debug for CommandKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommandKey(<secret>)")
    }
}

impl CommandKey {
    /// The key is the text of the file with surrounding whitespace trimmed (so that
    /// `openssl rand -hex 32 > command.key` and `"$(cat command.key)"` agree).
    pub fn from_file(path: &Path) -> Result<CommandKey, String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        file.take(MAX_KEY_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(format!(
                "is longer than {MAX_KEY_FILE_BYTES} bytes: not a key file (make one with `openssl rand -hex 32`)"
            ));
        }
        let key = CommandKey::from_bytes(&bytes)?;
        warn_if_others_can_read(path);
        Ok(key)
    }

    /// A key from its bytes, surrounding whitespace trimmed; at least [`MIN_KEY_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Result<CommandKey, String> {
        let key = bytes.trim_ascii();
        if key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "holds a key of {} bytes; at least {MIN_KEY_BYTES} are needed (make one with `openssl rand -hex 32`)",
                key.len()
            ));
        }
        let mac = HmacSha256::new_from_slice(key).map_err(|e| format!("unusable key: {e}"))?;
        Ok(CommandKey { mac })
    }

    /// Lower-case hex HMAC-SHA256 of `body`: what `openssl dgst -sha256 -hmac KEY` prints.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(body);
        hex(&mac.finalize().into_bytes())
    }

    /// Constant-time check of a signature over `body`.
    pub(crate) fn verify(&self, body: &[u8], signature: &[u8; SIGNATURE_BYTES]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    }

    /// The envelope of `body`, ready to publish.
    pub fn envelope(&self, body: &str) -> String {
        json!({"body": body, "signature": self.sign(body.as_bytes())}).to_string()
    }
}

/// The envelope of `command` signed at `timestamp` (Unix seconds). Refuses a command the
/// daemon would refuse (empty name, metadata not an object, image of an unknown format).
pub fn sign_command(key: &CommandKey, command: &Command, timestamp: i64) -> Result<String, String> {
    let body = command.body(timestamp);
    let serde_json::Value::Object(mut fields) = body.clone() else {
        return Err("a command body is a JSON object".into());
    };
    fields.remove("command");
    fields.remove("timestamp");
    let request_id = super::command::take_request_id(&mut fields)?;
    super::command::parse_fields(command.verb(), request_id, fields)?;
    let envelope = key.envelope(&body.to_string());
    if envelope.len() > MAX_PAYLOAD {
        return Err(format!(
            "the signed command is {} bytes; the daemon accepts at most {} MiB (use a smaller photo)",
            envelope.len(),
            MAX_PAYLOAD >> 20
        ));
    }
    Ok(envelope)
}

/// An envelope read from the wire, not yet verified.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub body: String,
    pub signature: [u8; SIGNATURE_BYTES],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEnvelope {
    body: String,
    signature: String,
}

/// Reads the envelope; says what is wrong with it otherwise.
pub(crate) fn parse_envelope(payload: &[u8]) -> Result<Envelope, String> {
    const SHAPE: &str = "commands must be signed: {\"body\": \"<command JSON>\", \"signature\": \"<hex HMAC-SHA256>\"} \
                         (see docs/remote-commands.md)";
    let wire: WireEnvelope = serde_json::from_slice(payload).map_err(|e| format!("{SHAPE}; {e}"))?;
    let signature = unhex(wire.signature.trim())
        .ok_or_else(|| format!("signature must be {} hex digits (HMAC-SHA256)", SIGNATURE_BYTES * 2))?;
    Ok(Envelope {
        body: wire.body,
        signature,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exactly [`SIGNATURE_BYTES`] bytes of hex, either case.
fn unhex(text: &str) -> Option<[u8; SIGNATURE_BYTES]> {
    let digits = text.as_bytes();
    if digits.len() != SIGNATURE_BYTES * 2 {
        return None;
    }
    let mut out = [0u8; SIGNATURE_BYTES];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// A key others can read is a key others can sign with.
fn warn_if_others_can_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            "the command key can be read by other users; chmod 600 it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn known_answer_and_round_trip() {
        // Computed with `printf hello | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef`.
        let key = CommandKey::from_bytes(&KEY[..32]).unwrap();
        assert_eq!(
            key.sign(b"hello"),
            "db68b47b63c2397eac785025b1c9c2103ae06c28998234a783b3eb6453d1ad70"
        );
        let key = CommandKey::from_bytes(KEY).unwrap();
        let env = parse_envelope(key.envelope(r#"{"a":1}"#).as_bytes()).unwrap();
        assert_eq!(env.body, r#"{"a":1}"#);
        assert!(key.verify(env.body.as_bytes(), &env.signature));
        assert!(!key.verify(br#"{"a":2}"#, &env.signature));
        let other = CommandKey::from_bytes(&KEY[1..]).unwrap();
        assert!(!other.verify(env.body.as_bytes(), &env.signature));
    }

    #[test]
    fn keys_are_trimmed_and_must_be_long_enough() {
        let padded = [b"  ".as_slice(), KEY, b"\n"].concat();
        let a = CommandKey::from_bytes(&padded).unwrap();
        let b = CommandKey::from_bytes(KEY).unwrap();
        assert_eq!(a.sign(b"x"), b.sign(b"x"));
        let err = CommandKey::from_bytes(b"short key\n").unwrap_err();
        assert!(err.contains("9 bytes") && err.contains("openssl rand -hex 32"), "{err}");
        assert!(CommandKey::from_bytes(&KEY[..31]).is_err());
        assert!(CommandKey::from_bytes(&KEY[..32]).is_ok());
        assert_eq!(format!("{b:?}"), "CommandKey(<secret>)");
    }

    #[test]
    fn key_files_are_read_with_a_bound() {
        let dir = std::env::temp_dir().join(format!("facegate-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.key");
        std::fs::write(&good, [KEY, b"\n"].concat()).unwrap();
        assert_eq!(
            CommandKey::from_file(&good).unwrap().sign(b"x"),
            CommandKey::from_bytes(KEY).unwrap().sign(b"x")
        );
        let big = dir.join("big.key");
        std::fs::write(&big, vec![b'a'; 5000]).unwrap();
        assert!(CommandKey::from_file(&big).unwrap_err().contains("not a key file"));
        assert!(CommandKey::from_file(&dir.join("missing.key")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn envelopes_are_checked_for_shape() {
        let sig = "ab".repeat(32);
        let upper = parse_envelope(
            json!({"body": "{}", "signature": sig.to_uppercase()})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(upper.unwrap().signature, [0xab; 32]);
        for (payload, why) in [
            ("not json".to_string(), "commands must be signed"),
            (json!({"name": "Ann"}).to_string(), "commands must be signed"),
            (json!({"body": "{}"}).to_string(), "missing field `signature`"),
            (
                json!({"body": {}, "signature": sig}).to_string(),
                "commands must be signed",
            ),
            (
                json!({"body": "{}", "signature": sig, "x": 1}).to_string(),
                "unknown field",
            ),
            (json!({"body": "{}", "signature": "abc"}).to_string(), "64 hex digits"),
            (
                json!({"body": "{}", "signature": "zz".repeat(32)}).to_string(),
                "64 hex digits",
            ),
            (
                json!({"body": "{}", "signature": "é".repeat(32)}).to_string(),
                "64 hex digits",
            ),
        ] {
            let err = parse_envelope(payload.as_bytes()).unwrap_err();
            assert!(err.contains(why), "{payload}: {err}");
        }
    }

    #[test]
    fn sign_command_refuses_what_the_daemon_would_refuse() {
        let key = CommandKey::from_bytes(KEY).unwrap();
        let bad = Command::Enroll {
            request_id: None,
            name: "Ann".into(),
            image: b"GIF89a".to_vec(),
            append: false,
            largest: false,
            force: false,
            metadata: None,
        };
        assert!(sign_command(&key, &bad, 0).unwrap_err().contains("not a JPEG"));
        let remove = Command::Remove {
            request_id: Some("r1".into()),
            name: "Ann".into(),
        };
        let env = parse_envelope(sign_command(&key, &remove, 1_700_000_000).unwrap().as_bytes()).unwrap();
        assert!(key.verify(env.body.as_bytes(), &env.signature));
        let body: serde_json::Value = serde_json::from_str(&env.body).unwrap();
        assert_eq!(
            body,
            json!({"command": "remove", "timestamp": 1_700_000_000, "request_id": "r1", "name": "Ann"})
        );
    }
}
