//! `baton config`: the resolved, normalised project as a file baton reads back to the same
//! project (YAML, or JSON with --json), written by `baton_spec::render`.

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
        print!("{}", baton_spec::render::json(&project));
    } else {
        print!("{}", baton_spec::render::yaml(&project));
    }
    Ok(crate::exit::OK)
}
