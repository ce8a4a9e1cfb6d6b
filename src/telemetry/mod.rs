//! Telemetry in one place: internal events that log and count together ([`events`]), and
//! the one metrics registry ([`Telemetry`]) that `/metrics`, `{prefix}/stats` and the run
//! report read.

pub mod events;
pub mod registry;

pub use events::InternalEvent;
pub use registry::Telemetry;
