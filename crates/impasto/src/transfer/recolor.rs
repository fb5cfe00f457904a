//! Colour preservation applied to a transfer's images: what the network sees of the content,
//! the styles and the start image, and how the output gets the content's colours back.

use crate::color::{self, PreserveColor};
use crate::image_io::Image;
use crate::Result;

/// The content at the working size and the colour mode, applied to every image of a transfer.
pub(super) struct Recolor<'c> {
    mode: PreserveColor,
    content: &'c Image,
}

impl<'c> Recolor<'c> {
    pub fn new(mode: PreserveColor, content: &'c Image) -> Self {
        Recolor { mode, content }
    }

    /// The content as the losses see it: its luminance alone in luminance mode.
    pub fn content(&self) -> Image {
        match self.mode {
            PreserveColor::Luminance => color::luminance_only(self.content),
            _ => self.content.clone(),
        }
    }

    /// A style image (at its working size) as the losses see it: its luminance matched to the
    /// content's, or its colours matched to the content's.
    pub fn style(&self, style: Image) -> Result<Image> {
        match self.mode {
            PreserveColor::None => Ok(style),
            PreserveColor::Luminance => Ok(color::matched_luminance(&style, self.content)),
            PreserveColor::Histogram => color::match_color_statistics(&style, self.content),
        }
    }

    /// A start image other than the content or a style: in luminance mode only its luminance.
    pub fn start(&self, rgb: Vec<f32>, width: usize, height: usize) -> Result<Vec<f32>> {
        if self.mode != PreserveColor::Luminance {
            return Ok(rgb);
        }
        let image = Image::new(width, height, rgb, None)?;
        Ok(color::luminance_only(&image).rgb)
    }

    /// In luminance mode, the content's RGB that gives every output image its chroma.
    pub fn chroma_source(&self) -> Option<Vec<f32>> {
        (self.mode == PreserveColor::Luminance).then(|| self.content.rgb.clone())
    }
}
