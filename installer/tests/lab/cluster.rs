//! `kinit init`, `kinit join` and `kinit reset` on lab hosts: real etcd, containerd, runc, CNI
//! plugins and Kubernetes binaries from the lab bundle, checked with a real kubectl.
//!
//! The add-ons' images (CoreDNS, the CSI driver) cannot be pulled here: the tests check that
//! the API server accepted every object of their manifests. Workloads use the bundle's busybox
//! image, which the playbook imports into containerd on every node.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::{TestLab, eventually, kubectl, run, stdout};

/// Three pods of the bundle's busybox, one per node, each serving its own name over HTTP, and
/// a ClusterIP Service in front of them.
const ECHO: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - labelSelector: {matchLabels: {app: echo}}
              topologyKey: kubernetes.io/hostname
      containers:
        - name: echo
          image: kinit.io/busybox:1.35
          imagePullPolicy: Never
          command: ["/bin/sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
          ports: [{containerPort: 8080}]
          readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
"#;

/// Units kinit runs; a no-change re-run must not restart any of them.
const UNITS: &str = "containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kinit-routes kinit-api-proxy";

pub(crate) fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub(crate) fn events(output: &Output) -> Vec<serde_json::Value> {
    stdout(output)
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn total(events: &[serde_json::Value], field: &str) -> u64 {
    events
        .iter()
        .filter(|e| e["event"] == "host_summary")
        .map(|e| e[field].as_u64().unwrap_or(0))
        .sum()
}

/// `kinit init -c CONFIG -o json …`.
pub(crate) fn init(lab: &TestLab, config: &Path, extra: &[&str]) -> Output {
    lab.kinit()
        .args(["init", "-c"])
        .arg(config)
        .args(["-o", "json"])
        .args(extra)
        .output()
        .unwrap()
}

pub(crate) fn assert_success(what: &str, output: &Output) {
    assert!(output.status.success(), "{what} failed:\n{}", text(output));
}

/// The admin kubeconfig, as `kinit kubeconfig` prints it, in a file.
pub(crate) fn admin_kubeconfig(lab: &TestLab, config: &Path) -> PathBuf {
    let output = run(lab.kinit().args(["kubeconfig", "-c"]).arg(config));
    let path = lab.home.path().join("admin.conf");
    std::fs::write(&path, &output.stdout).unwrap();
    path
}

pub(crate) fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let output = kubectl(kubeconfig).args(args).output().unwrap();
    if output.status.success() {
        Ok(stdout(&output))
    } else {
        Err(text(&output))
    }
}

/// Waits until `count` nodes are Ready; returns `kubectl get nodes`.
pub(crate) fn wait_ready(kubeconfig: &Path, count: usize) -> String {
    eventually("nodes Ready", Duration::from_secs(180), || {
        let nodes = kubectl_ok(kubeconfig, &["get", "nodes", "--no-headers"])?;
        let ready = nodes
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        if ready == count {
            Ok(nodes)
        } else {
            Err(nodes)
        }
    })
}

/// Each host's kinit units and their main PIDs.
fn unit_pids(lab: &TestLab, nodes: &[&str]) -> Vec<String> {
    nodes
        .iter()
        .map(|node| {
            let output = lab.ssh(
                node,
                &format!(
                    "for u in {UNITS}; do echo \"$u=$(systemctl show -p MainPID --value $u 2>/dev/null)\"; done"
                ),
            );
            format!("{node}: {}", stdout(&output).replace('\n', " "))
        })
        .collect()
}

/// Starts `kinit` with JSON events and stops `node` once an event matches `trigger`; returns
/// the finished run's output.
fn stop_node_when(
    lab: &TestLab,
    mut command: Command,
    node: &str,
    trigger: impl Fn(&serde_json::Value) -> bool,
) -> (Output, Vec<serde_json::Value>) {
    let mut child: Child = command
        .args(["-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout_pipe = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut stopped = false;
    for line in BufReader::new(stdout_pipe).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if !stopped && trigger(&event) {
            run(lab.kinit().args(["lab", "stop", node]));
            stopped = true;
        }
        seen.push(event);
    }
    let output = child.wait_with_output().unwrap();
    assert!(stopped, "the trigger never fired: {seen:#?}");
    (output, seen)
}

pub(crate) fn assert_host_clean(lab: &TestLab, node: &str) {
    let output = lab.ssh(
        node,
        "systemctl list-units --all --no-legend --plain 'kube*' 'etcd*' 'kinit*' 'containerd*';\
         ls -d /etc/kubernetes /var/lib/etcd /var/lib/kubelet /etc/cni/net.d /opt/cni /usr/local/lib/kinit 2>/dev/null;\
         ls -A /var/lib/containerd;\
         findmnt -rn -o TARGET | grep -E '^/(var/lib/kubelet|run/containerd|run/netns)/';\
         ip -o link show cni0 2>/dev/null;\
         ip route show root 10.244.0.0/16;\
         iptables-save | grep -E 'KUBE-|CNI-|kinit-pods';\
         pgrep -a -x 'containerd|containerd-shim|kubelet|etcd|kube-apiserver';\
         true",
    );
    assert_eq!(
        stdout(&output).trim(),
        "",
        "{node} still holds parts of Kubernetes after reset"
    );
}

/// The must-shows of a one-control-plane cluster: init, join, workloads on every node, the
/// pod network across nodes, a Service, kubeadm reading the PKI, add-ons accepted, a
/// no-change re-run, a node halted mid-run and resumed, and reset leaving hosts clean.
#[test]
fn one_control_plane_two_workers() {
    let lab = TestLab::new("cl");
    run(lab.kinit().args(["lab", "up", "--nodes", "3"]));
    let config = lab.inventory();
    // First without node3, which joins afterwards with `kinit join --node`. The variant lives
    // beside cluster.yaml, so both share the cluster's state directory.
    let first = lab.dir().join("first.yaml");
    let inventory = std::fs::read_to_string(&config).unwrap();
    let without_node3 = inventory.split("- name: node3").next().unwrap().to_owned()
        + &inventory[inventory.find("networking:").unwrap()..];
    std::fs::write(&first, without_node3).unwrap();

    let output = init(&lab, &first, &[]);
    assert_success("kinit init", &output);
    assert_eq!(total(&events(&output), "failed"), 0);
    let joined = lab
        .kinit()
        .args(["join", "-c"])
        .arg(&config)
        .args(["--node", "node3", "-o", "json"])
        .output()
        .unwrap();
    assert_success("kinit join --node node3", &joined);
    let mut joined_hosts: Vec<String> = events(&joined)
        .iter()
        .filter(|e| e["event"] == "host_summary")
        .map(|e| e["host"].as_str().unwrap_or_default().to_owned())
        .collect();
    joined_hosts.sort();
    assert_eq!(
        joined_hosts,
        ["node1", "node3"],
        "a worker's join runs on it and on the first control plane only"
    );

    // The operator's kubectl with the admin kubeconfig.
    let admin = admin_kubeconfig(&lab, &config);
    let nodes = wait_ready(&admin, 3);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("node1 ") && l.contains("control-plane")),
        "{nodes}"
    );

    // The systemd cgroup driver, for containerd and the kubelet.
    let drivers = stdout(&lab.ssh(
        "node2",
        "grep -c 'SystemdCgroup = true' /etc/containerd/config.toml; grep '^cgroupDriver' /var/lib/kubelet/config.yaml",
    ));
    assert_eq!(drivers, "1\ncgroupDriver: systemd\n");

    // One pod per node; each reaches the others across nodes, and the Service answers from a
    // node's own network.
    let manifest = lab.home.path().join("echo.yaml");
    std::fs::write(&manifest, ECHO).unwrap();
    kubectl_ok(&admin, &["apply", "-f", manifest.to_str().unwrap()]).unwrap();
    let pods = eventually("echo pods ready", Duration::from_secs(120), || {
        let listing = kubectl_ok(
            &admin,
            &[
                "get",
                "pods",
                "-l",
                "app=echo",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP} {.status.containerStatuses[0].ready}{\"\\n\"}{end}",
            ],
        )?;
        let pods: Vec<Vec<String>> = listing
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .filter(|p: &Vec<String>| p.len() == 4 && p[3] == "true")
            .collect();
        if pods.len() == 3 {
            Ok(pods)
        } else {
            Err(listing)
        }
    });
    let mut on_nodes: Vec<&str> = pods.iter().map(|p| p[1].as_str()).collect();
    on_nodes.sort();
    assert_eq!(on_nodes, ["node1", "node2", "node3"], "{pods:?}");
    for (i, pod) in pods.iter().enumerate() {
        let other = &pods[(i + 1) % pods.len()];
        let answer = kubectl_ok(
            &admin,
            &[
                "exec",
                &pod[0],
                "--",
                "sh",
                "-c",
                // busybox's wget is static glibc and crashes resolving names; nc does not.
                &format!(
                    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {} 8080 | tail -n 1",
                    other[2]
                ),
            ],
        )
        .unwrap_or_else(|e| {
            panic!(
                "{} on {} → {} on {}: {e}",
                pod[0], pod[1], other[0], other[1]
            )
        });
        assert_eq!(answer.trim(), other[0], "pod-to-pod across nodes");
    }
    let cluster_ip = kubectl_ok(
        &admin,
        &["get", "service", "echo", "-o", "jsonpath={.spec.clusterIP}"],
    )
    .unwrap();
    let names: Vec<&str> = pods.iter().map(|p| p[0].as_str()).collect();
    let answer = eventually(
        "the Service answers from node3",
        Duration::from_secs(30),
        || {
            let output = lab.ssh(
            "node3",
            &format!(
                "exec 3<>/dev/tcp/{cluster_ip}/80 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && timeout 5 cat <&3"
            ),
        );
            let body = stdout(&output);
            let last = body.lines().last().unwrap_or_default().trim().to_owned();
            if names.contains(&last.as_str()) {
                Ok(last)
            } else {
                Err(text(&output))
            }
        },
    );
    assert!(names.contains(&answer.as_str()));

    // kubeadm (built from the same Debian source as the bundle) reads kinit's PKI.
    let bundle = unpacked_bundle_kubeadm();
    lab.copy_to("node1", &bundle, "/root/kubeadm");
    let expiration = lab.ssh("node1", "/root/kubeadm certs check-expiration");
    let report = text(&expiration);
    assert!(expiration.status.success(), "{report}");
    for certificate in [
        "admin.conf",
        "apiserver ",
        "apiserver-etcd-client",
        "apiserver-kubelet-client",
        "controller-manager.conf",
        "etcd-healthcheck-client",
        "etcd-peer",
        "etcd-server",
        "front-proxy-client",
        "scheduler.conf",
        "front-proxy-ca",
        "etcd-ca",
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with(certificate))
            .unwrap_or_else(|| panic!("kubeadm does not list {certificate}:\n{report}"));
        assert!(
            line.contains("364d") || line.contains("9y") || line.contains("365d"),
            "{line}"
        );
    }
    assert!(
        !report.contains("MISSING") && !report.contains("invalid"),
        "{report}"
    );

    // Every object of the add-on manifests exists: the API server accepted them all.
    let addons = lab.ssh(
        "node1",
        "for f in /etc/kubernetes/addons/*.yaml; do kubectl --kubeconfig=/etc/kubernetes/admin.conf get -f $f -o name || echo MISSING $f; done",
    );
    let objects = text(&addons);
    assert!(
        !objects.contains("MISSING") && !objects.contains("Error"),
        "{objects}"
    );
    for object in [
        "deployment.apps/coredns",
        "service/kube-dns",
        "csidriver.storage.k8s.io/hostpath.csi.k8s.io",
        "storageclass.storage.k8s.io/",
        "daemonset.apps/csi-hostpath",
        "configmap/kinit-config",
    ] {
        assert!(objects.contains(object), "{object} missing:\n{objects}");
    }
    let default_class = kubectl_ok(&admin, &["get", "storageclass"]).unwrap();
    assert!(default_class.contains("(default)"), "{default_class}");

    // The production pod networks cannot run here (their images come from a registry): the
    // API server must accept their manifests as kinit renders them, and they must carry the
    // cluster's pod network.
    let playbook = lab.dir().join("pod-networks.yaml");
    std::fs::write(
        &playbook,
        "- name: pod network manifests\n  hosts: node1\n  tasks:\n    - name: rendered\n      \
         template: { src: \"addons/{{ item }}.yaml\", dest: \"/root/{{ item }}.yaml\", mode: \"0600\" }\n      \
         loop: [calico, flannel]\n",
    )
    .unwrap();
    let rendered = lab
        .kinit()
        .arg("play")
        .arg(&playbook)
        .arg("-c")
        .arg(&config)
        .args([
            "-e",
            r#"network={"pod_cidr":"10.244.0.0/16","node_mask":24}"#,
            "-e",
            r#"images={"flannel":"docker.io/flannel/flannel:v0.25.7","flannel_cni_plugin":"docker.io/flannel/flannel-cni-plugin:v1.5.1-flannel2","calico_cni":"docker.io/calico/cni:v3.21.6","calico_node":"docker.io/calico/node:v3.21.6","calico_kube_controllers":"docker.io/calico/kube-controllers:v3.21.6"}"#,
        ])
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", text(&rendered));
    // A server-side dry run cannot create a namespace for the objects in it.
    let accepted = lab.ssh(
        "node1",
        "export KUBECONFIG=/etc/kubernetes/admin.conf; kubectl create namespace kube-flannel >/dev/null && \
         kubectl apply --dry-run=server -f /root/calico.yaml -f /root/flannel.yaml; status=$?; \
         kubectl delete namespace kube-flannel >/dev/null; exit $status",
    );
    let accepted_text = text(&accepted);
    assert!(accepted.status.success(), "{accepted_text}");
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/ippools.crd.projectcalico.org created",
        "daemonset.apps/calico-node created",
        "deployment.apps/calico-kube-controllers created",
        "configmap/kube-flannel-cfg created",
        "daemonset.apps/kube-flannel-ds created",
    ] {
        assert!(accepted_text.contains(object), "{object}:\n{accepted_text}");
    }
    let pod_network = stdout(&lab.ssh(
        "node1",
        "grep -c 10.244.0.0/16 /root/calico.yaml /root/flannel.yaml",
    ));
    assert_eq!(
        pod_network.trim(),
        "/root/calico.yaml:1\n/root/flannel.yaml:1",
        "{pod_network}"
    );

    // A second init on the healthy cluster: no change, no restart.
    let all = ["node1", "node2", "node3"];
    let before = unit_pids(&lab, &all);
    let again = init(&lab, &config, &[]);
    assert_success("second kinit init", &again);
    let changed: Vec<String> = events(&again)
        .iter()
        .filter(|e| e["event"] == "task_result" && e["status"] == "changed")
        .map(|e| format!("{} {}: {}", e["host"], e["task"], e["diff"]))
        .collect();
    assert!(changed.is_empty(), "a re-run changed things: {changed:#?}");
    assert_eq!(total(&events(&again), "changed"), 0);
    assert_eq!(unit_pids(&lab, &all), before, "a unit restarted");

    // `kinit status` sees the nodes and etcd.
    let status = run(lab.kinit().args(["status", "-c"]).arg(&config));
    let status = stdout(&status);
    for node in all {
        assert!(status.contains(node), "{status}");
    }
    assert!(status.to_lowercase().contains("healthy"), "{status}");

    // node3 halts while it is being installed again: the run names it and the step; once it
    // is back, --resume converges.
    run(lab
        .kinit()
        .args(["reset", "-c"])
        .arg(&config)
        .args(["--node", "node3", "--yes"]));
    assert_host_clean(&lab, "node3");
    let mut command = lab.kinit();
    command.args(["init", "-c"]).arg(&config);
    let (halted, _) = stop_node_when(&lab, command, "node3", |e| {
        e["event"] == "task_result" && e["host"] == "node3" && e["play"] == "container runtime"
    });
    let message = text(&halted);
    assert!(!halted.status.success(), "the run survived a halted host");
    assert!(
        message.contains("host node3") && message.contains("task \""),
        "the error names the host and the step: {message}"
    );
    run(lab.kinit().args(["lab", "start", "node3"]));
    let resumed = init(&lab, &config, &["--resume"]);
    assert_success("kinit init --resume", &resumed);
    wait_ready(&admin, 3);

    // Reset: every host as it was.
    run(lab.kinit().args(["reset", "-c"]).arg(&config).arg("--yes"));
    for node in all {
        assert_host_clean(&lab, node);
    }
}

