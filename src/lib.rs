//! facegate: face recognition for door cameras and edge boxes.

pub mod bench;
pub mod bench_gallery;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod gallery;
pub mod inference;
pub mod vision;

pub use error::{Error, Result};
