//! Health of the running daemon: what `/ready` reports, and what systemd is told
//! (READY, WATCHDOG keep-alives, STOPPING).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::CameraHandle;
use super::build::RECOGNITION;
use crate::admin::{CameraPart, Part, Readiness};
use crate::events::Publisher;
use crate::recognition::WorkerHealth;
use crate::telemetry::Telemetry;
use crate::video::{CameraStats, FrameBus};

/// Reads every part's state for `/ready`, and brings the gauges that mirror other state
/// up to date (it runs before every scrape).
pub(crate) struct HealthProbe {
    worker: Arc<WorkerHealth>,
    publisher: Publisher,
    broker: String,
    cameras: Vec<(String, Arc<CameraStats>, Arc<FrameBus>)>,
    camera_notes: CameraNotes,
    telemetry: Arc<Telemetry>,
}

/// Each camera's last reported problem, for `/ready`.
pub(crate) type CameraNotes = Arc<Mutex<HashMap<String, String>>>;

impl HealthProbe {
    pub fn new(
        worker: Arc<WorkerHealth>,
        publisher: Publisher,
        broker: String,
        cameras: &[CameraHandle],
        camera_notes: CameraNotes,
        telemetry: Arc<Telemetry>,
    ) -> HealthProbe {
        HealthProbe {
            worker,
            publisher,
            broker,
            camera_notes,
            cameras: cameras
                .iter()
                .map(|c| (c.name.clone(), c.stats.clone(), c.bus.clone()))
                .collect(),
            telemetry,
        }
    }

    pub fn readiness(&self) -> Readiness {
        let t = &self.telemetry;
        t.outbox_depth.set(self.publisher.outbox_depth() as i64);
        t.broker_connected.set(self.publisher.connected() as i64);
        let notes = self.camera_notes.lock().unwrap_or_else(|e| e.into_inner());
        let mut cameras = Vec::with_capacity(self.cameras.len());
        for (name, stats, bus) in &self.cameras {
            let depth = bus.queue_depth(RECOGNITION).unwrap_or(0);
            t.queue_depth
                .get_or_create(&Telemetry::consumer(name, RECOGNITION))
                .set(depth as i64);
            let online = stats.online.get() == 1;
            let reason = match (online, notes.get(name)) {
                (true, _) => "frames flow".to_string(),
                (false, Some(why)) => why.clone(),
                (false, None) => "starting".to_string(),
            };
            cameras.push(CameraPart {
                name: name.clone(),
                part: Part::new(online, reason),
            });
        }
        let connected = self.publisher.connected();
        let broker = if connected {
            format!("connected to {}", self.broker)
        } else {
            format!("not connected to {} (retrying)", self.broker)
        };
        Readiness {
            models: Part::new(
                self.worker.models_loaded.load(Ordering::Relaxed),
                WorkerHealth::read(&self.worker.models_note),
            ),
            gallery: Part::new(
                self.worker.gallery_open.load(Ordering::Relaxed),
                WorkerHealth::read(&self.worker.gallery_note),
            ),
            broker: Part::new(connected, broker),
            cameras,
        }
    }
}

/// What systemd is told, when it watches this process (`Type=notify`, `WatchdogSec`).
pub(crate) struct Systemd {
    started: Instant,
    ready_timeout: Duration,
    notified_ready: bool,
    watchdog: Option<Duration>,
    stalled: bool,
}

impl Systemd {
    pub fn new(ready_timeout: Duration) -> Systemd {
        Systemd {
            started: Instant::now(),
            ready_timeout,
            notified_ready: false,
            watchdog: watchdog_interval(),
            stalled: false,
        }
    }

    /// How often [`Systemd::on_tick`] should run: four times per watchdog period.
    pub fn tick_interval(&self) -> Duration {
        self.watchdog
            .map_or(Duration::from_millis(500), |w| w / 4)
            .min(Duration::from_millis(500))
    }

    pub fn on_tick(&mut self, readiness: &Readiness, worker: &WorkerHealth) {
        if !self.notified_ready {
            self.maybe_ready(readiness);
        }
        if let Some(interval) = self.watchdog {
            // Fed while the recognition worker goes round its loop (it has a heartbeat when
            // idle); loading the models has no beat, and no watchdog yet either.
            let alive = !worker.loaded() || worker.since_beat() < interval / 2;
            if alive {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            } else if !self.stalled {
                tracing::error!(
                    stalled_s = worker.since_beat().as_secs(),
                    "the recognition worker is stuck: no more watchdog keep-alives"
                );
            }
            self.stalled = !alive;
        }
    }

    /// READY once `/ready` says so, or, once the models and the gallery are loaded, after
    /// `ready_timeout`: a camera or a broker that is down must not keep the service from
    /// starting (systemd would kill it) and the working cameras idle.
    fn maybe_ready(&mut self, r: &Readiness) {
        let timed_out = r.models.ready && r.gallery.ready && self.started.elapsed() >= self.ready_timeout;
        if r.ready() {
            tracing::info!("ready");
        } else if timed_out {
            tracing::warn!(
                waiting_for = %r.not_ready().join("; "),
                "started without every part ready (/ready says which); they are retried in the background"
            );
        }
        if r.ready() || timed_out {
            self.notified_ready = true;
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        }
    }

    pub fn stopping() {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    }
}

/// systemd's `WatchdogSec`, when it watches this process.
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec))
    } else {
        None
    }
}
