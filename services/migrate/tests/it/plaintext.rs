//! Migrate's TLS mode against a server without TLS (issue #16): the default (`verify-full`) refuses it;
//! `prefer` and `disable` are explicit choices, and a plaintext session is warned about every time.

use crate::harness::*;

#[tokio::test]
async fn default_refuses_plaintext_and_explicit_plaintext_is_warned_about() {
    let w = World::start().await;
    let base = w.pg.url();
    let run = |url: String| {
        let w = &w;
        async move {
            let (code, out, err) = w
                .migrate_with(&[("HOOKLINE__MIGRATE__POSTGRES_URL", url.as_str())], &[])
                .await;
            (code, format!("{out}\n{err}"))
        }
    };

    // No sslmode: verify-full, so a server (or a man-in-the-middle) answering "no TLS" is refused.
    let (code, output) = run(base.clone()).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("(sslmode=verify-full)"), "{output}");
    assert!(!output.contains("imported"), "{output}");

    // prefer and disable still work when asked for, and say that the session is plaintext.
    for mode in ["prefer", "disable"] {
        let (code, output) = run(format!("{base}?sslmode={mode}")).await;
        assert_eq!(code, 0, "{mode}: {output}");
        let warning = output
            .lines()
            .find(|l| l.contains("PLAINTEXT"))
            .unwrap_or_else(|| panic!("{mode}: no plaintext warning in:\n{output}"));
        assert!(warning.contains("WARN"), "{warning}");
        assert!(warning.contains(&format!("sslmode={mode}")), "{warning}");
    }
}
