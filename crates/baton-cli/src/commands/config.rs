//! `baton config`: the resolved, normalised project, as YAML (or JSON with --json).

use anyhow::Result;

use crate::cli::ConfigArgs;
use crate::context::Context;

pub fn run(ctx: &Context, args: ConfigArgs) -> Result<u8> {
    let project = ctx.project(&[])?;
    if args.quiet {
        return Ok(crate::exit::OK);
    }
    if args.services {
        for name in project.services.keys() {
            println!("{name}");
        }
    } else if ctx.global.json {
        crate::output::json(&project)?;
    } else {
        print!("{}", serde_yaml::to_string(&project)?);
    }
    Ok(crate::exit::OK)
}
