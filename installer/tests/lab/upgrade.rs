//! An upgrade between two builds of Debian's Kubernetes source: v1.20.2 as built, and the same
//! source stamped v1.20.3 (`kinit bundle create --source lab --kubernetes-version v1.20.3`):
//! only one Kubernetes version can be built here, so the "new" release differs from the old by
//! its version stamp, which is what every component reports and every check compares.
//!
//! While it runs, a probe sends requests to a 2-replica workload through a NodePort without
//! pause; none may fail. The operator is killed half-way (after the first node), and
//! `--resume` finishes the upgrade.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cluster::{
    address_of, admin_kubeconfig, assert_success, init, kubectl_ok, text, wait_ready,
};
use crate::support::{TestLab, eventually, run, stdout};

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 15
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - labelSelector: {matchLabels: {app: web}}
              topologyKey: kubernetes.io/hostname
      containers:
        - name: web
          image: kinit.io/busybox:1.35
          imagePullPolicy: Never
          command: ["/bin/sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
          # Serve on while the endpoint's removal reaches every node's kube-proxy.
          lifecycle: {preStop: {exec: {command: ["sleep", "5"]}}}
---
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
"#;

/// One HTTP request through the NodePort: answered 200, or what went wrong.
fn probe(address: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(
        &format!("{address}:30080").parse().unwrap(),
        Duration::from_secs(2),
    )
    .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    let read = stream.read_to_string(&mut response);
    if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("answer {:?} ({read:?})", response.lines().next()))
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn upgrade_node_by_node_without_losing_a_request() {
    let lab = TestLab::new("upg");
    run(lab.kinit().args(["lab", "up", "--nodes", "3"]));
    let config = lab.inventory();
    // The new version's bundle (built from the same source, stamped v1.20.3; cached).
    run(lab.kinit().args([
        "bundle",
        "create",
        "--source",
        "lab",
        "--kubernetes-version",
        "v1.20.3",
    ]));
    assert_success("kinit init", &init(&lab, &config, &[]));
    let admin = admin_kubeconfig(&lab, &config);
    wait_ready(&admin, 3);
    let manifest = lab.dir().join("web.yaml");
    std::fs::write(&manifest, WEB).unwrap();
    kubectl_ok(&admin, &["apply", "-f", manifest.to_str().unwrap()]).unwrap();
    kubectl_ok(
        &admin,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    )
    .unwrap();

    let plan = run(lab.kinit().args(["upgrade", "plan", "-c"]).arg(&config));
    let plan = stdout(&plan);
    assert!(plan.contains("runs Kubernetes v1.20.2"), "{plan}");
    assert!(plan.contains("v1.20.3  ok"), "{plan}");

    // The probe, through node2's NodePort, from start to end of the upgrade.
    let inventory = std::fs::read_to_string(&config).unwrap();
    let address = address_of(&inventory, "node2");
    eventually("the workload answers", Duration::from_secs(60), || {
        probe(&address)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let prober = {
        let (stop, answered, failures, address) = (
            stop.clone(),
            answered.clone(),
            failures.clone(),
            address.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match probe(&address) {
                    Ok(()) => {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => failures.lock().unwrap().push(format!("{} {e}", now())),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // The operator is killed once the first node is done and the second is under way.
    let mut child = lab
        .kinit()
        .args(["upgrade", "apply", "v1.20.3", "-o", "json", "-c"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut killed = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let trigger = event["event"] == "task_result" && event["host"] == "node2";
        seen.push(event);
        if trigger {
            child.kill().unwrap();
            killed = true;
            break;
        }
    }
    let interrupted = child.wait_with_output().unwrap();
    assert!(
        killed,
        "node2's upgrade never started: {seen:#?}\n{}",
        text(&interrupted)
    );
    let progress =
        std::fs::read_to_string(config.parent().unwrap().join(".kinit/upg/upgrade.json")).unwrap();
    assert!(progress.contains("\"node1\""), "{progress}");

    let resumed = lab
        .kinit()
        .args([
            "upgrade", "apply", "v1.20.3", "--resume", "-o", "json", "-c",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert_success("kinit upgrade apply --resume", &resumed);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    prober.join().unwrap();
    let answered = answered.load(Ordering::SeqCst);
    let failures = failures.lock().unwrap().clone();
    eprintln!(
        "probe during the upgrade: {answered} answered, {} failed",
        failures.len()
    );
    if !failures.is_empty() {
        // When: beside what the upgrade was doing.
        let timeline: Vec<String> = seen
            .iter()
            .chain(&crate::cluster::events(&resumed))
            .filter(|e| e["event"] == "task_result")
            .map(|e| format!("{} {} {} {}", e["time"], e["host"], e["task"], e["status"]))
            .collect();
        panic!(
            "requests failed during the upgrade ({answered} answered):\n{}\n\ntimeline:\n{}",
            failures.join("\n"),
            timeline.join("\n")
        );
    }
    assert!(answered > 100, "the probe barely ran: {answered}");

    // Every node and the API server report the new version; nothing is left cordoned.
    let nodes = kubectl_ok(&admin, &["get", "nodes", "--no-headers"]).unwrap();
    assert_eq!(
        nodes
            .lines()
            .filter(|l| l.contains(" Ready ") && l.contains("v1.20.3"))
            .count(),
        3,
        "{nodes}"
    );
    assert!(!nodes.contains("SchedulingDisabled"), "{nodes}");
    let version = kubectl_ok(&admin, &["version", "-o", "json"]).unwrap();
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.20.3");
    let backups = stdout(&run(lab
        .kinit()
        .args(["backup", "list", "-c"])
        .arg(&config)));
    assert_eq!(
        backups.lines().count(),
        2,
        "one backup, taken before the upgrade: {backups}"
    );

    // The configuration still says v1.20.2: init refuses to downgrade, and says what to do.
    let refused = init(&lab, &config, &[]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("set kubernetesVersion: v1.20.3"),
        "{}",
        text(&refused)
    );
}
