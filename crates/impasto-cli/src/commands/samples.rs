use impasto::cli_support::samples;

use crate::cli::SamplesCommand;

pub fn run(cmd: &SamplesCommand) -> anyhow::Result<()> {
    let SamplesCommand::Fetch { dir } = cmd;
    for s in samples::ALL {
        eprintln!("{}: {} ({})", s.file_name, s.description, s.requirement);
    }
    for path in samples::fetch_samples(dir)? {
        println!("{}", path.display());
    }
    Ok(())
}
