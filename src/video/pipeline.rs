//! Building one camera pipeline and delivering its frames.
//!
//! `source → (decodebin) → videoconvert → capsfilter RGB → appsink`. The appsink callback
//! runs on GStreamer's streaming thread: it never panics, hands each frame to the camera's
//! [`FrameBus`], never blocks on a paced source, and on a replay waits for a consumer's
//! queue only until the session is cancelled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use tokio_util::sync::CancellationToken;

use super::bus::FrameBus;
use super::config::CameraConfig;
use super::decimator::PtsClock;
use super::source::SourceKind;
use super::{CameraStats, Frame, VideoError, make_element};

/// Frame numbering and timestamp state that outlives one pipeline: a camera's `seq` and
/// `pts_ms` keep going across loops and restarts. (Each consumer's decimator lives in the
/// bus, which outlives the pipelines too.)
#[derive(Debug, Default)]
pub(crate) struct FrameTiming {
    pub next_seq: u64,
    pub clock: PtsClock,
}

/// What the streaming thread tells the supervisor about one pipeline run.
#[derive(Debug)]
pub(crate) struct SessionSignals {
    pub started: Instant,
    frames: AtomicU64,
    /// Milliseconds from `started` to the first frame, plus one; 0 = none yet.
    first_frame_ms: AtomicU64,
    /// Milliseconds from `started` to the latest frame, plus one; 0 = none yet.
    last_frame_ms: AtomicU64,
}

impl SessionSignals {
    pub fn new() -> SessionSignals {
        SessionSignals {
            started: Instant::now(),
            frames: AtomicU64::new(0),
            first_frame_ms: AtomicU64::new(0),
            last_frame_ms: AtomicU64::new(0),
        }
    }

    fn mark_frame(&self, at: Instant) {
        let ms = at.duration_since(self.started).as_millis() as u64 + 1;
        if self.frames.fetch_add(1, Ordering::Relaxed) == 0 {
            self.first_frame_ms.store(ms, Ordering::Relaxed);
        }
        self.last_frame_ms.store(ms, Ordering::Relaxed);
    }

    fn instant(&self, stored: u64) -> Option<Instant> {
        (stored > 0).then(|| self.started + std::time::Duration::from_millis(stored - 1))
    }

    pub fn first_frame(&self) -> Option<Instant> {
        self.instant(self.first_frame_ms.load(Ordering::Relaxed))
    }

    pub fn last_frame(&self) -> Option<Instant> {
        self.instant(self.last_frame_ms.load(Ordering::Relaxed))
    }
}

/// Everything the appsink callback needs, moved onto the streaming thread.
pub(crate) struct Delivery {
    pub camera: Arc<str>,
    /// Paced sources never wait for a consumer; replays wait for `Block` consumers.
    pub paced: bool,
    pub bus: Arc<FrameBus>,
    pub stats: Arc<CameraStats>,
    pub timing: Arc<Mutex<FrameTiming>>,
    pub signals: Arc<SessionSignals>,
    /// Cancelled when the supervisor tears the pipeline down: stops a waiting replay.
    pub cancel: CancellationToken,
    /// Video layout of the current caps, cached until the caps change.
    pub layout: Option<(gst::Caps, gst_video::VideoInfo)>,
}

impl Delivery {
    fn on_sample(&mut self, sink: &gst_app::AppSink) -> Result<gst::FlowSuccess, gst::FlowError> {
        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
        let captured = Instant::now();
        self.stats.frames_decoded.inc();
        self.signals.mark_frame(captured);

        let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
        let raw_ns = stream_time_ns(&sample, buffer)
            .unwrap_or_else(|| captured.duration_since(self.signals.started).as_nanos() as u64);
        let duration_ns = buffer.duration().map(|d| d.nseconds());

        let (seq, pts_ns) = {
            let Ok(mut t) = self.timing.lock() else {
                return Err(gst::FlowError::Error);
            };
            let seq = t.next_seq;
            t.next_seq += 1;
            (seq, t.clock.map(raw_ns, duration_ns))
        };
        // Convert only frames some consumer wants, and only once for all of them.
        let admitted = self.bus.admit(pts_ns);
        if admitted.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let image = match to_rgb(&mut self.layout, &sample, buffer) {
            Ok(img) => img,
            Err(msg) => {
                admitted.discard();
                gst::element_error!(sink, gst::StreamError::Format, ("{}", msg));
                return Err(gst::FlowError::Error);
            }
        };
        let frame = Frame {
            camera: self.camera.clone(),
            seq,
            pts_ms: (pts_ns / 1_000_000) as i64,
            image: Arc::new(image),
            captured,
        };
        match self.bus.deliver(admitted, frame, self.paced, &self.cancel) {
            Ok(()) => Ok(gst::FlowSuccess::Ok),
            Err(_) => Err(gst::FlowError::Flushing),
        }
    }
}

