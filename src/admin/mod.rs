//! Admin HTTP endpoints: `/live`, `/ready` and `/metrics` (Prometheus text format, from
//! the telemetry registry).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::telemetry::Telemetry;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve `/live`, `/ready` and `/metrics`.
    pub enabled: bool,
    /// Address to listen on; keep it on loopback unless a firewall guards it.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// One part of the daemon as `/ready` reports it: up or not, and why.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Part {
    pub ready: bool,
    /// What the part is doing, or its last error when it is not up.
    pub reason: String,
}

impl Part {
    pub fn new(ready: bool, reason: impl Into<String>) -> Part {
        Part {
            ready,
            reason: reason.into(),
        }
    }
}

/// A camera's part.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct CameraPart {
    pub name: String,
    #[serde(flatten)]
    pub part: Part,
}

/// What `/ready` reports: every part must be up.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Readiness {
    pub models: Part,
    pub gallery: Part,
    pub broker: Part,
    pub cameras: Vec<CameraPart>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.not_ready().is_empty()
    }

    /// The parts that are not up, each with its reason: `models: loading`,
    /// `camera yard: …`.
    pub fn not_ready(&self) -> Vec<String> {
        let named = [
            ("models".to_string(), &self.models),
            ("gallery".to_string(), &self.gallery),
            ("broker".to_string(), &self.broker),
        ];
        let cameras = self.cameras.iter().map(|c| (format!("camera {}", c.name), &c.part));
        named
            .into_iter()
            .chain(cameras)
            .filter(|(_, p)| !p.ready)
            .map(|(name, p)| format!("{name}: {}", p.reason))
            .collect()
    }
}

/// What the endpoints read: the metrics and a hook that reports readiness and brings the
/// mirrored gauges up to date.
pub struct AdminState {
    pub telemetry: Arc<Telemetry>,
    pub probe: Box<dyn Fn() -> Readiness + Send + Sync>,
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let r = (state.probe)();
    let code = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({"ready": r.ready(), "waiting_for": r.not_ready(), "parts": r});
    (code, axum::Json(body))
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (state.probe)();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.telemetry.encode(),
    )
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Binds the listener (so a port conflict is an error at start) and serves until `shutdown`.
pub async fn serve(
    cfg: &AdminConfig,
    state: Arc<AdminState>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let listener = tokio::net::TcpListener::bind(cfg.listen).await.map_err(|e| {
        Error::Environment(format!(
            "admin.listen: cannot listen on {}: {e} (another program holds the port? change admin.listen)",
            cfg.listen
        ))
    })?;
    let app = router(state);
    Ok(tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "admin server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_part_and_says_why() {
        let up = |why: &str| Part::new(true, why);
        let mut r = Readiness {
            models: up("loaded"),
            gallery: up("2 people"),
            broker: up("connected"),
            cameras: vec![CameraPart {
                name: "door".into(),
                part: up("frames flow"),
            }],
        };
        assert!(r.ready());
        r.cameras.push(CameraPart {
            name: "yard".into(),
            part: Part::new(false, "connection refused"),
        });
        assert!(!r.ready());
        r.broker = Part::new(false, "cannot reach 127.0.0.1:1883");
        assert_eq!(
            r.not_ready(),
            ["broker: cannot reach 127.0.0.1:1883", "camera yard: connection refused"]
        );
    }
}
