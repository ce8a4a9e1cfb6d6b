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
    OpenVino,
}

/// Where `models/fetch --cuda` puts ONNX Runtime with the CUDA provider, under the models
/// folder (a test checks it against `models/manifest.toml`).
pub const CUDA_RUNTIME_LIBRARY: &str = "cuda/libonnxruntime.so.1.31.1";

/// Where `models/fetch --openvino` puts ONNX Runtime with the OpenVINO provider, under the
/// models folder (the default of `models.openvino_library`).
pub const OPENVINO_RUNTIME_LIBRARY: &str = "openvino/libonnxruntime.so.1.24.1";

/// The CUDA provider's library, which only the CUDA build of ONNX Runtime has beside it.
const CUDA_PROVIDER_LIBRARY: &str = "libonnxruntime_providers_cuda.so";

/// Which execution provider runs the models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// CUDA when it registers, else OpenVINO on an x86-64 CPU with AVX2 (Intel or AMD) when
    /// its runtime is installed, else CPU (which and why is logged once: at info by the daemon, at debug otherwise).
    #[default]
    Auto,
    Cpu,
    /// ONNX Runtime's OpenVINO provider on the CPU (`models.openvino_library`), or an error.
    #[value(name = "openvino")]
    OpenVino,
    /// CUDA or an error.
    Cuda,
}

/// What the OpenVINO provider computes the detector and the embedder in. The liveness
/// networks always run in FP32: their thresholds were set there (README, "Devices").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Single precision, as the models were trained: the same encodings as the CPU provider.
    #[default]
    Fp32,
    /// bfloat16 inside OpenVINO's CPU plugin where the CPU has it (AVX-512 BF16 or AMX);
    /// a CPU without it computes in FP32 anyway. Measured on the sample photos against
    /// FP32: encodings at cosine ≥ 0.996, boxes at IoU ≥ 0.98, SFace 3.4× faster on a
    /// Xeon with AMX. The CPU and CUDA providers ignore it (they compute in FP32).
    Bf16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// `auto`, `cpu`, `openvino` or `cuda`.
    pub device: Device,
    /// What the OpenVINO provider computes the detector and the embedder in: `fp32` or
    /// `bf16` (see [`Precision`]).
    pub precision: Precision,
    /// Threads ONNX Runtime (and OpenVINO) use inside one operator; 0 lets it pick (one per core).
    pub intra_threads: usize,
    /// Most faces sent to the embedder in one call.
    pub embed_batch: usize,
    /// Let ONNX Runtime's worker threads spin while they wait for work: a little faster on
    /// an idle machine, much slower when video decoding or other programs share the cores.
    pub spin: bool,
    /// Log which device was chosen and why at info rather than debug: the daemon sets it,
    /// one-shot commands do not. Not a configuration key.
    #[serde(skip)]
    pub announce_device: bool,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            device: Device::Auto,
            precision: Precision::Fp32,
            intra_threads: 0,
            embed_batch: 8,
            spin: false,
            announce_device: false,
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
            Device::OpenVino => "openvino",
            Device::Cuda => "cuda",
        }
    }
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::OpenVino => "openvino",
        }
    }
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Provider options for OpenVINO's CPU plugin. The provider's own `precision` accepts
    /// only FP32 (and ACCURACY) on the CPU, so bf16 is asked of the plugin directly, as its
    /// inference precision hint, which takes precedence over the provider's option.
    fn openvino_options(self, ov: ep::OpenVINO) -> ep::OpenVINO {
        use ort::ep::ArbitrarilyConfigurableExecutionProvider;
        match self {
            Precision::Fp32 => ov.with_precision("FP32"),
            Precision::Bf16 => {
                ov.with_arbitrary_config("load_config", r#"{"CPU":{"INFERENCE_PRECISION_HINT":"bf16"}}"#)
            }
        }
    }
}

/// An ONNX Runtime library a `models.*` key names: where it was found, or why not.
#[derive(Debug, Clone)]
pub struct Library {
    /// The key's value, for errors.
    pub configured: PathBuf,
    pub found: Result<PathBuf, String>,
}

/// The ONNX Runtime builds a process can load, one of which it does.
#[derive(Debug, Clone)]
pub struct Libraries {
    /// `models.runtime_library`: the CPU build, or the CUDA build.
    pub runtime: Library,
    /// `models.openvino_library`: the build with the OpenVINO provider.
    pub openvino: Library,
}

