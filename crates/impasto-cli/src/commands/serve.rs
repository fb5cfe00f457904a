//! `impasto serve`: the studio (the `impasto-studio` crate) with the flags resolved.

use anyhow::Context;

use crate::cli::ServeArgs;

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let data = match &args.data {
        Some(d) => d.clone(),
        None => impasto_studio::Config::default_data_dir()
            .context("no data directory on this platform: pass --data DIR")?,
    };
    let config = impasto_studio::Config {
        host: args.host.clone(),
        port: args.port,
        open: args.open,
        ..impasto_studio::Config::new(data)
    };
    impasto_studio::serve(config)?;
    Ok(())
}
