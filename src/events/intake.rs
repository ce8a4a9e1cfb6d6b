//! What happens to a message on a command topic before the application sees it: the
//! feature switch, the signature, the clock, replays, the fields, and the queue.

use crossbeam_channel::{Sender, TrySendError};
use serde_json::Value;

use super::command::{Command, CommandError, Rejection, kind, parse_fields, take_request_id};
use super::replay::{self, ReplayCache};
use super::signing::{CommandKey, parse_envelope};

/// Signatures remembered at most. Commands are people enrolled by hand or by a roster
/// sync: far fewer than this within `max_age_s`. Beyond it commands are refused as busy.
const REPLAY_CAPACITY: usize = 4096;

pub(crate) struct CommandIntake {
    /// `None` once the application stops taking commands.
    tx: Option<Sender<Command>>,
    /// `None`: remote commands are disabled.
    key: Option<CommandKey>,
    max_age_s: i64,
    seen: ReplayCache,
}

impl CommandIntake {
    pub fn new(tx: Sender<Command>, key: Option<CommandKey>, max_age_s: u64) -> CommandIntake {
        CommandIntake {
            tx: Some(tx),
            key,
            max_age_s: i64::try_from(max_age_s).unwrap_or(i64::MAX),
            seen: ReplayCache::new(REPLAY_CAPACITY),
        }
    }

    /// The application still takes commands.
    pub fn open(&self) -> bool {
        self.tx.is_some()
    }

    /// Ends the application's command stream (its receiver sees the channel close).
    pub fn close(&mut self) {
        self.tx = None;
    }

    /// Checks a message on `{prefix}/cmd/{verb}` received at `now` (Unix seconds) and hands
    /// the command to the application, or says why not.
    pub fn take(&mut self, verb: &'static str, payload: &[u8], retained: bool, now: i64) -> Result<(), CommandError> {
        let fail = |kind: Rejection, request_id: Option<String>, reason: String| CommandError {
            verb,
            request_id,
            kind,
            reason,
        };
        let Some(key) = &self.key else {
            // Not parsed at all: nothing from an unauthenticated sender is worth reading.
            return Err(fail(
                Rejection::Disabled,
                None,
                "remote commands are disabled; turn them on with [commands] enabled = true and a \
                 commands.key_file in the configuration (see docs/remote-commands.md)"
                    .into(),
            ));
        };
        let envelope = parse_envelope(payload).map_err(|why| fail(Rejection::Malformed, None, why))?;
        if !key.verify(envelope.body.as_bytes(), &envelope.signature) {
            return Err(fail(
                Rejection::BadSignature,
                None,
                "the signature does not match the body (another key, or an altered body)".into(),
            ));
        }
        // Authenticated from here on: the request id may go back with every refusal.
        let mut body = match serde_json::from_str::<Value>(&envelope.body) {
            Ok(Value::Object(obj)) => obj,
            Ok(other) => {
                let why = format!("body must be a JSON object, not {}", kind(&other));
                return Err(fail(Rejection::Invalid, None, why));
            }
            Err(e) => return Err(fail(Rejection::Invalid, None, format!("body is not JSON: {e}"))),
        };
        let request_id = take_request_id(&mut body).map_err(|why| fail(Rejection::Invalid, None, why))?;
        let fail = |kind: Rejection, reason: String| fail(kind, request_id.clone(), reason);
        if retained {
            let why = "retained commands are ignored; publish commands without the retain flag";
            return Err(fail(Rejection::Retained, why.into()));
        }
        match body.remove("command") {
            Some(Value::String(c)) if c == verb => {}
            Some(Value::String(c)) => {
                let why = format!("body.command is {c:?} but the message came on cmd/{verb}");
                return Err(fail(Rejection::Invalid, why));
            }
            Some(other) => {
                let why = format!("body.command must be \"{verb}\", not {}", kind(&other));
                return Err(fail(Rejection::Invalid, why));
            }
            None => {
                return Err(fail(
                    Rejection::Invalid,
                    format!("body.command is missing (\"{verb}\")"),
                ));
            }
        }
        let timestamp = body.remove("timestamp");
        let timestamp = self.check_clock(timestamp, now).map_err(|(k, why)| fail(k, why))?;
        match self.seen.check(&envelope.signature, now) {
            Ok(()) => {}
            Err(replay::Refusal::Replayed) => {
                let why = "replayed: this signed message was accepted before; sign every command afresh";
                return Err(fail(Rejection::Replayed, why.into()));
            }
            Err(replay::Refusal::Full) => {
                let why = "busy: too many commands within commands.max_age_s; try again later";
                return Err(fail(Rejection::Busy, why.into()));
            }
        }
        let command = parse_fields(verb, request_id.clone(), body).map_err(|why| fail(Rejection::Invalid, why))?;
        self.hand_over(command, verb)?;
        // Remembered only once accepted: a command refused as busy may be sent again as is.
        self.seen
            .remember(envelope.signature, timestamp.saturating_add(self.max_age_s));
        Ok(())
    }

