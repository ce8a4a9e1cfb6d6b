//! The one way still images enter facegate (CLI files, MQTT commands, enrollment): encoded
//! bytes are checked against size limits, read from the header, before any pixel buffer is
//! allocated, then decoded into RGB with errors a person can act on.
//!
//! Why limits: a 1.1 MB PNG that declares 20000×20000 pixels made the decoder allocate
//! 2.4 GB and spend 11 s before saying "no face found"; a door box would run out of memory.

use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Limits on images read from files or the network (`[images]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageLimits {
    /// Most pixels (width × height) an image may declare; larger ones are refused from
    /// their header, before decoding.
    pub max_pixels: u64,
    /// Largest encoded image, in bytes.
    pub max_bytes: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_pixels: 40_000_000,
            max_bytes: 50 * 1024 * 1024,
        }
    }
}

impl ImageLimits {
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.max_pixels == 0 {
            p.push(format!("{prefix}.max_pixels: must be at least 1"));
        }
        if self.max_bytes == 0 {
            p.push(format!("{prefix}.max_bytes: must be at least 1"));
        }
        p
    }

    /// What the decoder may allocate: the RGBA buffer of the largest image allowed, twice
    /// (a decoder may hold its own buffer and the converted one).
    fn max_alloc(&self) -> u64 {
        self.max_pixels.saturating_mul(8)
    }
}

/// An encoded image as received, with the SHA-256 of its bytes (enrollment keeps it to
/// recognise a photo given twice).
#[derive(Debug, Clone)]
pub struct EncodedImage {
    pub bytes: Vec<u8>,
}

impl EncodedImage {
    pub fn sha256_hex(&self) -> String {
        Sha256::digest(&self.bytes).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Reads the image file at `path` (refusing files over `max_bytes` without reading them)
/// and decodes it within `limits`. Errors name the path.
pub fn load_image(path: &Path, limits: &ImageLimits) -> Result<RgbImage, Error> {
    let encoded = read_image_file(path, limits)?;
    decode_image(&encoded.bytes, limits).map_err(|reason| input_error(path, reason))
}

/// Reads an encoded image file, at most `max_bytes` of it.
pub fn read_image_file(path: &Path, limits: &ImageLimits) -> Result<EncodedImage, Error> {
    let file = std::fs::File::open(path).map_err(|e| input_error(path, io_reason(&e)))?;
    let meta = file.metadata().map_err(|e| input_error(path, io_reason(&e)))?;
    if meta.is_dir() {
        return Err(input_error(path, "is a directory, not an image".into()));
    }
    if meta.len() > limits.max_bytes {
        return Err(input_error(path, too_many_bytes(meta.len(), limits)));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file that grows while it is read is cut at the limit and refused below.
    file.take(limits.max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| input_error(path, io_reason(&e)))?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(input_error(path, too_many_bytes(bytes.len() as u64, limits)));
    }
    Ok(EncodedImage { bytes })
}

fn input_error(path: &Path, reason: String) -> Error {
    Error::Input {
        path: path.to_path_buf(),
        reason,
    }
}

fn too_many_bytes(len: u64, limits: &ImageLimits) -> String {
    format!(
        "{len} bytes, above the limit of {} bytes (images.max_bytes)",
        limits.max_bytes
    )
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "is a directory, not an image".into(),
        _ => format!("cannot read: {e}"),
    }
}

/// Decodes an encoded image held in memory, applying its EXIF orientation as phone photos
/// need. The size is checked from the header before anything is decoded.
pub fn decode_image(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file, not an image".into());
    }
    if bytes.len() as u64 > limits.max_bytes {
        return Err(too_many_bytes(bytes.len() as u64, limits));
    }
    let format = image::guess_format(bytes).map_err(|_| "not an image (unrecognised format)".to_string())?;
    if format == ImageFormat::Jpeg && !ends_with_jpeg_eoi(bytes) {
        // The JPEG decoder fills a cut-off scan with grey instead of failing; a half-grey
        // photo would be enrolled or matched silently, so refuse it here.
        return Err("truncated JPEG (no end-of-image marker)".into());
    }
    let describe = |e: image::ImageError| format!("cannot decode {format:?} image: {e}");
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(limits.max_alloc());
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(describe)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, limits)?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(describe)?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img.to_rgb8())
}

/// Refuses an image without pixels or with more than `max_pixels`.
fn check_pixels(width: u32, height: u32, limits: &ImageLimits) -> Result<(), String> {
    let pixels = width as u64 * height as u64;
    if pixels == 0 {
        return Err("image has no pixels".into());
    }
    if pixels > limits.max_pixels {
        return Err(format!(
            "image is {width}×{height} ({:.1} MP), above the limit of {:.1} MP (images.max_pixels)",
            pixels as f64 / 1e6,
            limits.max_pixels as f64 / 1e6
        ));
    }
    Ok(())
}

/// True when the last marker of the file is End Of Image (`FF D9`), allowing the padding
/// and trailing bytes that some cameras append after it.
fn ends_with_jpeg_eoi(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(w: u32, h: u32, format: ImageFormat) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, 90]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    /// A PNG declaring `w`×`h` whose pixel data is missing: what an image bomb looks like
    /// to a check that reads only the header.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [(b"IHDR", ihdr.as_slice()), (b"IDAT", &[]), (b"IEND", &[])] {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut chunk = kind.to_vec();
            chunk.extend_from_slice(data);
            out.extend_from_slice(&chunk);
            out.extend_from_slice(&crc32(&chunk).to_be_bytes());
        }
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn decodes_jpeg_and_png() {
        let limits = ImageLimits::default();
        assert_eq!(
            decode_image(&encode(64, 48, ImageFormat::Jpeg), &limits)
                .unwrap()
                .dimensions(),
            (64, 48)
        );
        assert_eq!(
            decode_image(&encode(30, 20, ImageFormat::Png), &limits)
                .unwrap()
                .dimensions(),
            (30, 20)
        );
    }

    #[test]
    fn refuses_empty_garbage_and_truncated_input() {
        let limits = ImageLimits::default();
        assert!(decode_image(&[], &limits).unwrap_err().contains("empty"));
        assert!(
            decode_image(b"hello, I am text", &limits)
                .unwrap_err()
                .contains("not an image")
        );
        let full = encode(640, 480, ImageFormat::Jpeg);
        let cut = &full[..full.len() * 2 / 3];
        assert!(decode_image(cut, &limits).unwrap_err().contains("truncated"));
    }

    #[test]
    fn an_image_bomb_is_refused_from_its_header() {
        let limits = ImageLimits::default();
        let err = decode_image(&png_header(20_000, 20_000), &limits).unwrap_err();
        assert!(
            err.contains("20000×20000 (400.0 MP)") && err.contains("images.max_pixels"),
            "{err}"
        );
        // Just within the limit, the header passes and decoding fails on the missing data.
        let err = decode_image(&png_header(8000, 5000), &limits).unwrap_err();
        assert!(!err.contains("max_pixels"), "{err}");
    }

    #[test]
    fn limits_are_configurable() {
        let small = ImageLimits {
            max_pixels: 100,
            max_bytes: 1 << 20,
        };
        assert!(
            decode_image(&encode(11, 10, ImageFormat::Png), &small)
                .unwrap_err()
                .contains("max_pixels")
        );
        assert!(decode_image(&encode(10, 10, ImageFormat::Png), &small).is_ok());
        let tiny = ImageLimits {
            max_pixels: 1 << 20,
            max_bytes: 50,
        };
        assert!(
            decode_image(&encode(10, 10, ImageFormat::Jpeg), &tiny)
                .unwrap_err()
                .contains("max_bytes")
        );
        assert!(ImageLimits::default().validate("images").is_empty());
        assert_eq!(
            ImageLimits {
                max_pixels: 0,
                max_bytes: 0
            }
            .validate("images")
            .len(),
            2
        );
    }

    #[test]
    fn files_over_the_byte_limit_are_not_read() {
        let dir = std::env::temp_dir().join(format!("facegate-image-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.jpg");
        std::fs::write(&path, encode(64, 64, ImageFormat::Jpeg)).unwrap();
        let tiny = ImageLimits {
            max_pixels: 1 << 20,
            max_bytes: 100,
        };
        let err = load_image(&path, &tiny).unwrap_err().to_string();
        assert!(err.contains("images.max_bytes"), "{err}");
        assert!(load_image(&path, &ImageLimits::default()).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = load_image(Path::new("does/not/exist.jpg"), &ImageLimits::default()).unwrap_err();
        assert_eq!(err.to_string(), "does/not/exist.jpg: no such file");
    }
}