/// The library to load and the provider to ask of it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    library: PathBuf,
    provider: Provider,
    /// With `auto`: fall back to CPU on the same library when the provider does not
    /// register. ONNX Runtime is loaded once per process, so there is no other library to
    /// turn to.
    fallback: bool,
    why: String,
}

pub struct Runtime {
    env: Environment,
    cfg: InferenceConfig,
    provider: Provider,
    /// Which device was chosen and why, as logged.
    choice: String,
}

impl Runtime {
    /// Chooses the device, loads the one ONNX Runtime library it needs explicitly (without
    /// this, `ort` would fall back to `ORT_DYLIB_PATH` and panic when that fails) and
    /// settles the execution provider once. `auto` takes CUDA when the CUDA build is
    /// configured and CUDA registers, else OpenVINO on an x86-64 CPU with AVX2 with the
    /// OpenVINO build installed, else CPU; `cuda` and `openvino` fail instead, saying what to install.
    /// The choice and its reason are logged once (see [`InferenceConfig::announce_device`]).
    pub fn load(libraries: &Libraries, cfg: &InferenceConfig) -> Result<Runtime, Error> {
        let cpu = Cpu::this_machine();
        let plan = plan(cfg.device, libraries, &cpu)?;
        let runtime_err = |reason: String| Error::Runtime {
            path: plan.library.clone(),
            reason,
        };
        let builder = ort::init_from(&plan.library).map_err(|e| runtime_err(one_line(&e.to_string())))?;
        let env = builder
            .with_name("facegate")
            .build()
            .map_err(|e| runtime_err(one_line(&e.to_string())))?;
        let mut rt = Runtime {
            env,
            cfg: cfg.clone(),
            provider: plan.provider,
            choice: String::new(),
        };
        let registered = match plan.provider {
            Provider::Cpu => Ok(()),
            Provider::Cuda => rt.cuda_builder().map(drop),
            Provider::OpenVino => rt.openvino_builder(cfg.precision).map(drop),
        };
        rt.choice = match registered {
            Ok(()) => plan.why.clone(),
            Err(reason) if plan.fallback => {
                rt.provider = Provider::Cpu;
                format!(
                    "auto: {} did not register ({reason}), so CPU with {} (one ONNX Runtime per process)",
                    plan.provider.as_str(),
                    plan.library.display()
                )
            }
            Err(reason) if plan.provider == Provider::Cuda => {
                return Err(Error::CudaUnavailable(cuda_advice(&plan.library, &reason)));
            }
            Err(reason) => {
                return Err(Error::OpenVinoUnavailable(format!(
                    "{}: {reason}",
                    plan.library.display()
                )));
            }
        };
        let precision = precision_in_effect(cfg.precision, rt.provider, &cpu);
        if let Err(why) = &precision {
            tracing::warn!(precision = cfg.precision.as_str(), why = %why, "precision not in effect");
        }
        let precision = precision.map_or("fp32", Precision::as_str);
        if cfg.announce_device {
            tracing::info!(device = rt.provider.as_str(), precision, why = %rt.choice, "execution provider");
        } else {
            tracing::debug!(device = rt.provider.as_str(), precision, why = %rt.choice, "execution provider");
        }
        Ok(rt)
    }

