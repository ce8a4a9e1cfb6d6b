//! Hardware decoding: NVIDIA's NVDEC through GStreamer's nvcodec plugin (`nvh264dec`,
//! `nvh265dec`, …, in gstreamer1.0-plugins-bad when built with CUDA). decodebin picks a
//! decoder by rank; these are ranked below the software decoders in some GStreamer
//! releases, so when the models run on CUDA the daemon raises them above, and every camera
//! pipeline then decodes on the GPU — at 100 cameras a box's CPU cannot decode them all.
//! The frames still come to system memory (and become RGB only when a consumer admits
//! them, `pipeline.rs`): the networks' input tensors are host buffers either way.

use serde::{Deserialize, Serialize};

/// The NVDEC decoders of the nvcodec plugin, one per codec.
pub const NVDEC_DECODERS: &[&str] = &["nvh264dec", "nvh265dec", "nvav1dec", "nvvp9dec", "nvvp8dec"];

/// `daemon.hardware_decoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HardwareDecoding {
    /// NVDEC when GStreamer has its decoders and the models run on CUDA.
    #[default]
    Auto,
    /// Always the software decoders.
    Off,
}

impl HardwareDecoding {
    pub fn as_str(self) -> &'static str {
        match self {
            HardwareDecoding::Auto => "auto",
            HardwareDecoding::Off => "off",
        }
    }
}

/// Which of `available` decoders to prefer, given the setting and whether inference runs on
/// CUDA: NVDEC only where both the GPU path and the decoders are there.
pub fn nvdec_choice<'a>(setting: HardwareDecoding, on_cuda: bool, available: &[&'a str]) -> Vec<&'a str> {
    if setting == HardwareDecoding::Off || !on_cuda {
        return Vec::new();
    }
    available
        .iter()
        .copied()
        .filter(|name| NVDEC_DECODERS.contains(name))
        .collect()
}

/// Raises the chosen NVDEC decoders above every software decoder so that decodebin picks
/// them; returns their names (none: decoding stays on the CPU). GStreamer must be
/// initialised.
pub fn prefer_nvdec(setting: HardwareDecoding, on_cuda: bool) -> Vec<String> {
    use gstreamer::prelude::*;
    let present: Vec<&str> = NVDEC_DECODERS
        .iter()
        .copied()
        .filter(|name| gstreamer::ElementFactory::find(name).is_some())
        .collect();
    let chosen = nvdec_choice(setting, on_cuda, &present);
    for name in &chosen {
        if let Some(factory) = gstreamer::ElementFactory::find(name) {
            factory.set_rank(gstreamer::Rank::PRIMARY + 10);
        }
    }
    chosen.into_iter().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvdec_only_on_cuda_with_the_decoders_present_and_not_off() {
        let present = ["nvh264dec", "nvh265dec", "avdec_h264"];
        assert_eq!(
            nvdec_choice(HardwareDecoding::Auto, true, &present),
            vec!["nvh264dec", "nvh265dec"]
        );
        assert!(
            nvdec_choice(HardwareDecoding::Auto, false, &present).is_empty(),
            "CPU inference"
        );
        assert!(
            nvdec_choice(HardwareDecoding::Off, true, &present).is_empty(),
            "turned off"
        );
        assert!(
            nvdec_choice(HardwareDecoding::Auto, true, &["avdec_h264"]).is_empty(),
            "no nvcodec"
        );
    }
}
