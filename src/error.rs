//! The error type of the library and how each kind maps to the CLI's exit status.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable; each entry names the key at fault.
    #[error("invalid configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// An input file cannot be used (missing, unreadable, not an image, truncated).
    #[error("{}: {reason}", path.display())]
    Input { path: PathBuf, reason: String },
    /// The input is readable but holds nothing to work on.
    #[error("{}: no face found", path.display())]
    NoFace { path: PathBuf },
    /// A model file is missing, corrupt or not the model expected.
    #[error("model {}: {reason}", path.display())]
    Model { path: PathBuf, reason: String },
    /// The ONNX Runtime shared library is missing or cannot be loaded.
    #[error("ONNX Runtime library {}: {reason}", path.display())]
    Runtime { path: PathBuf, reason: String },
    /// `device = "cuda"` was asked for and the CUDA execution provider cannot be used.
    #[error("CUDA execution provider unavailable: {0}")]
    CudaUnavailable(String),
    /// `device = "openvino"` was asked for and the OpenVINO execution provider cannot be used.
    #[error("OpenVINO execution provider unavailable: {0}")]
    OpenVinoUnavailable(String),
    /// A request the gallery refuses: duplicate or unknown name, unusable enrollment photo.
    #[error("{0}")]
    Rejected(String),
    /// The gallery database cannot be opened, read or written.
    #[error("gallery {0}")]
    Gallery(String),
    /// A model ran and failed, or gave outputs of the wrong shape.
    #[error("{model} inference failed: {reason}")]
    Inference { model: &'static str, reason: String },
    /// Something outside facegate is not as it must be: a port already in use, a broker
    /// that cannot be reached.
    #[error("{0}")]
    Environment(String),
    /// `verify`: the face is not the claimed person (the result itself is printed).
    #[error("no match")]
    NotVerified,
}

impl Error {
    /// Exit status for the CLI: 1 is `verify`'s "no match", 2 is clap's usage error, so
    /// errors start at 3.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NotVerified => 1,
            Error::Config(_) => 3,
            Error::Input { .. } | Error::NoFace { .. } | Error::Rejected(_) => 4,
            Error::Model { .. } | Error::Runtime { .. } | Error::CudaUnavailable(_) | Error::OpenVinoUnavailable(_) => {
                5
            }
            Error::Inference { .. } => 6,
            Error::Gallery(_) => 7,
            Error::Environment(_) => 8,
        }
    }
}

impl Error {
    /// A short machine name of the kind, for `--json` errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Input { .. } => "input",
            Error::NoFace { .. } => "no_face",
            Error::Model { .. } => "model",
            Error::Runtime { .. } => "runtime",
            Error::CudaUnavailable(_) => "cuda_unavailable",
            Error::OpenVinoUnavailable(_) => "openvino_unavailable",
            Error::Rejected(_) => "rejected",
            Error::Gallery(_) => "gallery",
            Error::Inference { .. } => "inference",
            Error::Environment(_) => "environment",
            Error::NotVerified => "no_match",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