/// Copies the frame into a tight RGB image, row by row (GStreamer pads rows to a stride).
fn to_rgb(
    layout: &mut Option<(gst::Caps, gst_video::VideoInfo)>,
    sample: &gst::Sample,
    buffer: &gst::BufferRef,
) -> Result<image::RgbImage, String> {
    let caps = sample.caps().ok_or("sample without caps")?;
    if layout.as_ref().is_none_or(|(cached, _)| cached.as_ref() != caps) {
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| format!("unusable caps {caps}: {e}"))?;
        *layout = Some((caps.to_owned(), info));
    }
    let Some((_, info)) = layout.as_ref() else {
        return Err("no video layout".into());
    };
    if info.format() != gst_video::VideoFormat::Rgb {
        return Err(format!("expected RGB frames, got {:?}", info.format()));
    }
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)
        .map_err(|_| "cannot map the video buffer".to_string())?;
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.plane_stride()[0] as usize;
    let data = frame
        .plane_data(0)
        .map_err(|e| format!("cannot read the video plane: {e}"))?;
    let row = w * 3;
    if stride < row || data.len() < stride * (h.saturating_sub(1)) + row {
        return Err(format!(
            "video plane too small: {} bytes for {w}x{h}, stride {stride}",
            data.len()
        ));
    }
    let mut pixels = Vec::with_capacity(row * h);
    for y in 0..h {
        pixels.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    image::RgbImage::from_raw(w as u32, h as u32, pixels).ok_or_else(|| "image size mismatch".to_string())
}

/// The buffer's timestamp as a position in the stream (for files: the position in the file).
fn stream_time_ns(sample: &gst::Sample, buffer: &gst::BufferRef) -> Option<u64> {
    let pts = buffer.pts()?;
    let stream = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
        .and_then(|s| s.to_stream_time(pts));
    Some(stream.unwrap_or(pts).nseconds())
}

/// Builds the pipeline of one camera; it is returned in state NULL.
pub(crate) fn build(cfg: &CameraConfig, source: &SourceKind, delivery: Delivery) -> Result<gst::Pipeline, VideoError> {
    let paced = delivery.paced;
    let pipeline = gst::Pipeline::with_name(&format!("camera-{}", cfg.name));
    let convert = make_element("videoconvert")?;
    let filter = make_element("capsfilter")?;
    let rgb = gst_video::VideoCapsBuilder::new()
        .format(gst_video::VideoFormat::Rgb)
        .build();
    filter.set_property("caps", &rgb);

    // Paced sources already run at their own rate: sync only where the pipeline must pace
    // itself (a realtime file, or an http/other URI that may be a file).
    let sync = match source {
        SourceKind::Rtsp { .. } | SourceKind::V4l2 { .. } => false,
        SourceKind::File { .. } => paced,
        SourceKind::Uri { .. } => true,
    };
    let mut delivery = delivery;
    let callbacks = gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| delivery.on_sample(sink))
        .build();
    let builder = gst_app::AppSink::builder().sync(sync).enable_last_sample(false);
    let appsink = if paced {
        builder.max_buffers(1).drop(true)
    } else {
        builder.max_buffers(2).drop(false)
    }
    .callbacks(callbacks)
    .build();

    pipeline
        .add_many([&convert, &filter, appsink.upcast_ref::<gst::Element>()])
        .map_err(|e| VideoError::Build(e.to_string()))?;
    gst::Element::link_many([&convert, &filter, appsink.upcast_ref::<gst::Element>()])
        .map_err(|e| VideoError::Build(e.to_string()))?;

    match source {
        SourceKind::Rtsp { url } => {
            let src = make_element("rtspsrc")?;
            src.set_property("location", url);
            src.set_property("latency", cfg.latency_ms);
            if let Some(protocols) = cfg.transport.rtspsrc_protocols() {
                src.set_property_from_str("protocols", protocols);
            }
            // Give up a stalled TCP connection at the frame timeout, not rtspsrc's 20 s.
            src.set_property("tcp-timeout", cfg.frame_timeout_ms.saturating_mul(1000));
            let decode = make_element("decodebin")?;
            pipeline
                .add_many([&src, &decode])
                .map_err(|e| VideoError::Build(e.to_string()))?;
            let decode_weak = decode.downgrade();
            src.connect_pad_added(move |_, pad| {
                if let Some(decode) = decode_weak.upgrade() {
                    link_rtp_pad(pad, &decode);
                }
            });
            connect_decoded_pads(&decode, &convert);
        }
        SourceKind::V4l2 { device } => {
            let src = make_element("v4l2src")?;
            src.set_property("device", device);
            let decode = make_element("decodebin")?;
            pipeline
                .add_many([&src, &decode])
                .map_err(|e| VideoError::Build(e.to_string()))?;
            src.link(&decode).map_err(|e| VideoError::Build(e.to_string()))?;
            connect_decoded_pads(&decode, &convert);
        }
        SourceKind::File { uri } | SourceKind::Uri { uri } => {
            let decode = make_element("uridecodebin")?;
            decode.set_property("uri", uri);
            pipeline.add(&decode).map_err(|e| VideoError::Build(e.to_string()))?;
            connect_decoded_pads(&decode, &convert);
        }
    }
    Ok(pipeline)
}

