//! A demo and test video made from still photos: each segment shows one photo panning
//! and zooming, so faces move and change size, with a short black gap between segments
//! so that tracks end. Frames are composed in Rust (deterministic) and encoded to H.264
//! in MP4 by GStreamer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use image::RgbImage;

use super::make_element;

/// Shape of the demo video.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoVideoOptions {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Frames per segment (one photo each).
    pub segment_frames: u32,
    /// Black frames between segments.
    pub gap_frames: u32,
    /// Black frames before the first segment: copies of the video that start at different
    /// moments, so that cameras do not all see a new face in the same frame.
    pub lead_in_frames: u32,
    /// Number of segments, cycling through the photos; 0 = one per photo.
    pub segments: usize,
    /// Approximate length in seconds; when above 0 it decides the number of segments
    /// (as many as fit, at least one) instead of `segments`.
    pub seconds: u32,
    /// Scale from photo pixels to output pixels at the widest and the closest view, for
    /// an output 1280 pixels wide (scaled with `width`). The sample photos are 1920 wide
    /// with faces 170–235 px, so 0.45–1.3 gives faces of about 80–300 px at 720p.
    pub zoom: (f32, f32),
    /// H.264 bit rate.
    pub bitrate_kbps: u32,
}

impl Default for DemoVideoOptions {
    /// 1280×720 at 25 fps, 60 frames per photo, 10 black frames between photos: 16.4 s
    /// with the six sample photos.
    fn default() -> Self {
        DemoVideoOptions {
            width: 1280,
            height: 720,
            fps: 25,
            segment_frames: 60,
            gap_frames: 10,
            lead_in_frames: 0,
            segments: 0,
            seconds: 0,
            zoom: (0.45, 1.3),
            bitrate_kbps: 4000,
        }
    }
}

/// Which photo is on screen when.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSegment {
    pub sample: PathBuf,
    /// Index of the first and the last frame showing the photo (inclusive).
    pub first_frame: u64,
    pub last_frame: u64,
    /// Photo-to-output scale at the segment's first and last frame.
    pub scale: (f32, f32),
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoVideoInfo {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub frames: u64,
    pub duration: Duration,
    pub segments: Vec<DemoSegment>,
}

impl DemoVideoInfo {
    /// The segment on screen at `frame`, if any (None in the black gaps).
    pub fn segment_at(&self, frame: u64) -> Option<&DemoSegment> {
        self.segments
            .iter()
            .find(|s| (s.first_frame..=s.last_frame).contains(&frame))
    }
}

/// Where the camera looks at one instant: the photo point at the centre of the frame and
/// the photo-to-output scale.
#[derive(Debug, Clone, Copy, PartialEq)]
struct View {
    cx: f64,
    cy: f64,
    scale: f64,
}

/// The camera path of segment `index` at `t` in [0, 1]: even segments zoom in while
/// panning right, odd ones zoom out while panning left; smooth start and stop.
fn view_at(index: usize, t: f64, photo: (u32, u32), zoom: (f64, f64)) -> View {
    let ease = t * t * (3.0 - 2.0 * t);
    let (pw, ph) = (photo.0 as f64, photo.1 as f64);
    let (near_left, far_right) = (0.35, 0.65);
    let (from_x, to_x, from_s, to_s) = if index.is_multiple_of(2) {
        (near_left, far_right, zoom.0, zoom.1)
    } else {
        (far_right, near_left, zoom.1, zoom.0)
    };
    // Faces in group photos sit in the upper half; drift a little vertically too.
    let (from_y, to_y) = if index.is_multiple_of(3) {
        (0.42, 0.36)
    } else {
        (0.36, 0.44)
    };
    View {
        cx: pw * (from_x + (to_x - from_x) * ease),
        cy: ph * (from_y + (to_y - from_y) * ease),
        scale: from_s + (to_s - from_s) * ease,
    }
}

