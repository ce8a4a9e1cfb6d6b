//! Face vision: detection, alignment and embedding. The maths are pure functions that the
//! unit tests exercise without models; the model wrappers are thin.

pub mod align;
pub mod detector;
pub mod embedder;
pub mod geometry;
pub mod image_io;
pub mod liveness;
pub mod quality;
pub mod resize;
pub mod similarity;
