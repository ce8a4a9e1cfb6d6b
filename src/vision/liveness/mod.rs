//! Liveness: evidence that a face in front of the camera is a live person and not a photo
//! or a screen. No single open model is a trustworthy presentation-attack detector, so
//! liveness is gathered over a track from independent cues and fused:
//! - [`cnn`]: a passive CNN (Silent-Face MiniFASNet) that sees recapture artefacts;
//! - [`pulse`]: the blood-volume pulse in the skin's colour (rPPG);
//! - [`motion`]: whether the face moves as a flat plane (a photo) or as a 3-D face;
//!
//! and [`fusion`] turns the cues with enough evidence into one score and verdict.

pub mod cnn;
pub mod fusion;
pub mod motion;
pub mod pulse;
