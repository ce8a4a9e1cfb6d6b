//! Decoding still images into RGB with errors a person can act on.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::error::Error;

/// Reads and decodes the image at `path`, applying its EXIF orientation as phone photos need.
pub fn load_image(path: &Path) -> Result<RgbImage, Error> {
    let input_err = |reason: String| Error::Input {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| input_err(io_reason(&e)))?;
    decode_image(&bytes).map_err(input_err)
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "is a directory, not an image".into(),
        _ => format!("cannot read: {e}"),
    }
}

/// Decodes an encoded image held in memory.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file, not an image".into());
    }
    let format = image::guess_format(bytes).map_err(|_| "not an image (unrecognised format)".to_string())?;
    if format == ImageFormat::Jpeg && !ends_with_jpeg_eoi(bytes) {
        // The JPEG decoder fills a cut-off scan with grey instead of failing; a half-grey
        // photo would be enrolled or matched silently, so refuse it here.
        return Err("truncated JPEG (no end-of-image marker)".into());
    }
    let describe = |e: image::ImageError| format!("cannot decode {format:?} image: {e}");
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(describe)?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(describe)?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    if img.width() == 0 || img.height() == 0 {
        return Err("image has no pixels".into());
    }
    Ok(img.to_rgb8())
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

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, 90]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_a_jpeg() {
        let img = decode_image(&jpeg(64, 48)).unwrap();
        assert_eq!(img.dimensions(), (64, 48));
    }

    #[test]
    fn refuses_empty_garbage_and_truncated_input() {
        assert!(decode_image(&[]).unwrap_err().contains("empty"));
        assert!(decode_image(b"hello, I am text").unwrap_err().contains("not an image"));
        let full = jpeg(640, 480);
        let cut = &full[..full.len() * 2 / 3];
        assert!(decode_image(cut).unwrap_err().contains("truncated"));
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = load_image(Path::new("does/not/exist.jpg")).unwrap_err();
        assert_eq!(err.to_string(), "does/not/exist.jpg: no such file");
    }
}
