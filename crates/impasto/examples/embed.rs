// Style transfer from a program: `cargo run --release --example embed -- PHOTO PAINTING OUT.png`
// (weights from `impasto weights fetch`). The crate documentation and the README show this file.
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use impasto::model::Architecture;
use impasto::transfer::{Stop, Transfer, TransferSettings};
use impasto::{image_io, weights, ErrorKind};

fn main() -> impasto::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [photo, painting, output] = args.as_slice() else {
        eprintln!("usage: embed PHOTO PAINTING OUT.png");
        std::process::exit(2);
    };

    // Any accepted file: the cache `impasto weights fetch` fills, a torchvision checkpoint, ...
    let weights = weights::load(&weights::default_weights_path(Architecture::Vgg19)?)?;
    let photo = image_io::load(Path::new(photo))?;
    let painting = image_io::load(Path::new(painting))?;
    let settings = TransferSettings {
        size: 256,
        ..TransferSettings::default() // the paper's: VGG19, relu4_2 and relu1_1…relu5_1, L-BFGS
    };

    // Shared (in an Arc) with whatever may cancel, a button or a signal handler: setting it stops
    // the run after the current iteration.
    let cancel = AtomicBool::new(false);
    let mut transfer = match Transfer::new(&weights, &photo, &[painting], &settings) {
        Err(e) if e.kind() == ErrorKind::Limits => {
            eprintln!("too large for this machine's memory: {e}");
            std::process::exit(1);
        }
        other => other?,
    };
    let summary = transfer.run(300, |_, record| {
        println!("{:4} {:.4e}", record.iteration, record.parts.total);
        if cancel.load(Ordering::Relaxed) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    if summary.stop == Stop::Diverged {
        eprintln!("diverged; saving the best image so far");
    }
    // Written to a temporary file and renamed: never a half-written output.
    image_io::save(&transfer.best_image(), Path::new(output))
}