    /// The timestamp, if within `max_age_s` of `now` either way.
    fn check_clock(&self, timestamp: Option<Value>, now: i64) -> Result<i64, (Rejection, String)> {
        let ts = match timestamp {
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
                (
                    Rejection::Invalid,
                    format!("body.timestamp must be whole Unix seconds, not {n}"),
                )
            })?,
            Some(other) => {
                let why = format!("body.timestamp must be Unix seconds, not {}", kind(&other));
                return Err((Rejection::Invalid, why));
            }
            None => return Err((Rejection::Invalid, "body.timestamp is missing (Unix seconds)".into())),
        };
        let age = i128::from(now) - i128::from(ts);
        let max = i128::from(self.max_age_s);
        if age > max {
            let why = format!(
                "stale: signed {age} s ago, more than commands.max_age_s ({max} s); sign commands just \
                 before sending them, and check that both clocks are set (NTP)"
            );
            return Err((Rejection::Stale, why));
        }
        if -age > max {
            let why = format!(
                "timestamp is {} s ahead of the daemon's clock, more than commands.max_age_s ({max} s); \
                 check that both clocks are set (NTP)",
                -age
            );
            return Err((Rejection::Future, why));
        }
        Ok(ts)
    }

    fn hand_over(&self, command: Command, verb: &'static str) -> Result<(), CommandError> {
        let refusal = |command: Command, kind: Rejection, reason: &str| CommandError {
            verb,
            request_id: command.request_id().map(str::to_owned),
            kind,
            reason: reason.into(),
        };
        const SHUTTING_DOWN: &str = "not accepting commands: shutting down";
        let Some(tx) = &self.tx else {
            return Err(refusal(command, Rejection::ShuttingDown, SHUTTING_DOWN));
        };
        tx.try_send(command).map_err(|e| match e {
            TrySendError::Full(c) => refusal(c, Rejection::Busy, "busy: too many commands waiting; try again later"),
            TrySendError::Disconnected(c) => refusal(c, Rejection::ShuttingDown, SHUTTING_DOWN),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const KEY: &[u8] = b"a-test-key-that-is-long-enough-for-hmac-0123456789";
    const NOW: i64 = 1_700_000_000;
    const JPEG_B64: &str = "/9j/4AAQSkZJRgABAQ==";

    fn intake(cap: usize) -> (CommandIntake, crossbeam_channel::Receiver<Command>) {
        let (tx, rx) = crossbeam_channel::bounded(cap);
        let key = CommandKey::from_bytes(KEY).unwrap();
        (CommandIntake::new(tx, Some(key), 30), rx)
    }

    fn signed(body: serde_json::Value) -> Vec<u8> {
        CommandKey::from_bytes(KEY)
            .unwrap()
            .envelope(&body.to_string())
            .into_bytes()
    }

    fn remove_at(ts: i64, id: &str) -> Vec<u8> {
        signed(json!({"command": "remove", "timestamp": ts, "request_id": id, "name": "Ann"}))
    }

    #[test]
    fn disabled_refuses_without_reading() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut off = CommandIntake::new(tx, None, 30);
        let e = off.take("enroll", &remove_at(NOW, "r1"), false, NOW).unwrap_err();
        assert_eq!((e.kind, e.request_id), (Rejection::Disabled, None));
        assert!(e.reason.contains("[commands] enabled = true"), "{}", e.reason);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_signed_command_goes_through_once() {
        let (mut i, rx) = intake(4);
        let body = json!({"command": "enroll", "timestamp": NOW, "request_id": "e1", "name": "Ann",
                          "image": JPEG_B64, "largest": true, "metadata": {"badge": 1}});
        let msg = signed(body);
        i.take("enroll", &msg, false, NOW + 5).unwrap();
        match rx.try_recv().unwrap() {
            Command::Enroll {
                request_id,
                name,
                largest,
                metadata,
                ..
            } => {
                assert_eq!(
                    (request_id.as_deref(), name.as_str(), largest),
                    (Some("e1"), "Ann", true)
                );
                assert_eq!(metadata, Some(json!({"badge": 1})));
            }
            other => panic!("{other:?}"),
        }
        let e = i.take("enroll", &msg, false, NOW + 6).unwrap_err();
        assert_eq!((e.kind, e.request_id.as_deref()), (Rejection::Replayed, Some("e1")));
        // Re-encoding the envelope (upper-case hex, other whitespace) is the same message.
        let v: serde_json::Value = serde_json::from_slice(&msg).unwrap();
        let upper = json!({"signature": v["signature"].as_str().unwrap().to_uppercase(), "body": v["body"]});
        let e = i
            .take("enroll", format!("{upper:#}").as_bytes(), false, NOW + 6)
            .unwrap_err();
        assert_eq!(e.kind, Rejection::Replayed);
    }

    /// A refused message: topic verb, payload, retained flag, and the refusal it gets —
    /// kind, request id and a phrase of its reason.
    type RefusalCase = (
        &'static str,
        Vec<u8>,
        bool,
        Rejection,
        Option<&'static str>,
        &'static str,
    );

    /// One message for every way a command is refused.
    fn refusal_cases() -> Vec<RefusalCase> {
        let other_key = CommandKey::from_bytes(&[b'z'; 40]).unwrap();
        let body = json!({"command": "remove", "timestamp": NOW, "request_id": "x", "name": "Ann"}).to_string();
        let tampered = {
            let env: serde_json::Value = serde_json::from_slice(&remove_at(NOW, "x")).unwrap();
            json!({"body": body.replace("Ann", "Eve"), "signature": env["signature"]}).to_string()
        };
        vec![
            (
                "remove",
                b"{\"name\": \"Ann\"}".to_vec(),
                false,
                Rejection::Malformed,
                None,
                "must be signed",
            ),
            (
                "remove",
                other_key.envelope(&body).into_bytes(),
                false,
                Rejection::BadSignature,
                None,
                "signature",
            ),
            (
                "remove",
                tampered.into_bytes(),
                false,
                Rejection::BadSignature,
                None,
                "altered",
            ),
            (
                "remove",
                signed(json!([1])),
                false,
                Rejection::Invalid,
                None,
                "JSON object",
            ),
            (
                "remove",
                remove_at(NOW, "a"),
                true,
                Rejection::Retained,
                Some("a"),
                "retain",
            ),
            (
                "enroll",
                remove_at(NOW, "b"),
                false,
                Rejection::Invalid,
                Some("b"),
                "cmd/enroll",
            ),
            (
                "remove",
                remove_at(NOW - 31, "c"),
                false,
                Rejection::Stale,
                Some("c"),
                "31 s ago",
            ),
            (
                "remove",
                remove_at(NOW + 31, "d"),
                false,
                Rejection::Future,
                Some("d"),
                "31 s ahead",
            ),
            (
                "remove",
                signed(json!({"command": "remove", "timestamp": 1.5, "request_id": "e", "name": "A"})),
                false,
                Rejection::Invalid,
                Some("e"),
                "whole Unix seconds",
            ),
            (
                "remove",
                signed(json!({"command": "remove", "request_id": "f", "name": "A"})),
                false,
                Rejection::Invalid,
                Some("f"),
                "timestamp is missing",
            ),
            (
                "remove",
                signed(json!({"command": "remove", "timestamp": NOW, "request_id": "g"})),
                false,
                Rejection::Invalid,
                Some("g"),
                "name is missing",
            ),
        ]
    }

    #[test]
    fn every_refusal_says_why() {
        let (mut i, rx) = intake(4);
        for (verb, payload, retained, kind, id, why) in refusal_cases() {
            let e = i.take(verb, &payload, retained, NOW).unwrap_err();
            assert_eq!((e.kind, e.request_id.as_deref()), (kind, id), "{}", e.reason);
            assert!(e.reason.contains(why), "{why:?} not in {:?}", e.reason);
        }
        assert!(rx.try_recv().is_err());
        // At the edges of the window: accepted.
        i.take("remove", &remove_at(NOW - 30, "h"), false, NOW).unwrap();
        i.take("remove", &remove_at(NOW + 30, "i"), false, NOW).unwrap();
    }

    #[test]
    fn busy_and_shutting_down_keep_the_message_usable() {
        let (mut i, rx) = intake(1);
        i.take("remove", &remove_at(NOW, "a"), false, NOW).unwrap();
        let second = remove_at(NOW, "b");
        let e = i.take("remove", &second, false, NOW).unwrap_err();
        assert_eq!((e.kind, e.request_id.as_deref()), (Rejection::Busy, Some("b")));
        rx.try_recv().unwrap();
        // Refused as busy, so not remembered: the same message goes through now.
        i.take("remove", &second, false, NOW).unwrap();
        i.close();
        assert!(!i.open());
        let e = i.take("remove", &remove_at(NOW, "c"), false, NOW).unwrap_err();
        assert_eq!((e.kind, e.request_id.as_deref()), (Rejection::ShuttingDown, Some("c")));
    }
}
