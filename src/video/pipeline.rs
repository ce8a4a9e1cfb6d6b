//! Building one camera pipeline and delivering its frames.
//!
//! `source → (decodebin) → videoconvert → capsfilter (raw formats) → appsink`. The decoder's
//! frames reach the appsink as they are (videoconvert passes the common raw formats through
//! and converts only exotic ones), and become RGB in the appsink callback only when a
//! consumer admitted them: at 10 detected frames/s of a 25 frames/s camera, 60 % of the
//! frames are never converted. The callback runs on GStreamer's streaming thread: it never
//! panics, hands each frame to the camera's [`FrameBus`], never blocks on a paced source,
//! and on a replay waits for a consumer's queue only until the session is cancelled.

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
    /// Conversion of the current caps to RGB, made on the first frame and kept until the
    /// caps change.
    pub to_rgb: Option<RgbConversion>,
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
        let image = match RgbConversion::convert_sample(&mut self.to_rgb, &sample, buffer) {
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

/// Raw formats the appsink takes as the decoder made them: what software and hardware
/// decoders and cameras commonly produce, all of which [`RgbConversion`] turns into RGB.
/// videoconvert converts anything else (10-bit video, say) to one of them first.
const DELIVERED_FORMATS: &[gst_video::VideoFormat] = {
    use gst_video::VideoFormat as F;
    &[
        F::I420,
        F::Yv12,
        F::Nv12,
        F::Nv21,
        F::Y42b,
        F::Y444,
        F::Yuy2,
        F::Uyvy,
        F::Gray8,
        F::Rgb,
        F::Bgr,
        F::Rgbx,
        F::Bgrx,
        F::Xrgb,
        F::Xbgr,
        F::Rgba,
        F::Bgra,
        F::Argb,
        F::Abgr,
    ]
};

/// Turns frames of one set of caps into tight RGB images (rows without stride padding):
/// GStreamer's own converter, as videoconvert uses it, straight into the image's buffer;
/// RGB frames are only copied row by row.
pub(crate) struct RgbConversion {
    caps: gst::Caps,
    input: gst_video::VideoInfo,
    /// `input`'s size as tightly packed RGB.
    output: gst_video::VideoInfo,
    /// `None` when the frames are RGB already.
    converter: Option<gst_video::VideoConverter>,
}

impl RgbConversion {
    fn new(caps: &gst::CapsRef) -> Result<RgbConversion, String> {
        let input = gst_video::VideoInfo::from_caps(caps).map_err(|e| format!("unusable caps {caps}: {e}"))?;
        let (w, h) = (input.width(), input.height());
        let row = i32::try_from(w as u64 * 3).map_err(|_| format!("{w}x{h} frames are too wide"))?;
        let output = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w, h)
            .stride(&[row])
            .offset(&[0])
            .fps(input.fps())
            .par(input.par())
            .interlace_mode(input.interlace_mode())
            .build()
            .map_err(|e| format!("no RGB layout for {w}x{h}: {e}"))?;
        let converter = if input.format() == gst_video::VideoFormat::Rgb {
            None
        } else {
            let c = gst_video::VideoConverter::new(&input, &output, None)
                .map_err(|e| format!("cannot convert {:?} to RGB: {e}", input.format()))?;
            Some(c)
        };
        Ok(RgbConversion {
            caps: caps.to_owned(),
            input,
            output,
            converter,
        })
    }

    /// The sample's frame as RGB, through `slot`'s conversion, remade when the caps change.
    fn convert_sample(
        slot: &mut Option<RgbConversion>,
        sample: &gst::Sample,
        buffer: &gst::BufferRef,
    ) -> Result<image::RgbImage, String> {
        let caps = sample.caps().ok_or("sample without caps")?;
        let conversion = match slot {
            Some(c) if c.caps.as_ref() == caps => c,
            _ => slot.insert(RgbConversion::new(caps)?),
        };
        conversion.convert(buffer)
    }

    fn convert(&self, buffer: &gst::BufferRef) -> Result<image::RgbImage, String> {
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &self.input)
            .map_err(|_| "cannot map the video buffer".to_string())?;
        let (w, h) = (self.output.width(), self.output.height());
        let pixels = match &self.converter {
            None => copy_rgb_rows(&frame)?,
            Some(converter) => {
                let mut out = gst::Buffer::from_mut_slice(vec![0u8; self.output.size()]);
                {
                    let target = out.get_mut().ok_or("the RGB buffer is shared")?;
                    let mut target = gst_video::VideoFrameRef::from_buffer_ref_writable(target, &self.output)
                        .map_err(|_| "cannot map the RGB buffer".to_string())?;
                    converter.frame_ref(&frame, &mut target);
                }
                out.try_into_inner::<Vec<u8>>()
                    .map_err(|_| "the RGB buffer is shared".to_string())?
            }
        };
        image::RgbImage::from_raw(w, h, pixels).ok_or_else(|| "image size mismatch".to_string())
    }
}

