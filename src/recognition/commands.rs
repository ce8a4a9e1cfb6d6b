//! Remote commands (`cmd/enroll`, `cmd/remove`) carried out by the worker, which owns the
//! gallery and the models; the result goes to `{prefix}/cmd/result`.

use serde_json::{Value, json};

use super::WorkerContext;
use crate::engine::FaceEngine;
use crate::error::Error;
use crate::events::Command;
use crate::gallery::Gallery;
use crate::gallery::enroll::{self, EnrollRequest, Photo};
use crate::telemetry::InternalEvent;
use crate::telemetry::events::CommandHandled;
use crate::vision::image_io::EncodedImage;

/// Carries out `command` through the same enrollment path as the CLI; returns the result
/// message.
pub(crate) fn handle(engine: &mut FaceEngine, gallery: &mut Gallery, ctx: &WorkerContext, command: Command) -> Value {
    let request_id = command.request_id().map(str::to_owned);
    let verb = command.verb();
    let (name, result) = match command {
        Command::Enroll {
            name,
            image,
            append,
            largest,
            force,
            metadata,
            ..
        } => {
            let request = EnrollRequest {
                name: name.clone(),
                photos: vec![Photo {
                    label: "image".into(),
                    image: EncodedImage { bytes: image },
                }],
                largest,
                append,
                metadata: metadata.unwrap_or_else(|| json!({})),
                force,
            };
            let result = enroll::enroll(engine, gallery, &ctx.cfg.enroll_rules(), request).map(|done| done.to_json());
            (name, result)
        }
        Command::Remove { name, .. } => {
            let result = gallery.remove(&name).map(|n| json!({"removed": name, "templates": n}));
            (name, result)
        }
    };
    CommandHandled {
        command: verb,
        name: &name,
        error: result.as_ref().err().map(|e| e as &dyn std::fmt::Display),
    }
    .emit(&ctx.telemetry);
    reply(request_id, verb, result)
}

fn reply(request_id: Option<String>, command: &str, result: Result<Value, Error>) -> Value {
    match result {
        Ok(v) => json!({"request_id": request_id, "command": command, "ok": true, "result": v}),
        Err(e) => json!({"request_id": request_id, "command": command, "ok": false, "error": e.to_string()}),
    }
}
