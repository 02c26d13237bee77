//! Bad configurations: each gives its expected message at its line and column, and none panics.

use kinit::config::{self, ConfigError};
use kinit::yaml::{Position, Source};

use crate::support::{kinit, run, stdout};

const BASE: &str = "\
apiVersion: kinit.io/v1alpha1
kind: Cluster
metadata:
  name: test
kubernetesVersion: v1.20.2
hosts:
  - name: cp1
    address: 10.0.0.1
    roles: [control-plane]
  - name: w1
    address: 10.0.0.2
    roles: [worker]
";

struct Case {
    name: &'static str,
    text: String,
    message: &'static str,
    at: Option<(usize, usize)>,
}

fn replace(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

fn append(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn cases() -> Vec<Case> {
    let case = |name, text, message, at| Case {
        name,
        text,
        message,
        at,
    };
    vec![
        case(
            "unclosed flow sequence",
            replace("roles: [worker]", "roles: [worker"),
            "did not find expected ',' or ']'",
            Some((13, 1)),
        ),
        case(
            "tab indentation",
            replace("    address: 10.0.0.2", "\taddress: 10.0.0.2"),
            "found a tab character",
            Some((11, 1)),
        ),
        case(
            "version as a number",
            replace("v1.20.2", "1.20"),
            "kubernetesVersion: \"1.20\" is not a Kubernetes version",
            Some((5, 20)),
        ),
        case(
            "version is a word",
            replace("v1.20.2", "latest"),
            "kubernetesVersion: \"latest\" is not a Kubernetes version",
            Some((5, 20)),
        ),
        case(
            "address out of range",
            replace("10.0.0.2", "10.0.0.300"),
            "hosts[1].address: \"10.0.0.300\" is not an IP address",
            Some((11, 14)),
        ),
        case(
            "address is a list",
            replace("address: 10.0.0.2", "address: [10.0.0.2]"),
            "hosts[1].address: invalid type: sequence, expected an IP address",
            Some((11, 14)),
        ),
        case(
            "unknown top-level field",
            append("hostz: []\n"),
            "unknown field `hostz`",
            Some((13, 1)),
        ),
        case(
            "misspelt host field",
            replace("    address: 10.0.0.2", "    adress: 10.0.0.2"),
            "hosts[1]: unknown field `adress`, expected one of",
            Some((11, 5)),
        ),
        case(
            "unknown role",
            replace("[worker]", "[master]"),
            "hosts[1].roles[0]: unknown variant `master`, expected one of `control-plane`, `etcd`, `worker`",
            Some((12, 13)),
        ),
        case(
            "wrong apiVersion",
            replace("kinit.io/v1alpha1", "kinit.io/v1"),
            "apiVersion: unknown variant `kinit.io/v1`, expected `kinit.io/v1alpha1`",
            Some((1, 13)),
        ),
        case(
            "wrong kind",
            replace("kind: Cluster", "kind: Deployment"),
            "kind: unknown variant `Deployment`, expected `Cluster`",
            Some((2, 7)),
        ),
        case(
            "missing hosts",
            BASE.lines().take(5).map(|l| format!("{l}\n")).collect(),
            "missing field `hosts`",
            Some((1, 1)),
        ),
        case(
            "port out of range",
            append("ssh:\n  port: 70000\n"),
            "ssh.port: invalid value: integer `70000`, expected u16",
            Some((14, 9)),
        ),
        case(
            "port zero",
            append("ssh:\n  port: 0\n"),
            "ssh.port: 0 is not a port",
            Some((14, 9)),
        ),
        case("empty file", String::new(), "the file is empty", None),
        case(
            "a list instead of a cluster",
            "- cp1\n- w1\n".into(),
            "invalid type: sequence, expected struct Cluster",
            Some((1, 1)),
        ),
        case(
            "duplicate key",
            append("kind: Cluster\n"),
            "duplicate key `kind` (first given at line 2)",
            Some((13, 1)),
        ),
        case(
            "node name with capitals",
            replace("name: w1", "name: Node_1"),
            "hosts[1].name: \"Node_1\" is not a valid node name",
            Some((10, 11)),
        ),
        case(
            "prefix too long",
            append("networking:\n  podCIDR: 10.244.0.0/33\n"),
            "networking.podCIDR: \"10.244.0.0/33\" is not a CIDR",
            Some((14, 12)),
        ),
        case(
            "host bits set",
            append("networking:\n  podCIDR: 10.244.1.0/16\n"),
            "networking.podCIDR: \"10.244.1.0/16\" has host bits set; the network is 10.244.0.0/16",
            Some((14, 12)),
        ),
        case(
            "overlapping networks",
            append("networking:\n  podCIDR: 10.244.0.0/16\n  serviceCIDR: 10.244.128.0/20\n"),
            "networking.serviceCIDR: 10.244.128.0/20 overlaps the pod network 10.244.0.0/16",
            Some((15, 16)),
        ),
        case(
            "service network without room for DNS",
            append("networking:\n  serviceCIDR: 10.96.0.0/29\n"),
            "networking.serviceCIDR: 10.96.0.0/29 has no room for the cluster DNS address",
            Some((14, 16)),
        ),
        case(
            "mixed IP families",
            append("networking:\n  serviceCIDR: fd00:96::/112\n"),
            "must be of the same IP family",
            Some((14, 16)),
        ),
        case(
            "duplicate name",
            replace("name: w1", "name: cp1"),
            "hosts[1].name: \"cp1\" is already the name of hosts[0]",
            Some((10, 11)),
        ),
        case(
            "duplicate address",
            replace("10.0.0.2", "10.0.0.1"),
            "hosts[1].address: 10.0.0.1 is already the address of hosts[0] (cp1)",
            Some((11, 14)),
        ),
        case(
            "no control plane",
            replace("[control-plane]", "[worker]"),
            "hosts: no host has the control-plane role",
            Some((7, 3)),
        ),
        case(
            "etcd on a worker",
            replace("[worker]", "[worker, etcd]"),
            "hosts[1].roles: etcd runs stacked on control-plane hosts",
            Some((12, 12)),
        ),
        case(
            "host inside the pod network",
            replace("10.0.0.2", "10.244.3.4"),
            "hosts[1].address: 10.244.3.4 lies inside the pod network 10.244.0.0/16",
            Some((11, 14)),
        ),
        case(
            "no roles",
            replace("roles: [worker]", "roles: []"),
            "hosts[1].roles: a host needs at least one role",
            Some((12, 12)),
        ),
        case(
            "old Kubernetes",
            replace("v1.20.2", "v1.19.9"),
            "kubernetesVersion: v1.19.9 is not supported",
            Some((5, 20)),
        ),
        case(
            "CA shorter than leaves",
            append("certificates:\n  validityDays: 400\n  caValidityDays: 300\n"),
            "certificates.caValidityDays: 300 days is shorter than the leaf validity of 400 days",
            Some((15, 19)),
        ),
        case(
            "bad extra SAN",
            append("controlPlane:\n  extraSANs: [\"not a name\"]\n"),
            "controlPlane.extraSANs[0]: \"not a name\" is neither an IP address nor a DNS name",
            Some((14, 15)),
        ),
        case(
            "bad endpoint",
            append("controlPlane:\n  endpoint: \"api:99999\"\n"),
            "controlPlane.endpoint: \"api:99999\" is not an endpoint",
            Some((14, 13)),
        ),
        case(
            "bad jump host",
            replace(
                "roles: [worker]",
                "roles: [worker]\n    ssh: {jump: [\"@bastion\"]}",
            ),
            "hosts[1].ssh.jump[0]: \"@bastion\" is not a jump host",
            Some((13, 18)),
        ),
    ]
}

#[test]
fn every_bad_configuration_is_reported_where_it_is() {
    let cases = cases();
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for case in &cases {
        let source = Source::new("cluster.yaml", case.text.clone());
        // A panic here fails the test with the case's name in the backtrace.
        let result = std::panic::catch_unwind(|| config::parse(&source));
        let errors = match result {
            Err(_) => {
                failures.push(format!("{}: panicked", case.name));
                continue;
            }
            Ok(Ok(_)) => {
                failures.push(format!("{}: accepted", case.name));
                continue;
            }
            Ok(Err(ConfigError::Invalid { errors })) => errors,
            Ok(Err(other)) => {
                failures.push(format!("{}: {other}", case.name));
                continue;
            }
        };
        let first = &errors[0];
        let expected_position = case.at.map(|(line, column)| Position { line, column });
        if !first.message.contains(case.message) || first.position != expected_position {
            failures.push(format!(
                "{}: expected {:?} at {:?}, got {:?} at {:?}",
                case.name, case.message, case.at, first.message, first.position
            ));
        }
        // Every message leads with file:line:column, as compilers print them.
        if let Some((line, column)) = case.at
            && !first
                .to_string()
                .starts_with(&format!("cluster.yaml:{line}:{column}: "))
        {
            failures.push(format!("{}: not led by its location: {first}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = BASE
        .replace("name: w1", "name: cp1")
        .replace("10.0.0.2", "10.0.0.1");
    let Err(ConfigError::Invalid { errors }) = config::parse(&Source::new("c.yaml", text)) else {
        panic!("accepted")
    };
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn an_even_etcd_membership_is_a_warning_not_an_error() {
    let text = BASE.replace("[worker]", "[control-plane]");
    let (_, warnings) = config::parse(&Source::new("c.yaml", text)).unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].message.contains("2 etcd members"),
        "{}",
        warnings[0]
    );
}

#[test]
fn validate_command_reports_each_problem_on_its_line_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cluster.yaml");
    std::fs::write(&path, BASE.replace("10.0.0.2", "10.0.0.300")).unwrap();
    let output = kinit()
        .args(["config", "validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        format!(
            "error: {}:11:14: hosts[1].address: \"10.0.0.300\" is not an IP address",
            path.display()
        )
    );

    std::fs::write(&path, BASE).unwrap();
    let ok = stdout(&run(kinit().args(["config", "validate", "-c"]).arg(&path)));
    assert!(
        ok.contains("valid: cluster test, Kubernetes v1.20.2, 2 hosts"),
        "{ok}"
    );
}

#[test]
fn the_example_configuration_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cluster.yaml");
    let loaded = config::load(std::path::Path::new(example)).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.cluster.control_planes().count(), 3);
}
