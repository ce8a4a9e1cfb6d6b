//! Liveness cue: motion (see the module above).
