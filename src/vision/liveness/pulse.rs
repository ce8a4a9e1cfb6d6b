//! Liveness cue: pulse (see the module above).
