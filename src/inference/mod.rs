//! The ONNX Runtime environment: loading the shared library, choosing the execution
//! provider, and building one session per model.

use std::path::{Path, PathBuf};

use ort::environment::Environment;
use ort::ep;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

use crate::error::Error;
use serde::{Deserialize, Serialize};

/// The execution provider a session ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
}

/// Where `models/fetch --cuda` puts ONNX Runtime with the CUDA provider, under the models
/// folder (a test checks it against `models/manifest.toml`).
pub const CUDA_RUNTIME_LIBRARY: &str = "cuda/libonnxruntime.so.1.31.1";

/// The CUDA provider's library, which only the CUDA build of ONNX Runtime has beside it.
const CUDA_PROVIDER_LIBRARY: &str = "libonnxruntime_providers_cuda.so";

/// Which execution provider runs the models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// CUDA when it registers, otherwise CPU (why is logged at debug level, and the daemon
    /// says it once when it starts).
    #[default]
    Auto,
    Cpu,
    /// CUDA or an error.
    Cuda,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// `auto`, `cpu` or `cuda`.
    pub device: Device,
    /// Threads ONNX Runtime uses inside one operator; 0 lets it pick (one per core).
    pub intra_threads: usize,
    /// Most faces sent to the embedder in one call.
    pub embed_batch: usize,
    /// Let ONNX Runtime's worker threads spin while they wait for work: a little faster on
    /// an idle machine, much slower when video decoding or other programs share the cores.
    pub spin: bool,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            device: Device::Auto,
            intra_threads: 0,
            embed_batch: 8,
            spin: false,
        }
    }
}

impl InferenceConfig {
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.embed_batch == 0 {
            p.push(format!("{prefix}.embed_batch: must be at least 1"));
        }
        p
    }
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Auto => "auto",
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
        }
    }
}

pub struct Runtime {
    env: Environment,
    cfg: InferenceConfig,
    provider: Provider,
    /// Why `auto` settled on CPU, when it tried CUDA.
    cuda_fallback: Option<String>,
}

impl Runtime {
    /// Loads ONNX Runtime from `library` explicitly (without this, `ort` would fall back to
    /// `ORT_DYLIB_PATH` and panic when that fails) and settles the execution provider once:
    /// `auto` tries CUDA and falls back to CPU, logging why at debug level only (a CPU-only
    /// box is normal; the caller decides whether to say so, see [`Runtime::cuda_fallback`]);
    /// `cuda` fails instead, saying what to install.
    pub fn load(library: &Path, cfg: &InferenceConfig) -> Result<Runtime, Error> {
        let runtime_err = |reason: String| Error::Runtime {
            path: library.to_path_buf(),
            reason,
        };
        if !library.is_file() {
            return Err(runtime_err(
                "no such file (run models/fetch, or set models.runtime_library)".into(),
            ));
        }
        let builder = ort::init_from(library).map_err(|e| runtime_err(one_line(&e.to_string())))?;
        let env = builder
            .with_name("facegate")
            .build()
            .map_err(|e| runtime_err(one_line(&e.to_string())))?;
        let mut rt = Runtime {
            env,
            cfg: cfg.clone(),
            provider: Provider::Cpu,
            cuda_fallback: None,
        };
        rt.provider = match cfg.device {
            Device::Cpu => Provider::Cpu,
            Device::Cuda => {
                rt.cuda_builder()
                    .map_err(|reason| Error::CudaUnavailable(cuda_advice(library, &reason)))?;
                Provider::Cuda
            }
            Device::Auto => match rt.cuda_builder() {
                Ok(_) => Provider::Cuda,
                Err(reason) => {
                    tracing::debug!(%reason, "CUDA unavailable, running on CPU");
                    rt.cuda_fallback = Some(reason);
                    Provider::Cpu
                }
            },
        };
        Ok(rt)
    }

    /// Why `device = "auto"` runs on CPU, when it tried CUDA and could not use it.
    pub fn cuda_fallback(&self) -> Option<&str> {
        self.cuda_fallback.as_deref()
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// A session for the model at `path` on the settled provider.
    pub fn session(&self, path: &Path) -> Result<Session, Error> {
        let model_err = |reason: String| Error::Model {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(model_err("no such file (run models/fetch)".into()));
        }
        let builder = match self.provider {
            Provider::Cuda => self.cuda_builder().map_err(Error::CudaUnavailable)?,
            Provider::Cpu => self.base_builder().map_err(model_err)?,
        };
        let session = commit(builder, path).map_err(model_err)?;
        tracing::info!(model = %file_name(path), provider = self.provider.as_str(), "session ready");
        Ok(session)
    }

    fn base_builder(&self) -> Result<SessionBuilder, String> {
        let b = Session::builder(&self.env).map_err(|e| e.to_string())?;
        let b = b
            .with_optimization_level(GraphOptimizationLevel::All)
            .and_then(|b| b.with_intra_op_spinning(self.cfg.spin))
            .and_then(|b| b.with_inter_op_spinning(self.cfg.spin))
            .map_err(|e| e.to_string())?;
        if self.cfg.intra_threads > 0 {
            b.with_intra_threads(self.cfg.intra_threads).map_err(|e| e.to_string())
        } else {
            Ok(b)
        }
    }

    fn cuda_builder(&self) -> Result<SessionBuilder, String> {
        self.base_builder()?
            .with_execution_providers([ep::CUDA::default().build().error_on_failure()])
            .map_err(|e| one_line(&e.to_string()))
    }
}

/// What to do when CUDA was demanded and does not register: the CPU build of ONNX Runtime
/// has no CUDA provider at all (fetch the CUDA build); the CUDA build without a usable GPU
/// or CUDA libraries needs the system fixed.
fn cuda_advice(library: &Path, reason: &str) -> String {
    if is_cuda_build(library) {
        format!(
            "{reason}; the CUDA build of ONNX Runtime is in use, so check the NVIDIA driver and the CUDA 13 and cuDNN 9 libraries (models/manifest.toml lists them), or use --device auto"
        )
    } else {
        format!(
            "{} is the CPU build of ONNX Runtime; {} (or use --device auto or cpu) [{reason}]",
            library.display(),
            cuda_runtime_advice()
        )
    }
}

/// Whether the ONNX Runtime at `library` is a build with the CUDA provider: only that one
/// comes with the provider's library beside it.
pub fn is_cuda_build(library: &Path) -> bool {
    library
        .parent()
        .unwrap_or(Path::new("."))
        .join(CUDA_PROVIDER_LIBRARY)
        .is_file()
}

/// What `device = "cuda"` needs when the runtime is the CPU build.
pub fn cuda_runtime_advice() -> String {
    format!("run models/fetch --cuda and set models.runtime_library = \"{CUDA_RUNTIME_LIBRARY}\"")
}

/// ONNX Runtime's messages can span lines; errors are one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn commit(mut builder: SessionBuilder, path: &Path) -> Result<Session, String> {
    builder.commit_from_file(path).map_err(|e| e.to_string())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| PathBuf::from(path).display().to_string())
}