/// An RGB frame's pixels without the padding GStreamer adds to each row's stride.
fn copy_rgb_rows(frame: &gst_video::VideoFrameRef<&gst::BufferRef>) -> Result<Vec<u8>, String> {
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
    Ok(pixels)
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
    let raw = gst_video::VideoCapsBuilder::new()
        .format_list(DELIVERED_FORMATS.iter().copied())
        .build();
    filter.set_property("caps", &raw);

    // Paced sources already run at their own rate: sync only where the pipeline must pace
    // itself (a realtime file, or an http/other URI that may be a file).
    let sync = match source {
        SourceKind::Rtsp { .. } | SourceKind::V4l2 { .. } => false,
        SourceKind::File { .. } => paced,
        SourceKind::Uri { .. } => true,
    };
    if let Some(threads) = cfg.decoder_threads {
        limit_decoder_threads(&pipeline, threads);
    }
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

/// Sets `max-threads` (0 = one per core) on the libav decoders decodebin adds, wherever
/// they are nested in the pipeline.
fn limit_decoder_threads(pipeline: &gst::Pipeline, threads: u32) {
    pipeline.connect_deep_element_added(move |_, _, element| {
        let is_libav = element.factory().is_some_and(|f| f.name().starts_with("avdec_"));
        if is_libav && element.find_property("max-threads").is_some() {
            element.set_property("max-threads", threads as i32);
        }
    });
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
        let mut slot = None;
        let img = RgbConversion::convert_sample(&mut slot, &sample, sample.buffer().unwrap()).unwrap();
        assert_eq!(img.dimensions(), (5, 3));
        for (x, y, p) in img.enumerate_pixels() {
            assert_eq!(p.0, [x as u8, y as u8, 7]);
        }
        assert!(
            slot.is_some_and(|c| c.converter.is_none()),
            "RGB frames are only copied"
        );
    }

    /// One frame of `videotestsrc` in `format` (RGB by way of videoconvert when `convert`).
    fn test_frame(format: &str, convert: bool) -> gst::Sample {
        let convert = if convert {
            "videoconvert ! video/x-raw,format=RGB !"
        } else {
            ""
        };
        let description = format!(
            "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,format={format},width=96,height=54 ! \
             {convert} appsink name=sink"
        );
        let pipeline = gst::parse::launch(&description)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let sink = pipeline
            .by_name("sink")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let sample = sink.pull_sample().expect("a frame");
        pipeline.set_state(gst::State::Null).unwrap();
        sample
    }

    /// Frames converted in the callback have the very pixels videoconvert gives them.
    #[test]
    fn yuv_frames_become_the_rgb_videoconvert_makes() {
        super::super::init().expect("GStreamer");
        for format in ["I420", "NV12", "YUY2", "BGRx"] {
            let reference = test_frame(format, true);
            let want = RgbConversion::convert_sample(&mut None, &reference, reference.buffer().unwrap()).unwrap();
            let sample = test_frame(format, false);
            let mut slot = None;
            let got = RgbConversion::convert_sample(&mut slot, &sample, sample.buffer().unwrap()).unwrap();
            assert_eq!(got.dimensions(), (96, 54));
            assert!(got == want, "{format}: not the pixels of videoconvert");
            assert!(slot.is_some_and(|c| c.converter.is_some()));
        }
    }

    #[test]
    fn libav_decoders_get_the_thread_limit_even_inside_bins() {
        super::super::init().expect("GStreamer");
        let pipeline = gst::Pipeline::new();
        limit_decoder_threads(&pipeline, 1);
        let bin = gst::Bin::new();
        pipeline.add(&bin).unwrap();
        let decoder = make_element("avdec_h264").expect("gstreamer1.0-libav");
        let other = make_element("identity").unwrap();
        bin.add_many([&decoder, &other]).unwrap();
        assert_eq!(decoder.property::<i32>("max-threads"), 1);
    }

    #[test]
    fn a_caps_change_remakes_the_conversion() {
        super::super::init().expect("GStreamer");
        let mut slot = None;
        let small = test_frame("I420", false);
        RgbConversion::convert_sample(&mut slot, &small, small.buffer().unwrap()).unwrap();
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Gray8, 4, 2)
            .build()
            .unwrap();
        let buffer = gst::Buffer::from_slice(vec![200u8; info.size()]);
        let caps = info.to_caps().unwrap();
        let gray = gst::Sample::builder().buffer(&buffer).caps(&caps).build();
        let img = RgbConversion::convert_sample(&mut slot, &gray, gray.buffer().unwrap()).unwrap();
        assert_eq!(img.dimensions(), (4, 2));
        assert!(
            img.pixels().all(|p| p.0 == [200, 200, 200]),
            "full-range gray stays gray"
        );
    }

    #[test]
    fn a_buffer_smaller_than_its_caps_is_an_error_not_a_panic() {
        super::super::init().expect("GStreamer");
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, 64, 32)
            .build()
            .unwrap();
        let buffer = gst::Buffer::from_slice(vec![0u8; 100]);
        let caps = info.to_caps().unwrap();
        let sample = gst::Sample::builder().buffer(&buffer).caps(&caps).build();
        assert!(RgbConversion::convert_sample(&mut None, &sample, sample.buffer().unwrap()).is_err());
    }
}
