//! The `pimgate` command line: check-config, migrate, token management and the serve banner.

use std::process::Command;

fn pimgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pimgate"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PIMGATE_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn check_config_accepts_the_shipped_file() {
    let out = pimgate()
        .args(["check-config", "config/pimgate.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("config OK"));
}

#[test]
fn check_config_names_the_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:1\"\nport = 8080\n").unwrap();
    let out = pimgate().arg("check-config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port"), "{err}");
}

#[test]
fn check_config_names_a_bad_value_and_its_variable() {
    let out = pimgate()
        .args(["check-config", "config/pimgate.toml"])
        .env("PIMGATE_DATABASE_URL", "mysql://nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("database.url"), "{err}");
    assert!(
        !err.contains("nope"),
        "a database URL may hold a password and is never echoed: {err}"
    );
}

#[test]
fn token_create_list_revoke_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let out = pimgate()
        .arg("migrate")
        .env("PIMGATE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = pimgate()
        .args([
            "token",
            "create",
            "--connection",
            "default",
            "--label",
            "entra",
        ])
        .env("PIMGATE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.starts_with("pgt_") && token.len() == 68, "{token}");
    let out = pimgate()
        .args(["token", "list", "--connection", "default"])
        .env("PIMGATE_DATABASE_URL", &url)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listing.contains("entra"), "{listing}");
    assert!(!listing.contains(&token[4..]), "secrets are never listed");
    let id = listing.split('\t').next().unwrap().to_owned();
    let out = pimgate()
        .args(["token", "revoke", "--connection", "default", &id])
        .env("PIMGATE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = pimgate()
        .args(["token", "create", "--connection", "nosuch"])
        .env("PIMGATE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not configured"));
}

/// Only `serve` and `migrate` change the schema: another command on a database that is
/// behind says so, and leaves it as it is.
#[test]
fn commands_other_than_serve_and_migrate_do_not_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/behind.db", dir.path().display());
    let out = pimgate()
        .args(["token", "list", "--connection", "default"])
        .env("PIMGATE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("behind") && err.contains("pimgate migrate"),
        "{err}"
    );
    let out = pimgate()
        .args(["token", "list", "--connection", "default"])
        .env("PIMGATE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the first call migrated nothing");
    let out = pimgate()
        .arg("migrate")
        .env("PIMGATE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = pimgate()
        .args(["token", "list", "--connection", "default"])
        .env("PIMGATE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn keys_list_and_rotate_show_each_keys_state() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sso.toml");
    let kek = dir.path().join("kek");
    std::fs::write(&kek, "ab".repeat(32)).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[server]\npublic_url = \"https://gw.example\"\n[database]\nurl = \"sqlite://{}/k.db\"\n\
             [connections.corp.sso]\nissuer = \"https://idp.example\"\nclient_id = \"c\"\n\
             [oidc]\nkey_encryption_key_file = \"{}\"\n",
            dir.path().display(),
            kek.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = pimgate()
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["migrate"]);
    let listed = run(&["keys", "list"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains("active (signing)") && listed.contains("ES256"),
        "{listed}"
    );
    run(&["keys", "rotate"]);
    let listed = run(&["keys", "list"]);
    assert!(listed.contains("published (not signing yet)"), "{listed}");
    run(&["keys", "rotate", "--now"]);
    let listed = run(&["keys", "list"]);
    assert!(listed.contains("retired (published until"), "{listed}");
    assert_eq!(listed.matches("active (signing)").count(), 1, "{listed}");
}
