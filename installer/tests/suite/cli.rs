//! The command line's contract: help, version, exit codes, one-line causes.

use crate::support::{kinit, run, stdout};

#[test]
fn help_and_version() {
    let help = stdout(&run(kinit().arg("--help")));
    for command in ["config", "certs", "token"] {
        assert!(help.contains(command), "{help}");
    }
    let version = stdout(&run(kinit().arg("--version")));
    assert_eq!(
        version.trim(),
        format!("kinit {}", env!("CARGO_PKG_VERSION"))
    );
    for sub in [
        &["certs", "generate", "--help"][..],
        &["certs", "renew", "--help"],
        &["config", "validate", "--help"],
    ] {
        let text = stdout(&run(kinit().args(sub)));
        assert!(text.len() > 200, "{sub:?} help is too thin: {text}");
    }
}

#[test]
fn failure_is_one_line_and_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("absent.yaml");
    let output = kinit()
        .args(["config", "validate", "-c"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("absent.yaml"),
        "{stderr}"
    );

    let output = kinit().args(["certs", "frobnicate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn generated_tokens_have_the_bootstrap_form() {
    let token = stdout(&run(kinit().args(["token", "generate"])));
    let token = token.trim();
    let (id, secret) = token.split_once('.').unwrap();
    assert_eq!((id.len(), secret.len()), (6, 16));
    assert!(
        token
            .bytes()
            .all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit())
    );
}

#[test]
fn schema_is_json_schema_with_the_model() {
    let schema: serde_json::Value =
        serde_json::from_str(&stdout(&run(kinit().args(["config", "schema"])))).unwrap();
    assert!(
        schema["$schema"]
            .as_str()
            .unwrap()
            .contains("json-schema.org")
    );
    assert_eq!(
        schema["required"],
        serde_json::json!([
            "apiVersion",
            "kind",
            "metadata",
            "kubernetesVersion",
            "hosts"
        ])
    );
    assert_eq!(schema["additionalProperties"], false);
}
