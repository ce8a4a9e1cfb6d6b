//! Liveness cue: cnn (see the module above).