    /// Which device runs the models and why, as logged when the runtime was loaded.
    pub fn choice(&self) -> &str {
        &self.choice
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// A session for the model at `path` on the settled provider, in `inference.precision`.
    pub fn session(&self, path: &Path) -> Result<Session, Error> {
        self.session_in(path, self.cfg.precision)
    }

    /// A session that computes in FP32 whatever `inference.precision` says: for models
    /// whose thresholds were set in FP32 (the liveness networks).
    pub fn fp32_session(&self, path: &Path) -> Result<Session, Error> {
        self.session_in(path, Precision::Fp32)
    }

    fn session_in(&self, path: &Path, precision: Precision) -> Result<Session, Error> {
        let model_err = |reason: String| Error::Model {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(model_err("no such file (run models/fetch)".into()));
        }
        let builder = match self.provider {
            Provider::Cuda => self.cuda_builder().map_err(Error::CudaUnavailable)?,
            Provider::OpenVino => self.openvino_builder(precision).map_err(Error::OpenVinoUnavailable)?,
            Provider::Cpu => self.base_builder().map_err(model_err)?,
        };
        let session = commit(builder, path).map_err(model_err)?;
        let precision = match self.provider {
            Provider::OpenVino => precision,
            Provider::Cpu | Provider::Cuda => Precision::Fp32,
        };
        tracing::info!(
            model = %file_name(path),
            provider = self.provider.as_str(),
            precision = precision.as_str(),
            "session ready"
        );
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

    /// OpenVINO on the CPU, in `precision`, with `inference.intra_threads`
    /// threads of its own (OpenVINO runs its own thread pool; left unset, it takes one per
    /// core).
    fn openvino_builder(&self, precision: Precision) -> Result<SessionBuilder, String> {
        let mut ov = precision.openvino_options(ep::OpenVINO::default().with_device_type("CPU"));
        if self.cfg.intra_threads > 0 {
            ov = ov.with_num_threads(self.cfg.intra_threads);
        }
        self.base_builder()?
            .with_execution_providers([ov.build().error_on_failure()])
            .map_err(|e| one_line(&e.to_string()))
    }
}

/// Which library to load and which provider to ask of it, before anything is loaded.
fn plan(device: Device, libs: &Libraries, cpu: &Cpu) -> Result<Plan, Error> {
    let need = |lib: &Library| {
        lib.found.clone().map_err(|reason| Error::Runtime {
            path: lib.configured.clone(),
            reason,
        })
    };
    let fixed = |library, provider, why: &str| Plan {
        library,
        provider,
        fallback: false,
        why: why.to_owned(),
    };
    match device {
        Device::Cpu => Ok(fixed(need(&libs.runtime)?, Provider::Cpu, "inference.device = cpu")),
        Device::Cuda => Ok(fixed(need(&libs.runtime)?, Provider::Cuda, "inference.device = cuda")),
        Device::OpenVino => match &libs.openvino.found {
            Ok(library) => Ok(fixed(
                library.clone(),
                Provider::OpenVino,
                "inference.device = openvino",
            )),
            Err(reason) => Err(Error::OpenVinoUnavailable(format!(
                "the OpenVINO build of ONNX Runtime ({}) is not installed: {reason}",
                libs.openvino.configured.display()
            ))),
        },
        Device::Auto => plan_auto(libs, cpu),
    }
}

/// `auto`: CUDA when the CUDA build is configured; else OpenVINO on an x86-64 CPU with AVX2
/// with the OpenVINO build installed; else CPU. OpenVINO's CPU plugin is Intel's, but it
/// runs on AMD's x86-64 CPUs too, and there it was measured faster as well: SFace 10.3
/// against 19.1 ms per face on a 2-core AMD EPYC (AVX2, no AVX-512), 2 threads.
fn plan_auto(libs: &Libraries, cpu: &Cpu) -> Result<Plan, Error> {
    let cuda_build = libs.runtime.found.as_ref().is_ok_and(|l| is_cuda_build(l));
    if let (true, Ok(library)) = (cuda_build, &libs.runtime.found) {
        return Ok(Plan {
            library: library.clone(),
            provider: Provider::Cuda,
            fallback: true,
            why: "auto: the CUDA build of ONNX Runtime is configured and CUDA registered".into(),
        });
    }
    let no_cuda = "models.runtime_library is not the CUDA build of ONNX Runtime";
    let vendor = cpu.vendor.as_deref().unwrap_or("vendor unknown");
    let not_openvino = match (&libs.openvino.found, cpu.avx2) {
        (Ok(library), true) => {
            return Ok(Plan {
                library: library.clone(),
                provider: Provider::OpenVino,
                fallback: true,
                why: format!(
                    "auto: an x86-64 CPU with AVX2 ({vendor}) and the OpenVINO build of ONNX Runtime installed ({no_cuda})"
                ),
            });
        }
        (_, false) => format!("the CPU has no AVX2 ({vendor}), which OpenVINO's CPU plugin needs"),
        (Err(_), true) => "the OpenVINO build of ONNX Runtime is not installed (models/fetch --openvino)".into(),
    };
    let library = libs.runtime.found.clone().map_err(|reason| Error::Runtime {
        path: libs.runtime.configured.clone(),
        reason,
    })?;
    Ok(Plan {
        library,
        provider: Provider::Cpu,
        fallback: false,
        why: format!("auto: {no_cuda} and {not_openvino}"),
    })
}

/// The precision the detector and the embedder will compute in, or why `asked` will not
/// be (the computation is then FP32).
fn precision_in_effect(asked: Precision, provider: Provider, cpu: &Cpu) -> Result<Precision, String> {
    match (asked, provider) {
        (Precision::Fp32, _) => Ok(Precision::Fp32),
        (Precision::Bf16, Provider::OpenVino) if cpu.bf16 => Ok(Precision::Bf16),
        (Precision::Bf16, Provider::OpenVino) => Err(format!(
            "this CPU ({}) has neither AVX-512 BF16 nor AMX, so OpenVINO computes in fp32",
            cpu.vendor.as_deref().unwrap_or("vendor unknown")
        )),
        (Precision::Bf16, other) => Err(format!(
            "bf16 is the OpenVINO provider's; the {} provider computes in fp32",
            other.as_str()
        )),
    }
}

/// What `auto` and the precision need to know of the CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpu {
    /// The vendor string (`GenuineIntel`, `AuthenticAMD`, …), when known.
    pub vendor: Option<String>,
    /// Whether the CPU is x86-64 with AVX2.
    pub avx2: bool,
    /// Whether the CPU computes in bfloat16 (AVX-512 BF16 or AMX BF16).
    pub bf16: bool,
}

impl Cpu {
    /// This machine's, from /proc/cpuinfo (nothing known where it cannot be read).
    pub fn this_machine() -> Cpu {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Cpu::from_cpuinfo(&info)
    }

