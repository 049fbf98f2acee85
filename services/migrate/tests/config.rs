//! `[migrate]` settings (database URL, CA file) from the environment (its own test binary: the environment
//! is per process).

#![expect(clippy::unwrap_used, reason = "tests")]

use service_common::config::Settings;

/// `pairs` on top of what every service needs (the whole file is validated, auth included).
fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![(
        "HOOKLINE__AUTH__JWT_SECRET".to_owned(),
        "config-test-secret-abcdefghijklmnopqrstuv".to_owned(),
    )];
    env.extend(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

#[test]
fn postgres_url_defaults_to_empty_and_comes_from_the_environment() {
    assert_eq!(
        Settings::load_from(env(&[]))
            .unwrap()
            .migrate
            .postgres_url
            .expose(),
        ""
    );
    for url in [
        "postgres://tmi:secret@db:5432/tmi",
        "postgresql://tmi@db/tmi",
        "host=db user=tmi dbname=tmi",
    ] {
        let s = Settings::load_from(env(&[("HOOKLINE__MIGRATE__POSTGRES_URL", url)])).unwrap();
        assert_eq!(s.migrate.postgres_url.expose(), url);
    }
}

#[test]
fn a_postgres_url_of_another_scheme_is_refused_naming_the_key() {
    let err = Settings::load_from(env(&[(
        "HOOKLINE__MIGRATE__POSTGRES_URL",
        "mysql://db/tmi",
    )]))
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("migrate.postgres_url"), "{err}");
}

#[test]
fn postgres_ca_file_defaults_to_empty_and_comes_from_the_environment() {
    let s = Settings::load_from(env(&[])).unwrap();
    assert_eq!(s.migrate.postgres_ca_file, "");
    let s = Settings::load_from(env(&[(
        "HOOKLINE__MIGRATE__POSTGRES_CA_FILE",
        "/etc/hookline/postgres-ca/ca.crt",
    )]))
    .unwrap();
    assert_eq!(
        s.migrate.postgres_ca_file,
        "/etc/hookline/postgres-ca/ca.crt"
    );
}
