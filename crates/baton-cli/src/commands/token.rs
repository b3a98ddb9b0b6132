//! `baton token create|ls|revoke`: the API's tokens (on this machine's store, or the
//! server's with `--server` and an admin token). A token is printed once, at creation.

use anyhow::{anyhow, Result};
use baton_api::Role;

use crate::cli::{TokenAction, TokenArgs};
use crate::context::Context;
use crate::door::Door;

pub async fn run(ctx: &Context, args: TokenArgs) -> Result<u8> {
    let door = Door::open(ctx)?;
    match args.action {
        TokenAction::Create { name, role } => {
            let role = Role::parse(&role).ok_or_else(|| anyhow!("unknown role {role}"))?;
            let made = door.create_token(&name, role).await?;
            if ctx.global.json {
                crate::output::json(&made)?;
            } else {
                println!("{}", made.token);
                eprintln!(
                    "token {} ({}) made; it is shown only now: send it as `Authorization: Bearer <token>` (BATON_TOKEN for `baton --server`)",
                    made.name, made.role
                );
            }
        }
        TokenAction::Ls => {
            let tokens = door.tokens().await?;
            if ctx.global.json {
                crate::output::json(&tokens)?;
                return Ok(crate::exit::OK);
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.role.to_string(),
                        crate::output::time(t.created_at),
                        t.last_used_at
                            .map(crate::output::time)
                            .unwrap_or_else(|| "never".into()),
                    ]
                })
                .collect();
            crate::output::table(&["NAME", "ROLE", "CREATED", "LAST USED"], &rows);
        }
        TokenAction::Revoke { name } => {
            door.revoke_token(&name).await?;
            eprintln!("token {name} revoked");
        }
    }
    Ok(crate::exit::OK)
}
