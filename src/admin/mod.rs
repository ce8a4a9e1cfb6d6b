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

/// What `/ready` reports: every part must be up.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Readiness {
    pub models: bool,
    pub gallery: bool,
    pub broker: bool,
    pub cameras: Vec<(String, bool)>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.not_ready().is_empty()
    }

    /// The parts that are not up: `models`, `gallery`, `broker`, `camera NAME`.
    pub fn not_ready(&self) -> Vec<String> {
        let mut parts: Vec<String> = [
            ("models", self.models),
            ("gallery", self.gallery),
            ("broker", self.broker),
        ]
        .into_iter()
        .filter(|(_, up)| !up)
        .map(|(part, _)| part.to_string())
        .collect();
        parts.extend(
            self.cameras
                .iter()
                .filter(|(_, up)| !up)
                .map(|(name, _)| format!("camera {name}")),
        );
        parts
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
    (code, axum::Json(serde_json::json!({"ready": r.ready(), "parts": r})))
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
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| Error::Config(vec![format!("admin.listen: cannot listen on {}: {e}", cfg.listen)]))?;
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
    fn readiness_needs_every_part() {
        let mut r = Readiness {
            models: true,
            gallery: true,
            broker: true,
            cameras: vec![("door".into(), true)],
        };
        assert!(r.ready());
        r.cameras.push(("yard".into(), false));
        assert!(!r.ready());
        r.broker = false;
        assert_eq!(r.not_ready(), ["broker", "camera yard"]);
    }
}
