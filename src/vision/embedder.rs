//! SFace embedder: aligned 112×112 RGB crops in, L2-normalised 128-d encodings out.

use image::RgbImage;
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;

use crate::error::Error;
use crate::vision::align::CROP_SIZE;
use crate::vision::similarity::l2_normalize;

/// Length of an SFace encoding.
pub const EMBEDDING_DIM: usize = 128;

pub type Embedding = Vec<f32>;

/// Lays crops out as SFace wants them: N×3×112×112, RGB, float 0–255, no mean or std.
pub fn embedder_input(crops: &[&RgbImage]) -> Array4<f32> {
    let s = CROP_SIZE as usize;
    let mut t = Array4::<f32>::zeros((crops.len(), 3, s, s));
    for (n, crop) in crops.iter().enumerate() {
        for (x, y, p) in crop.enumerate_pixels() {
            for c in 0..3 {
                t[[n, c, y as usize, x as usize]] = p[c] as f32;
            }
        }
    }
    t
}

/// SFace around an ONNX Runtime session whose batch dimension is symbolic.
pub struct Embedder {
    session: Session,
    input_name: String,
    max_batch: usize,
}

impl Embedder {
    pub fn new(session: Session, max_batch: usize) -> Result<Embedder, Error> {
        let input_name = session
            .inputs()
            .first()
            .map(|i| i.name().to_string())
            .ok_or_else(|| Error::Model {
                path: "embedder".into(),
                reason: "model has no input".into(),
            })?;
        Ok(Embedder {
            session,
            input_name,
            max_batch: max_batch.max(1),
        })
    }

    /// Embeds black crops once in each batch size up to `max_batch`, so that the first
    /// faces do not wait on the provider's first call of each shape.
    pub fn warm_up(&mut self) -> Result<(), Error> {
        let black = RgbImage::new(CROP_SIZE, CROP_SIZE);
        for n in 1..=self.max_batch {
            self.embed(&vec![&black; n])?;
        }
        Ok(())
    }

    /// One encoding per crop, in order; crops are sent in batches of at most `max_batch`.
    pub fn embed(&mut self, crops: &[&RgbImage]) -> Result<Vec<Embedding>, Error> {
        let fail = |e: ort::Error| Error::Inference {
            model: "embedder",
            reason: e.to_string(),
        };
        let mut out = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(self.max_batch) {
            let tensor = embedder_input(chunk);
            let outputs = self
                .session
                .run(ort::inputs![self.input_name.as_str() => TensorRef::from_array_view(&tensor).map_err(fail)?])
                .map_err(fail)?;
            let (_, data) = outputs[0].try_extract_tensor::<f32>().map_err(fail)?;
            if data.len() != chunk.len() * EMBEDDING_DIM {
                return Err(Error::Inference {
                    model: "embedder",
                    reason: format!("expected {}×{EMBEDDING_DIM} outputs, got {}", chunk.len(), data.len()),
                });
            }
            for row in data.chunks(EMBEDDING_DIM) {
                let mut v = row.to_vec();
                l2_normalize(&mut v);
                out.push(v);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_rgb_planar() {
        let crop = RgbImage::from_fn(CROP_SIZE, CROP_SIZE, |x, _| image::Rgb([1, 2, x as u8]));
        let t = embedder_input(&[&crop, &crop]);
        assert_eq!(t.shape(), &[2, 3, 112, 112]);
        assert_eq!((t[[1, 0, 3, 9]], t[[1, 1, 3, 9]], t[[1, 2, 3, 9]]), (1.0, 2.0, 9.0));
    }
}
