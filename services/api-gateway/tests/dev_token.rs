//! `api-gateway dev-token` as a user runs it (issue #16): an explicit secret is required, the configured
//! `auth.jwt_secret` is never used, and the lifetime is capped.
#![expect(clippy::expect_used, reason = "tests")]

use std::process::{Command, Output};

const CONFIGURED: &str = "configured-secret-abcdefghijklmnopqrstuv";

fn dev_token(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_api-gateway"))
        .arg("dev-token")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run api-gateway dev-token")
}

#[test]
fn no_explicit_secret_no_token_even_when_one_is_configured() {
    let out = dev_token(&["--admin"], &[("HOOKLINE__AUTH__JWT_SECRET", CONFIGURED)]);
    assert!(!out.status.success(), "minted without an explicit secret");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HOOKLINE_DEV_JWT_SECRET"), "{err}");
}

#[test]
fn the_lifetime_is_capped_at_a_day() {
    let out = dev_token(
        &["--admin", "--secret", CONFIGURED, "--ttl-secs", "86401"],
        &[],
    );
    assert!(!out.status.success(), "a token for more than a day");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ttl-secs"), "{err}");

    for env in [vec![], vec![("HOOKLINE_DEV_JWT_SECRET", CONFIGURED)]] {
        let args: &[&str] = if env.is_empty() {
            &["--admin", "--secret", CONFIGURED]
        } else {
            &["--admin"]
        };
        let out = dev_token(args, &env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).expect("utf-8");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.validate_aud = false;
        let key = jsonwebtoken::DecodingKey::from_secret(CONFIGURED.as_bytes()).expect("key");
        let claims = jsonwebtoken::decode::<serde_json::Value>(token.trim(), &key, &v)
            .expect("signed with the explicit secret")
            .claims;
        let ttl = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
        assert_eq!(ttl, 86_400, "the default is the cap");
    }
}
