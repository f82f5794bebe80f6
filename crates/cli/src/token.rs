//! `switchboard token user`: development JWTs signed with the data dir's key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use switchboard_auth::{AUDIENCE, DEV_KEY_LEN, JwtSigner, UserClaims};
use switchboard_domain::names::validate_workspace_id;
use switchboard_domain::permission::Role;
use switchboard_store::keyfile;

use switchboard_server::DEV_JWT_KEY_FILE;

// `--ttl`'s help states the leeway in words.
const _: () = assert!(switchboard_auth::CLOCK_SKEW_LEEWAY_SECONDS == 30);

/// Token commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Prints a user JWT signed with the data dir's development key.
    ///
    /// Example: switchboard token user --subject alice --role acme=OPERATOR --ttl 8h
    User(UserTokenOpt),
}

#[derive(Debug, Args)]
pub(crate) struct UserTokenOpt {
    /// Data directory holding the development signing key (created if absent).
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "./.switchboard")]
    data_dir: PathBuf,
    /// The user's name (JWT `sub`).
    #[arg(long)]
    subject: String,
    /// A role in a workspace, WORKSPACE=ROLE with ROLE one of MEMBER, AUTHOR,
    /// OPERATOR, OWNER. Repeat for several workspaces.
    #[arg(long = "role", value_name = "WORKSPACE=ROLE")]
    roles: Vec<String>,
    /// How long the token is valid, e.g. 30m, 1h, 7d. Servers accept it for
    /// 30 s more, for clocks that disagree a little; past that they answer
    /// "token has expired", and a new token is needed.
    #[arg(long, default_value = "1h", value_parser = switchboard_domain::duration::parse)]
    ttl: std::time::Duration,
    /// Optional issuer (JWT `iss`).
    #[arg(long)]
    issuer: Option<String>,
}

pub(crate) fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::User(opt) => {
            println!("{}", user_token(&opt)?);
            Ok(())
        }
    }
}

fn user_token(opt: &UserTokenOpt) -> anyhow::Result<String> {
    if opt.subject.trim().is_empty() {
        bail!("--subject must not be empty");
    }
    let mut roles = BTreeMap::new();
    for role in &opt.roles {
        let Some((workspace, name)) = role.split_once('=') else {
            bail!("--role '{role}' must be WORKSPACE=ROLE, e.g. acme=OPERATOR");
        };
        validate_workspace_id(workspace)
            .map_err(|why| anyhow::anyhow!("--role '{role}': workspace id {why}"))?;
        let parsed = Role::parse(name).with_context(|| {
            format!("--role '{role}': role must be MEMBER, AUTHOR, OPERATOR or OWNER")
        })?;
        roles.insert(workspace.to_owned(), parsed.as_str().to_owned());
    }
    let key = keyfile::load_or_create(&opt.data_dir.join(DEV_JWT_KEY_FILE), DEV_KEY_LEN)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = UserClaims {
        sub: opt.subject.clone(),
        exp: now + opt.ttl.as_secs(),
        aud: AUDIENCE.to_owned(),
        iss: opt.issuer.clone(),
        iat: Some(now),
        roles,
    };
    Ok(JwtSigner::hs256(&key).sign(&claims)?)
}
