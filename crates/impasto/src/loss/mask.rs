//! Spatial masks for the style loss (Gatys et al. 2017, "Controlling Perceptual Factors in
//! Neural Style Transfer", spatial control): per-pixel weights that say where a style applies,
//! carried down to each layer's feature size.

use rayon::prelude::*;

use crate::core::{FeatureMap, Scalar};
use crate::model::{Architecture, Layer};
use crate::{Error, Result};

/// Weights in [0, 1] over an `height × width` grid, row-major: the working image's pixels, or a
/// layer's feature pixels once brought there by [`SpatialMask::at_layer`].
#[derive(Clone, Debug, PartialEq)]
pub struct SpatialMask {
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `height × width` weights, row-major.
    pub values: Vec<f32>,
}

impl SpatialMask {
    /// Refuses a buffer of the wrong length or a value outside [0, 1]: the masked Gram matrix
    /// would stop being a weighted average of the pixels' statistics.
    pub fn new(height: usize, width: usize, values: Vec<f32>) -> Result<Self> {
        if height == 0 || width == 0 {
            return Err(Error::parameter(format!(
                "mask is {width}×{height}; both sides must be at least 1 pixel"
            )));
        }
        if values.len() != height * width {
            return Err(Error::parameter(format!(
                "mask has {} values, a {width}×{height} mask needs {}",
                values.len(),
                height * width
            )));
        }
        if let Some(v) = values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(Error::parameter(format!(
                "mask values must lie in [0, 1], found {v}"
            )));
        }
        Ok(SpatialMask {
            height,
            width,
            values,
        })
    }

    /// Every pixel fully weighted: the masked loss is then the unmasked one.
    pub fn ones(height: usize, width: usize) -> Self {
        SpatialMask {
            height,
            width,
            values: vec![1.0; height * width],
        }
    }

    /// `1 − m`: the rest of the image, for a single mask that splits it between two styles.
    pub fn complement(&self) -> Self {
        SpatialMask {
            values: self.values.iter().map(|v| 1.0 - v).collect(),
            ..self.clone()
        }
    }

    /// One 2×2 average pooling in floor mode, exactly as the network pools its features, so the
    /// result always has the size of the next block's feature maps.
    pub fn pooled(&self) -> Self {
        let (h, w) = (self.height / 2, self.width / 2);
        let m = &self.values;
        let mut values = Vec::with_capacity(h * w);
        for y in 0..h {
            let (top, bottom) = (2 * y * self.width, (2 * y + 1) * self.width);
            for x in 0..w {
                let (l, r) = (2 * x, 2 * x + 1);
                values.push(0.25 * (m[top + l] + m[top + r] + m[bottom + l] + m[bottom + r]));
            }
        }
        SpatialMask {
            height: h,
            width: w,
            values,
        }
    }

    /// The mask at `layer`'s feature size: pooled once for each pooling up to and including that
    /// layer. Fails for a layer the network lacks or a mask too small to reach it.
    pub fn at_layer(&self, arch: Architecture, layer: Layer) -> Result<Self> {
        // Refuses a layer the network does not have.
        arch.layer_position(layer)?;
        let pools = layer.pools_before();
        let mut mask = self.clone();
        for _ in 0..pools {
            if mask.height < 2 || mask.width < 2 {
                return Err(Error::parameter(format!(
                    "a {}×{} mask is too small to reach {layer}",
                    self.width, self.height
                )));
            }
            mask = mask.pooled();
        }
        Ok(mask)
    }

    /// `M_m = Σ m²`: the weighted pixel count that normalises a masked Gram matrix (features are
    /// scaled by `m`, so each pixel's outer product counts `m²`).
    pub fn mass(&self) -> f64 {
        self.values.iter().map(|&v| (v as f64) * (v as f64)).sum()
    }

    /// `a = M_m / M`, this region's share of the grid.
    pub fn area_share(&self) -> f64 {
        self.mass() / (self.height * self.width) as f64
    }

    /// Whether no pixel carries a weight that survives 8-bit rounding: such a region gets no
    /// style and is most likely a mistaken mask.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(|&v| v < 0.5 / 255.0)
    }

    /// `m^power ∘ F` per pixel, border kept zero.
    pub(crate) fn weigh<T: Scalar>(&self, f: &FeatureMap<T>, power: i32) -> FeatureMap<T> {
        let (h, w, c) = (f.height(), f.width(), f.channels());
        assert!(
            (self.height, self.width) == (h, w),
            "a {}×{} mask for {w}×{h} features",
            self.width,
            self.height
        );
        let mut out = FeatureMap::zeros(h, w, c);
        let row_len = (w + 2) * c;
        out.data_mut()
            .par_chunks_mut(row_len)
            .enumerate()
            .skip(1)
            .take(h)
            .for_each(|(r, row)| {
                let y = r - 1;
                let src = f.pixel_row(y);
                let weights = &self.values[y * w..(y + 1) * w];
                let interior = &mut row[c..(w + 1) * c];
                for ((dst, src), &m) in interior
                    .chunks_exact_mut(c)
                    .zip(src.chunks_exact(c))
                    .zip(weights)
                {
                    let k = T::from_f64((m as f64).powi(power));
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d = s * k;
                    }
                }
            });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testutil::Rng;

    #[test]
    fn masks_follow_the_networks_pooling_to_every_layer() {
        let arch = Architecture::Vgg19;
        let (h, w) = (37, 22);
        let values: Vec<f32> = (0..h * w).map(|i| (i % 7) as f32 / 6.0).collect();
        let mask = SpatialMask::new(h, w, values.clone()).unwrap();
        // The sizes the network's own floor-mode pooling gives.
        for (name, size) in [
            ("relu1_1", (37, 22)),
            ("conv1_2", (37, 22)),
            ("pool1", (18, 11)),
            ("relu2_1", (18, 11)),
            ("relu3_4", (9, 5)),
            ("relu4_1", (4, 2)),
            ("pool4", (2, 1)),
            ("relu5_1", (2, 1)),
        ] {
            let m = mask
                .at_layer(arch, arch.parse_layer(name).unwrap())
                .unwrap();
            assert_eq!((m.height, m.width), size, "{name}");
            assert_eq!(m.values.len(), size.0 * size.1);
        }
        // One pooling averages each 2×2 window and drops the odd last row and column.
        let p = mask
            .at_layer(arch, arch.parse_layer("relu2_1").unwrap())
            .unwrap();
        for (y, x) in [(0, 0), (3, 7), (17, 10)] {
            let at = |dy: usize, dx: usize| values[(2 * y + dy) * w + 2 * x + dx];
            let want = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0;
            assert!((p.values[y * 11 + x] - want).abs() < 1e-6);
        }
        let err = mask
            .at_layer(arch, arch.parse_layer("pool5").unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("too small to reach pool5"), "{err}");
    }

    #[test]
    fn weighing_scales_each_pixel_and_keeps_the_border_zero() {
        let mut rng = Rng::new(3);
        let (h, w, c) = (5, 4, 3);
        let f: FeatureMap<f64> = rng.map(h, w, c);
        let values: Vec<f32> = (0..h * w).map(|i| i as f32 / 20.0).collect();
        let mask = SpatialMask::new(h, w, values.clone()).unwrap();
        let g = mask.weigh(&f, 2);
        assert!(g.border_is_zero());
        for y in 0..h {
            for x in 0..w {
                let m = values[y * w + x] as f64;
                for ch in 0..c {
                    assert!((g.pixel(y, x)[ch] - m * m * f.pixel(y, x)[ch]).abs() < 1e-15);
                }
            }
        }
        assert_eq!(SpatialMask::ones(h, w).weigh(&f, 1), f);
    }

    #[test]
    fn masks_are_checked() {
        assert!(SpatialMask::new(2, 2, vec![0.0, 0.5, 1.0, 0.25]).is_ok());
        let err = SpatialMask::new(2, 2, vec![0.0; 3])
            .unwrap_err()
            .to_string();
        assert!(err.contains("3 values"), "{err}");
        let err = SpatialMask::new(1, 2, vec![0.0, 1.5])
            .unwrap_err()
            .to_string();
        assert!(err.contains("[0, 1]") && err.contains("1.5"), "{err}");
        assert!(SpatialMask::new(1, 1, vec![f32::NAN]).is_err());
        let m = SpatialMask::new(1, 4, vec![0.0, 0.5, 1.0, 1.0]).unwrap();
        assert_eq!(m.mass(), 2.25);
        assert_eq!(m.area_share(), 2.25 / 4.0);
        assert_eq!(m.complement().values, [1.0, 0.5, 0.0, 0.0]);
        assert!(!m.is_empty() && SpatialMask::new(1, 2, vec![0.0, 0.001]).unwrap().is_empty());
    }
}
