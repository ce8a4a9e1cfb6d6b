//! facegate: face recognition for door cameras and edge boxes.

pub mod admin;
pub mod app;
pub mod backoff;
pub mod bench;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod events;
pub mod gallery;
pub mod inference;
pub mod recognition;
pub mod telemetry;
pub mod track;
pub mod video;
pub mod vision;

pub use error::{Error, Result};