/// kinit's cached lab bundle's kubeadm, unpacked by `kinit init`.
fn unpacked_bundle_kubeadm() -> PathBuf {
    let cache = std::env::var_os("KINIT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kinit"));
    std::fs::read_dir(cache.join("unpacked"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin/kubeadm"))
        .find(|p| p.is_file())
        .expect("an unpacked bundle with kubeadm")
}

/// The lab bundle `kinit init` uses by default (built on first use and cached).
fn lab_bundle(lab: &TestLab) -> PathBuf {
    let output = run(lab.kinit().args(["bundle", "create", "--source", "lab"]));
    // "PATH: N entries, …"
    let printed = stdout(&output);
    PathBuf::from(printed.trim().split_once(": ").map_or("", |(path, _)| path))
}

/// kubeadm's workflow: `kinit init` on node1, the printed `kinit join` on node2 (discovery
/// with the CA pin, TLS bootstrap); a wrong CA hash is refused before anything changes.
#[test]
fn local_mode_init_and_join() {
    let lab = TestLab::new("loc");
    run(lab.kinit().args(["lab", "up", "--nodes", "3"]));
    let bundle = lab_bundle(&lab);
    for node in ["node1", "node2", "node3"] {
        lab.copy_to(
            node,
            Path::new(env!("CARGO_BIN_EXE_kinit")),
            "/usr/local/bin/kinit",
        );
        lab.copy_to(node, &bundle, "/root/bundle.tar");
    }
    let init = lab.ssh(
        "node1",
        "kinit init --upload-certs --bundle /root/bundle.tar -o json",
    );
    assert!(init.status.success(), "{}", text(&init));
    let join_command = text(&init)
        .lines()
        .find(|l| l.trim_start().starts_with("kinit join ") && !l.contains("--control-plane"))
        .unwrap_or_else(|| panic!("no join command printed:\n{}", text(&init)))
        .trim()
        .to_owned();
    assert!(
        join_command.contains("--token ")
            && join_command.contains("--discovery-token-ca-cert-hash sha256:"),
        "{join_command}"
    );

    // A wrong pin: refused, nothing written.
    let hash_at = join_command.find("sha256:").unwrap() + "sha256:".len();
    let mut wrong = join_command.clone();
    let flipped = if &join_command[hash_at..hash_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    wrong.replace_range(hash_at..hash_at + 1, flipped);
    let refused = lab.ssh("node2", &format!("{wrong} --bundle /root/bundle.tar"));
    assert!(!refused.status.success(), "a wrong CA hash was accepted");
    assert!(
        text(&refused).contains("matches no --discovery-token-ca-cert-hash"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        stdout(&lab.ssh(
            "node2",
            "ls -A /etc/kubernetes 2>/dev/null; systemctl is-active kubelet"
        ))
        .trim(),
        "inactive"
    );

    let joined = lab.ssh(
        "node2",
        &format!("{join_command} --bundle /root/bundle.tar"),
    );
    assert!(joined.status.success(), "{}", text(&joined));

    // node2's kubelet holds a client certificate issued for its CSR, which the bootstrap token
    // submitted and the cluster approved; the token's kubeconfig is gone.
    let on_node1 = |command: &str| {
        stdout(&lab.ssh(
            "node1",
            &format!("kubectl --kubeconfig=/etc/kubernetes/admin.conf {command}"),
        ))
    };
    let nodes = eventually("node2 Ready", Duration::from_secs(120), || {
        let nodes = on_node1("get nodes --no-headers");
        if nodes.lines().filter(|l| l.contains(" Ready ")).count() == 2 {
            Ok(nodes)
        } else {
            Err(nodes)
        }
    });
    assert!(nodes.contains("node2"), "{nodes}");
    let token_id = join_command
        .split("--token ")
        .nth(1)
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    let csrs = on_node1("get csr --no-headers");
    assert!(
        csrs.lines()
            .any(|l| l.contains(&format!("system:bootstrap:{token_id}"))
                && l.contains("Approved,Issued")),
        "{csrs}"
    );
    let credentials = stdout(&lab.ssh(
        "node2",
        "openssl x509 -noout -subject -in /var/lib/kubelet/pki/kubelet-client-current.pem; ls /etc/kubernetes",
    ));
    assert!(
        credentials.contains("CN = system:node:node2"),
        "{credentials}"
    );
    assert!(
        !credentials.contains("bootstrap-kubelet.conf"),
        "{credentials}"
    );

    // Tokens: listed, created, deleted.
    let listed = stdout(&lab.ssh("node1", "kinit token list"));
    assert!(listed.contains(&token_id), "{listed}");
    let created = stdout(&lab.ssh("node1", "kinit token create --ttl 1h"));
    let new_id = created.trim().split('.').next().unwrap().to_owned();
    assert_eq!(new_id.len(), 6, "{created}");
    let deleted = lab.ssh("node1", &format!("kinit token delete {new_id}"));
    assert!(deleted.status.success(), "{}", text(&deleted));
    let listed = stdout(&lab.ssh("node1", "kinit token list"));
    assert!(
        !listed.contains(&new_id) && listed.contains(&token_id),
        "{listed}"
    );

    // node3 joins as a control plane with the shared certificates: refused with a wrong key
    // before anything is written, then a second etcd member and API server.
    let control_plane_join = text(&init)
        .lines()
        .find(|l| l.contains("--control-plane --certificate-key "))
        .unwrap_or_else(|| panic!("no control-plane join command:\n{}", text(&init)))
        .trim()
        .to_owned();
    let key_at =
        control_plane_join.find("--certificate-key ").unwrap() + "--certificate-key ".len();
    let mut wrong_key = control_plane_join.clone();
    let flipped = if &control_plane_join[key_at..key_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    wrong_key.replace_range(key_at..key_at + 1, flipped);
    let refused = lab.ssh("node3", &format!("{wrong_key} --bundle /root/bundle.tar"));
    assert!(
        !refused.status.success(),
        "a wrong certificate key was accepted"
    );
    assert!(
        text(&refused).contains("does not open the cluster's certificates"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        stdout(&lab.ssh(
            "node3",
            "ls -A /etc/kubernetes 2>/dev/null; systemctl is-active etcd"
        ))
        .trim(),
        "inactive"
    );
    let joined = lab.ssh(
        "node3",
        &format!("{control_plane_join} --bundle /root/bundle.tar"),
    );
    assert!(joined.status.success(), "{}", text(&joined));
    let members = stdout(&lab.ssh(
        "node1",
        "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt \
         --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key \
         member list",
    ));
    assert_eq!(
        members
            .lines()
            .filter(|l| l.contains(", started, "))
            .count(),
        2,
        "{members}"
    );
    assert!(members.contains(", node3, "), "{members}");
    let ready = stdout(&lab.ssh(
        "node3",
        "kubectl --kubeconfig=/etc/kubernetes/admin.conf --server=https://127.0.0.1:6443 get --raw /readyz",
    ));
    assert_eq!(ready.trim(), "ok");
    eventually(
        "node3 Ready as a control plane",
        Duration::from_secs(120),
        || {
            let nodes = on_node1("get nodes --no-headers");
            if nodes.lines().any(|l| {
                l.starts_with("node3 ") && l.contains(" Ready ") && l.contains("control-plane")
            }) {
                Ok(nodes)
            } else {
                Err(nodes)
            }
        },
    );
    // The shared CA keys do not outlive the token that owns them.
    let owner = on_node1(
        "-n kube-system get secret kinit-certs -o jsonpath={.metadata.ownerReferences[0].name}",
    );
    assert!(owner.starts_with("bootstrap-token-"), "{owner}");

    // The machines' own reset; node3's etcd member leaves, so node1 keeps its quorum.
    let reset = lab.ssh("node3", "kinit reset --yes");
    assert!(reset.status.success(), "{}", text(&reset));
    assert_host_clean(&lab, "node3");
    assert_eq!(on_node1("get --raw /readyz").trim(), "ok");
    for node in ["node2", "node1"] {
        let reset = lab.ssh(node, "kinit reset --yes");
        assert!(reset.status.success(), "{}", text(&reset));
        assert_host_clean(&lab, node);
    }
}

/// Three control planes and a worker. node3 halts as its etcd member is being set up during its
/// join; the resumed join converges with exactly three members. Then node1 stops: the API stays
/// reachable and the worker stays Ready through its node-local load balancer.
#[test]
fn three_control_planes_survive_losing_one() {
    let lab = TestLab::new("ha");
    run(lab
        .kinit()
        .args(["lab", "up", "--nodes", "4", "--control-planes", "3"]));
    let config = lab.inventory();
    let inventory = std::fs::read_to_string(&config).unwrap();
    let start = inventory.find("- name: node3").unwrap();
    let end = inventory.find("- name: node4").unwrap();
    let first = lab.dir().join("first.yaml");
    std::fs::write(
        &first,
        format!("{}{}", &inventory[..start], &inventory[end..]),
    )
    .unwrap();
    let output = init(&lab, &first, &[]);
    assert_success("kinit init (node1, node2, node4)", &output);

    // node3 joins; it halts once its etcd member has been announced, before it runs.
    let mut command = lab.kinit();
    command
        .args(["join", "-c"])
        .arg(&config)
        .args(["--node", "node3"]);
    let (halted, _) = stop_node_when(&lab, command, "node3", |e| {
        e["event"] == "task_result"
            && e["host"] == "node1"
            && e["task"] == "new etcd members announced"
            && e["status"] == "changed"
    });
    assert!(!halted.status.success(), "{}", text(&halted));
    assert!(text(&halted).contains("host node3"), "{}", text(&halted));
    run(lab.kinit().args(["lab", "start", "node3"]));
    let resumed = lab
        .kinit()
        .args(["join", "-c"])
        .arg(&config)
        .args(["--node", "node3", "--resume", "-o", "json"])
        .output()
        .unwrap();
    assert_success("kinit join --resume", &resumed);
    let members = stdout(&lab.ssh(
        "node2",
        "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt \
         --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key \
         member list",
    ));
    let lines: Vec<&str> = members.lines().collect();
    assert_eq!(lines.len(), 3, "{members}");
    for node in ["node1", "node2", "node3"] {
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.contains(&format!(", {node}, ")))
                .count(),
            1,
            "{members}"
        );
    }
    assert!(lines.iter().all(|l| l.contains(", started, ")), "{members}");
    let proxy = stdout(&lab.ssh(
        "node4",
        "systemctl show -p ExecStart --value kinit-api-proxy",
    ));
    for address in ["172.30.", ":6443"] {
        assert!(proxy.contains(address), "{proxy}");
    }
    assert_eq!(proxy.matches("--backend").count(), 3, "{proxy}");

    let admin = admin_kubeconfig(&lab, &config);
    wait_ready(&admin, 4);

    // node1 goes away. The operators' kubeconfig names node1, so they reach node2 instead.
    let admin_text = std::fs::read_to_string(&admin).unwrap();
    let node1 = address_of(&inventory, "node1");
    let node2 = address_of(&inventory, "node2");
    let via_node2 = lab.home.path().join("admin-node2.conf");
    std::fs::write(&via_node2, admin_text.replace(&node1, &node2)).unwrap();
    run(lab.kinit().args(["lab", "stop", "node1"]));
    eventually("node1 NotReady", Duration::from_secs(120), || {
        let nodes = kubectl_ok(&via_node2, &["get", "nodes", "--no-headers"])?;
        if nodes
            .lines()
            .any(|l| l.starts_with("node1 ") && l.contains("NotReady"))
        {
            Ok(())
        } else {
            Err(nodes)
        }
    });
    // By now the node controller has judged every node: the worker is still Ready, and its
    // kubelet still reaches the API through its load balancer.
    let nodes = kubectl_ok(&via_node2, &["get", "nodes", "--no-headers"]).unwrap();
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("node4 ") && l.split_whitespace().nth(1) == Some("Ready")),
        "{nodes}"
    );
    let from_worker = lab.ssh(
        "node4",
        "for i in 1 2 3 4 5; do kubectl --kubeconfig=/etc/kubernetes/kubelet.conf get node node4 -o name || exit 1; done",
    );
    assert!(from_worker.status.success(), "{}", text(&from_worker));
    run(lab.kinit().args(["lab", "start", "node1"]));
}

pub(crate) fn address_of(inventory: &str, node: &str) -> String {
    let at = inventory.find(&format!("- name: {node}\n")).unwrap();
    inventory[at..]
        .lines()
        .find_map(|l| l.trim().strip_prefix("address: "))
        .unwrap()
        .to_owned()
}