/// Renders one frame: the photo scaled by `view.scale` with `(cx, cy)` at the centre,
/// black where the photo does not reach.
fn render(resizer: &mut Resizer, photo: &RgbImage, view: View, width: u32, height: u32) -> Result<RgbImage, String> {
    let mut frame = RgbImage::new(width, height);
    let (w, h) = (width as f64, height as f64);
    let (pw, ph) = (photo.width() as f64, photo.height() as f64);
    let s = view.scale;
    // Output x of photo x: (x - cx)·s + w/2.
    let x0 = ((0.0 - view.cx) * s + w / 2.0).ceil().clamp(0.0, w);
    let x1 = ((pw - view.cx) * s + w / 2.0).floor().clamp(0.0, w);
    let y0 = ((0.0 - view.cy) * s + h / 2.0).ceil().clamp(0.0, h);
    let y1 = ((ph - view.cy) * s + h / 2.0).floor().clamp(0.0, h);
    if x1 - x0 < 1.0 || y1 - y0 < 1.0 {
        return Ok(frame);
    }
    let (dw, dh) = ((x1 - x0) as u32, (y1 - y0) as u32);
    let left = ((x0 - w / 2.0) / s + view.cx).clamp(0.0, pw);
    let top = ((y0 - h / 2.0) / s + view.cy).clamp(0.0, ph);
    let crop_w = (dw as f64 / s).min(pw - left);
    let crop_h = (dh as f64 / s).min(ph - top);

    let src = ImageRef::new(photo.width(), photo.height(), photo.as_raw(), PixelType::U8x3)
        .map_err(|e| format!("photo buffer: {e}"))?;
    let mut dst = Image::new(dw, dh, PixelType::U8x3);
    let opts = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .crop(left, top, crop_w, crop_h);
    resizer
        .resize(&src, &mut dst, &opts)
        .map_err(|e| format!("resize: {e}"))?;

    let src_bytes = dst.buffer();
    let row = dw as usize * 3;
    let out = frame.as_mut();
    for y in 0..dh as usize {
        let o = ((y0 as usize + y) * width as usize + x0 as usize) * 3;
        out[o..o + row].copy_from_slice(&src_bytes[y * row..(y + 1) * row]);
    }
    Ok(frame)
}

/// How many segments: from `seconds` when set, else `segments`, else one per photo.
fn segment_count(photos: usize, opts: &DemoVideoOptions) -> usize {
    if opts.seconds > 0 {
        let per_segment = (opts.segment_frames + opts.gap_frames) as f64;
        let wanted = (opts.seconds * opts.fps + opts.gap_frames) as f64;
        ((wanted / per_segment).round() as usize).max(1)
    } else if opts.segments > 0 {
        opts.segments
    } else {
        photos
    }
}

/// The segment plan: which photo on which frames, and how each segment moves.
fn plan(samples: &[PathBuf], opts: &DemoVideoOptions) -> Vec<DemoSegment> {
    let count = segment_count(samples.len(), opts);
    let width_factor = opts.width as f32 / 1280.0;
    let mut next = opts.lead_in_frames as u64;
    (0..count)
        .map(|i| {
            let first = next;
            let last = first + opts.segment_frames as u64 - 1;
            next = last + 1 + opts.gap_frames as u64;
            let (a, b) = (opts.zoom.0 * width_factor, opts.zoom.1 * width_factor);
            DemoSegment {
                sample: samples[i % samples.len()].clone(),
                first_frame: first,
                last_frame: last,
                scale: if i.is_multiple_of(2) { (a, b) } else { (b, a) },
            }
        })
        .collect()
}