fn pad_caps_name(pad: &gst::Pad) -> Option<(String, Option<String>)> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let s = caps.structure(0)?;
    Some((s.name().to_string(), s.get::<String>("media").ok()))
}

/// rtspsrc: the first video RTP stream goes to decodebin, any other stream to a fakesink.
fn link_rtp_pad(pad: &gst::Pad, decode: &gst::Element) {
    let is_video = matches!(pad_caps_name(pad), Some((_, Some(media))) if media == "video");
    match decode.static_pad("sink") {
        Some(sink) if is_video && !sink.is_linked() => {
            if let Err(e) = pad.link(&sink) {
                post_link_error(pad, &format!("cannot link the RTSP video stream: {e:?}"));
            }
        }
        _ => discard(pad),
    }
}

/// decodebin/uridecodebin: the first raw video pad goes to videoconvert, others are discarded.
fn connect_decoded_pads(decode: &gst::Element, convert: &gst::Element) {
    let convert_weak = convert.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let Some(convert) = convert_weak.upgrade() else { return };
        let is_video = matches!(pad_caps_name(pad), Some((name, _)) if name.starts_with("video/"));
        match convert.static_pad("sink") {
            Some(sink) if is_video && !sink.is_linked() => {
                if let Err(e) = pad.link(&sink) {
                    post_link_error(pad, &format!("cannot link the decoded video: {e:?}"));
                }
            }
            _ => discard(pad),
        }
    });
}

/// Links a stream nobody uses to a fakesink, so that it neither stalls nor fails the pipeline.
fn discard(pad: &gst::Pad) {
    let Some(bin) = pad
        .parent_element()
        .and_then(|e| e.parent())
        .and_then(|p| p.downcast::<gst::Bin>().ok())
    else {
        return;
    };
    let Ok(sink) = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
    else {
        return;
    };
    if bin.add(&sink).is_err() {
        return;
    }
    let linked = sink.static_pad("sink").is_some_and(|s| pad.link(&s).is_ok());
    if !linked || sink.sync_state_with_parent().is_err() {
        tracing::debug!(pad = %pad.name(), "could not discard an unused stream");
    }
}

fn post_link_error(pad: &gst::Pad, msg: &str) {
    if let Some(element) = pad.parent_element() {
        gst::element_error!(element, gst::CoreError::Negotiation, ("{}", msg));
    }
}

/// The error a pipeline left on its bus, if any (used when a state change fails).
pub(crate) fn pending_error(bus: &gst::Bus) -> Option<VideoError> {
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(err) = msg.view() {
            return Some(bus_error(err));
        }
    }
    None
}

pub(crate) fn bus_error(err: &gst::message::Error) -> VideoError {
    VideoError::Bus {
        element: err
            .src()
            .map(|s| s.name().to_string())
            .unwrap_or_else(|| "pipeline".into()),
        message: err.error().to_string(),
        debug: err.debug().map(|d| d.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5×3 RGB frame has 15-byte rows padded to a 16-byte stride: the copy must skip
    /// the padding and keep the rows aligned.
    #[test]
    fn padded_rows_are_copied_tight() {
        super::super::init().expect("GStreamer");
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, 5, 3)
            .build()
            .unwrap();
        assert_eq!(info.stride()[0], 16, "GStreamer pads RGB rows to 4 bytes");
        let mut data = vec![0xEEu8; info.size()];
        for y in 0..3 {
            for x in 0..5 {
                let o = y * 16 + x * 3;
                data[o..o + 3].copy_from_slice(&[x as u8, y as u8, 7]);
            }
        }
        let buffer = gst::Buffer::from_slice(data);
        let caps = info.to_caps().unwrap();
        let sample = gst::Sample::builder().buffer(&buffer).caps(&caps).build();
        let mut layout = None;
        let img = to_rgb(&mut layout, &sample, sample.buffer().unwrap()).unwrap();
        assert_eq!(img.dimensions(), (5, 3));
        for (x, y, p) in img.enumerate_pixels() {
            assert_eq!(p.0, [x as u8, y as u8, 7]);
        }
        assert!(layout.is_some());
    }

    #[test]
    fn non_rgb_frames_are_an_error_not_a_panic() {
        super::super::init().expect("GStreamer");
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Gray8, 4, 2)
            .build()
            .unwrap();
        let buffer = gst::Buffer::from_slice(vec![0u8; info.size()]);
        let caps = info.to_caps().unwrap();
        let sample = gst::Sample::builder().buffer(&buffer).caps(&caps).build();
        assert!(to_rgb(&mut None, &sample, sample.buffer().unwrap()).is_err());
    }
}
