//! The `api-gateway` binary.
//!
//! - `api-gateway` (no command): [`api_gateway::run`] behind the front door every service shares
//!   (`service_common::service`), until SIGTERM/SIGINT.
//! - `api-gateway dev-token [--admin] …`: prints a bearer token for a development stack (`make token`).

use anyhow::Context as _;
use api_gateway::dev_token::{self, DevClaims};
use clap::{Parser, Subcommand};
use service_common::config::Settings;

#[derive(Parser)]
#[command(
    name = "api-gateway",
    version,
    about = "Hookline's REST API (TMI-compatible webhook endpoints)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print an HS256 bearer token for a development stack and exit.
    DevToken {
        /// Make the caller an administrator (`tmi_is_administrator: true`).
        #[arg(long)]
        admin: bool,
        /// The caller id (`sub`).
        #[arg(long, default_value = "dev-admin")]
        sub: String,
        /// Scopes to grant (repeatable), e.g. `hookline:events:write`.
        #[arg(long)]
        scope: Vec<String>,
        /// Lifetime, seconds (at most 86400: development tokens do not live long).
        #[arg(long, default_value_t = dev_token::MAX_TTL_SECS,
              value_parser = clap::value_parser!(u64).range(1..=dev_token::MAX_TTL_SECS))]
        ttl_secs: u64,
        /// The HS256 secret to sign with; else `HOOKLINE_DEV_JWT_SECRET`. Required: the configured
        /// `auth.jwt_secret` is never used.
        #[arg(long)]
        secret: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        None => serve(),
        Some(Command::DevToken {
            admin,
            sub,
            scope,
            ttl_secs,
            secret,
        }) => {
            // Configuration that loads with HS256 supplies the issuer and audience the gateway checks; never
            // the secret, which must be given explicitly.
            let configured = Settings::load()
                .ok()
                .map(|s| s.auth)
                .filter(|a| a.jwt_algorithm == "HS256");
            let secret = secret
                .filter(|s| !s.is_empty())
                .or_else(|| {
                    std::env::var(dev_token::SECRET_ENV)
                        .ok()
                        .filter(|s| !s.is_empty())
                })
                .with_context(|| {
                    format!(
                        "no secret: pass --secret or set {} (`make token` passes config/dev.toml's)",
                        dev_token::SECRET_ENV
                    )
                })?;
            let non_empty = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
            let claims = DevClaims {
                sub,
                admin,
                scopes: scope,
                ttl_secs,
                issuer: configured.as_ref().and_then(|a| non_empty(&a.jwt_issuer)),
                audience: configured.as_ref().and_then(|a| non_empty(&a.jwt_audience)),
            };
            let token = dev_token::mint(&secret, &claims, chrono::Utc::now().timestamp())?;
            println!("{token}");
            Ok(())
        }
    }
}

#[tokio::main]
async fn serve() -> anyhow::Result<()> {
    service_common::service::main(
        api_gateway::SERVICE,
        api_gateway::readiness,
        api_gateway::run,
    )
    .await
}