fn check_options(samples: &[PathBuf], opts: &DemoVideoOptions) -> Result<(), String> {
    let mut problems = Vec::new();
    if samples.is_empty() {
        problems.push("no sample photos given".to_string());
    }
    if opts.width < 16 || opts.height < 16 || !opts.width.is_multiple_of(2) || !opts.height.is_multiple_of(2) {
        problems.push(format!(
            "size {}x{} must be even and at least 16x16",
            opts.width, opts.height
        ));
    }
    if opts.fps == 0 || opts.fps > 120 {
        problems.push(format!("fps {} is not between 1 and 120", opts.fps));
    }
    if opts.segment_frames == 0 {
        problems.push("segment_frames must be above 0".into());
    }
    let (a, b) = opts.zoom;
    if !(a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0) {
        problems.push(format!("zoom {:?} must be two positive scales", opts.zoom));
    }
    if opts.bitrate_kbps == 0 {
        problems.push("bitrate_kbps must be above 0".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Composes the demo video from `samples` and writes it to `out` as H.264 in MP4.
pub fn make_demo_video(samples: &[PathBuf], out: &Path, opts: &DemoVideoOptions) -> Result<DemoVideoInfo, String> {
    check_options(samples, opts)?;
    super::init()?;
    let photos: Vec<RgbImage> = samples
        .iter()
        .map(|p| {
            image::open(p)
                .map(|i| i.to_rgb8())
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect::<Result<_, _>>()?;
    let segments = plan(samples, opts);
    let frames = segments.last().map_or(0, |s| s.last_frame + 1);

    let encoder = Mp4Writer::create(out, opts.width, opts.height, opts.fps, opts.bitrate_kbps)?;
    let mut resizer = Resizer::new();
    let black = RgbImage::new(opts.width, opts.height);
    let result = (|| {
        for frame in 0..frames {
            let image = match segments
                .iter()
                .position(|s| (s.first_frame..=s.last_frame).contains(&frame))
            {
                Some(i) => {
                    let seg = &segments[i];
                    let photo = &photos[i % photos.len()];
                    let span = (seg.last_frame - seg.first_frame).max(1) as f64;
                    let t = (frame - seg.first_frame) as f64 / span;
                    let view = view_at(
                        i,
                        t,
                        photo.dimensions(),
                        (seg.scale.0.min(seg.scale.1) as f64, seg.scale.0.max(seg.scale.1) as f64),
                    );
                    render(&mut resizer, photo, view, opts.width, opts.height)?
                }
                None => black.clone(),
            };
            encoder.push(frame, &image)?;
        }
        Ok::<(), String>(())
    })();
    match result {
        Ok(()) => encoder.finish()?,
        Err(e) => {
            encoder.abort();
            return Err(e);
        }
    }
    Ok(DemoVideoInfo {
        path: out.to_path_buf(),
        width: opts.width,
        height: opts.height,
        fps: opts.fps,
        frames,
        duration: Duration::from_secs_f64(frames as f64 / opts.fps as f64),
        segments,
    })
}

/// Writes RGB frames to an H.264 MP4 file, the same bytes for the same frames:
/// `appsrc → videoconvert → I420 → x264enc → h264parse → mp4mux → filesink`.
pub struct Mp4Writer {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    info: gst_video::VideoInfo,
    fps: u32,
}

impl Mp4Writer {
    /// Starts writing `out`: `width`×`height` frames at `fps`, H.264 at `bitrate_kbps`.
    pub fn create(out: &Path, width: u32, height: u32, fps: u32, bitrate_kbps: u32) -> Result<Mp4Writer, String> {
        super::init()?;
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, width, height)
            .fps(gst::Fraction::new(fps as i32, 1))
            .build()
            .map_err(|e| format!("video info: {e}"))?;
        let caps = info.to_caps().map_err(|e| format!("video caps: {e}"))?;
        let appsrc = gst_app::AppSrc::builder()
            .caps(&caps)
            .format(gst::Format::Time)
            .block(true)
            .max_bytes(4 * info.size() as u64)
            .build();
        let convert = make_element("videoconvert").map_err(|e| e.to_string())?;
        let i420 = make_element("capsfilter").map_err(|e| e.to_string())?;
        i420.set_property(
            "caps",
            gst_video::VideoCapsBuilder::new()
                .format(gst_video::VideoFormat::I420)
                .build(),
        );
        let x264 = make_element("x264enc").map_err(|e| e.to_string())?;
        x264.set_property_from_str("tune", "zerolatency");
        x264.set_property_from_str("speed-preset", "veryfast");
        x264.set_property("key-int-max", fps);
        x264.set_property("bitrate", bitrate_kbps);
        // One encoder thread: x264's multi-threaded rate control makes each run's stream a
        // little different, and the demo and the tests want the same video every time.
        x264.set_property("threads", 1u32);
        let parse = make_element("h264parse").map_err(|e| e.to_string())?;
        let mux = make_element("mp4mux").map_err(|e| e.to_string())?;
        let sink = make_element("filesink").map_err(|e| e.to_string())?;
        sink.set_property("location", out.to_string_lossy().as_ref());

        let pipeline = gst::Pipeline::with_name("demo-video");
        let elements = [
            appsrc.upcast_ref::<gst::Element>(),
            &convert,
            &i420,
            &x264,
            &parse,
            &mux,
            &sink,
        ];
        pipeline.add_many(elements).map_err(|e| format!("demo pipeline: {e}"))?;
        gst::Element::link_many(elements).map_err(|e| format!("demo pipeline: {e}"))?;
        let encoder = Mp4Writer {
            pipeline,
            appsrc,
            info,
            fps,
        };
        if encoder.pipeline.set_state(gst::State::Playing).is_err() {
            let err = encoder.bus_error().unwrap_or_else(|| "cannot start the encoder".into());
            encoder.abort();
            return Err(format!("{}: {err}", out.display()));
        }
        Ok(encoder)
    }

    /// Adds frame `index` (its timestamp is `index / fps`); `image` must have the size given.
    pub fn push(&self, index: u64, image: &RgbImage) -> Result<(), String> {
        if image.dimensions() != (self.info.width(), self.info.height()) {
            return Err(format!(
                "frame {index} is {}×{}, the video {}×{}",
                image.width(),
                image.height(),
                self.info.width(),
                self.info.height()
            ));
        }
        let size = self.info.size();
        let stride = self.info.stride()[0] as usize;
        let row = self.info.width() as usize * 3;
        let mut buffer = gst::Buffer::with_size(size).map_err(|e| format!("buffer: {e}"))?;
        {
            let buf = buffer.get_mut().ok_or("buffer not writable")?;
            let pts = gst::ClockTime::SECOND.mul_div_floor(index, self.fps as u64);
            let next = gst::ClockTime::SECOND.mul_div_floor(index + 1, self.fps as u64);
            buf.set_pts(pts);
            if let (Some(a), Some(b)) = (pts, next) {
                buf.set_duration(b - a);
            }
            let mut map = buf.map_writable().map_err(|e| format!("buffer map: {e}"))?;
            let offset = self.info.offset()[0];
            for (y, src) in image.as_raw().chunks_exact(row).enumerate() {
                let o = offset + y * stride;
                map[o..o + row].copy_from_slice(src);
            }
        }
        self.appsrc.push_buffer(buffer).map_err(|e| {
            let why = self.bus_error().unwrap_or_else(|| format!("{e:?}"));
            format!("encoding frame {index}: {why}")
        })?;
        Ok(())
    }

    /// Ends the stream and waits for the file to be complete.
    pub fn finish(self) -> Result<(), String> {
        self.appsrc
            .end_of_stream()
            .map_err(|e| format!("end of stream: {e:?}"))?;
        let bus = self.pipeline.bus().ok_or("encoder has no bus")?;
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(300),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let result = match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => Ok(()),
            Some(gst::MessageView::Error(e)) => Err(format!("encoder: {}", e.error())),
            _ => Err("encoder did not finish within 300 s".into()),
        };
        self.abort();
        result
    }

    fn bus_error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
        match msg.view() {
            gst::MessageView::Error(e) => Some(format!(
                "{}: {}",
                e.src().map(|s| s.name().to_string()).unwrap_or_default(),
                e.error()
            )),
            _ => None,
        }
    }

    /// Stops without finishing the file.
    pub fn abort(&self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_cycles_photos_with_gaps() {
        let samples: Vec<PathBuf> = (1..=2).map(|i| PathBuf::from(format!("s{i}.jpg"))).collect();
        let opts = DemoVideoOptions {
            segments: 3,
            segment_frames: 10,
            gap_frames: 5,
            ..Default::default()
        };
        let plan = plan(&samples, &opts);
        let frames: Vec<(u64, u64)> = plan.iter().map(|s| (s.first_frame, s.last_frame)).collect();
        assert_eq!(frames, [(0, 9), (15, 24), (30, 39)]);
        assert_eq!(plan[2].sample, PathBuf::from("s1.jpg"));
        assert_eq!(plan[0].scale, (0.45, 1.3));
        assert_eq!(plan[1].scale, (1.3, 0.45));
        let late = super::plan(
            &samples,
            &DemoVideoOptions {
                lead_in_frames: 7,
                ..opts
            },
        );
        let frames: Vec<(u64, u64)> = late.iter().map(|s| (s.first_frame, s.last_frame)).collect();
        assert_eq!(frames, [(7, 16), (22, 31), (37, 46)], "the same plan, 7 frames later");
    }

    #[test]
    fn length_in_seconds_decides_the_segment_count() {
        let opts = DemoVideoOptions {
            seconds: 16,
            ..Default::default()
        };
        assert_eq!(segment_count(6, &opts), 6);
        let opts = DemoVideoOptions {
            seconds: 30,
            segments: 2,
            ..Default::default()
        };
        assert_eq!(segment_count(6, &opts), 11);
        let opts = DemoVideoOptions {
            seconds: 1,
            ..Default::default()
        };
        assert_eq!(segment_count(6, &opts), 1);
        assert_eq!(segment_count(6, &DemoVideoOptions::default()), 6);
        assert_eq!(
            segment_count(
                6,
                &DemoVideoOptions {
                    segments: 3,
                    ..Default::default()
                }
            ),
            3
        );
    }

    #[test]
    fn views_move_and_zoom() {
        let a = view_at(0, 0.0, (1920, 1280), (0.45, 1.3));
        let b = view_at(0, 1.0, (1920, 1280), (0.45, 1.3));
        assert!((a.scale - 0.45).abs() < 1e-9 && (b.scale - 1.3).abs() < 1e-9);
        assert!(b.cx > a.cx);
        let c = view_at(1, 0.0, (1920, 1280), (0.45, 1.3));
        assert!((c.scale - 1.3).abs() < 1e-9);
    }

    #[test]
    fn render_places_the_photo_and_pads_black() {
        // A 100×50 photo, white; shown at scale 1 centred in a 200×100 frame.
        let photo = RgbImage::from_pixel(100, 50, image::Rgb([255, 255, 255]));
        let mut r = Resizer::new();
        let view = View {
            cx: 50.0,
            cy: 25.0,
            scale: 1.0,
        };
        let f = render(&mut r, &photo, view, 200, 100).unwrap();
        assert_eq!(f.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(f.get_pixel(100, 50).0, [255, 255, 255]);
        assert_eq!(f.get_pixel(50, 25).0, [255, 255, 255]);
        assert_eq!(f.get_pixel(149, 74).0, [255, 255, 255]);
        assert_eq!(f.get_pixel(150, 75).0, [0, 0, 0]);
        // Deterministic.
        assert_eq!(f, render(&mut r, &photo, view, 200, 100).unwrap());
    }

    #[test]
    fn options_are_checked() {
        let bad = DemoVideoOptions {
            width: 15,
            fps: 0,
            ..Default::default()
        };
        let err = check_options(&[PathBuf::from("a.jpg")], &bad).unwrap_err();
        assert!(err.contains("size") && err.contains("fps"), "{err}");
        assert!(check_options(&[], &DemoVideoOptions::default()).is_err());
    }
}