    /// From the text of /proc/cpuinfo (its first processor's `vendor_id` and `flags`).
    pub fn from_cpuinfo(info: &str) -> Cpu {
        let field = |name: &str| {
            info.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_owned())
            })
        };
        let flags = field("flags").unwrap_or_default();
        let has = |flag: &str| cfg!(target_arch = "x86_64") && flags.split_whitespace().any(|x| x == flag);
        Cpu {
            vendor: field("vendor_id"),
            avx2: has("avx2"),
            bf16: has("avx512_bf16") || has("amx_bf16"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn found(path: &str) -> Library {
        Library {
            configured: PathBuf::from(path),
            found: Ok(PathBuf::from(path)),
        }
    }

    fn missing(path: &str) -> Library {
        Library {
            configured: PathBuf::from(path),
            found: Err("no such file (run models/fetch --openvino, or set models.dir)".into()),
        }
    }

    fn both() -> Libraries {
        Libraries {
            runtime: found("/m/libonnxruntime.so"),
            openvino: found("/m/openvino/libonnxruntime.so.1.24.1"),
        }
    }

    fn cpu(vendor: &str, avx2: bool) -> Cpu {
        Cpu {
            vendor: Some(vendor.into()),
            avx2,
            bf16: false,
        }
    }

    #[test]
    fn a_named_device_loads_its_own_build() {
        let p = plan(Device::Cpu, &both(), &cpu("GenuineIntel", true)).unwrap();
        assert_eq!(
            (p.library.to_str(), p.provider, p.fallback),
            (Some("/m/libonnxruntime.so"), Provider::Cpu, false)
        );
        let p = plan(Device::OpenVino, &both(), &cpu("AuthenticAMD", false)).unwrap();
        assert_eq!(p.library, PathBuf::from("/m/openvino/libonnxruntime.so.1.24.1"));
        assert_eq!((p.provider, p.fallback), (Provider::OpenVino, false));
        let p = plan(Device::Cuda, &both(), &Cpu::default()).unwrap();
        assert_eq!((p.provider, p.fallback), (Provider::Cuda, false));
    }

    #[test]
    fn openvino_without_its_build_says_what_to_fetch() {
        let libs = Libraries {
            openvino: missing("openvino/libonnxruntime.so.1.24.1"),
            ..both()
        };
        let e = plan(Device::OpenVino, &libs, &cpu("GenuineIntel", true)).unwrap_err();
        assert_eq!(e.exit_code(), 5);
        let text = e.to_string();
        assert!(
            text.contains("models/fetch --openvino") && !text.contains('\n'),
            "{text}"
        );
    }

    #[test]
    fn auto_takes_openvino_on_avx2_cpus_only_when_it_is_installed() {
        for vendor in ["GenuineIntel", "AuthenticAMD"] {
            let p = plan(Device::Auto, &both(), &cpu(vendor, true)).unwrap();
            assert_eq!((p.provider, p.fallback), (Provider::OpenVino, true));
            assert!(p.why.contains(&format!("AVX2 ({vendor})")), "{}", p.why);
        }

        let p = plan(Device::Auto, &both(), &cpu("GenuineIntel", false)).unwrap();
        assert_eq!(
            (p.library.to_str(), p.provider),
            (Some("/m/libonnxruntime.so"), Provider::Cpu)
        );
        assert!(p.why.contains("no AVX2 (GenuineIntel)"), "{}", p.why);

        let libs = Libraries {
            openvino: missing("openvino/libonnxruntime.so.1.24.1"),
            ..both()
        };
        let p = plan(Device::Auto, &libs, &cpu("GenuineIntel", true)).unwrap();
        assert_eq!(p.provider, Provider::Cpu);
        assert!(p.why.contains("models/fetch --openvino"), "{}", p.why);
    }

    #[test]
    fn auto_tries_cuda_first_when_the_cuda_build_is_configured() {
        let dir = std::env::temp_dir().join(format!("facegate-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CUDA_PROVIDER_LIBRARY), b"").unwrap();
        let cuda = dir.join("libonnxruntime.so.1.31.1");
        let libs = Libraries {
            runtime: found(cuda.to_str().unwrap()),
            ..both()
        };
        let p = plan(Device::Auto, &libs, &cpu("GenuineIntel", true)).unwrap();
        assert_eq!((p.library, p.provider, p.fallback), (cuda, Provider::Cuda, true));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_cpu_is_read_from_cpuinfo() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\n";
        assert_eq!(
            Cpu::from_cpuinfo(info),
            cpu("AuthenticAMD", cfg!(target_arch = "x86_64"))
        );
        let old = "vendor_id : GenuineIntel\nflags : fpu sse2 avx\n";
        assert_eq!(Cpu::from_cpuinfo(old), cpu("GenuineIntel", false));
        assert_eq!(Cpu::from_cpuinfo(""), Cpu::default());
        let amx = "vendor_id : GenuineIntel\nflags : avx2 avx512f amx_bf16 amx_tile\n";
        let zen4 = "vendor_id : AuthenticAMD\nflags : avx2 avx512f avx512_bf16\n";
        for with_bf16 in [amx, zen4] {
            assert_eq!(
                Cpu::from_cpuinfo(with_bf16).bf16,
                cfg!(target_arch = "x86_64"),
                "{with_bf16}"
            );
        }
        assert!(!Cpu::from_cpuinfo(info).bf16, "AVX2 alone is not bf16");
        if Path::new("/proc/cpuinfo").is_file() && cfg!(target_arch = "x86_64") {
            assert!(Cpu::this_machine().vendor.is_some_and(|v| !v.is_empty()));
        }
    }

    #[test]
    fn bf16_is_in_effect_only_on_openvino_with_a_bf16_cpu() {
        let with_bf16 = Cpu {
            bf16: true,
            ..cpu("GenuineIntel", true)
        };
        let without = cpu("AuthenticAMD", true);
        for provider in [Provider::Cpu, Provider::OpenVino, Provider::Cuda] {
            assert_eq!(
                precision_in_effect(Precision::Fp32, provider, &without),
                Ok(Precision::Fp32)
            );
        }
        assert_eq!(
            precision_in_effect(Precision::Bf16, Provider::OpenVino, &with_bf16),
            Ok(Precision::Bf16)
        );
        let why = precision_in_effect(Precision::Bf16, Provider::OpenVino, &without).unwrap_err();
        assert!(
            why.contains("neither AVX-512 BF16 nor AMX") && why.contains("AuthenticAMD"),
            "{why}"
        );
        let why = precision_in_effect(Precision::Bf16, Provider::Cpu, &with_bf16).unwrap_err();
        assert!(why.contains("the cpu provider computes in fp32"), "{why}");
    }
}
