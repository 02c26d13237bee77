//! Preflight: before anything changes, check every host the way kubeadm does, and a little
//! more: swap, ports, kernel features, the init system (the systemd cgroup driver needs
//! systemd), a container runtime configured with another cgroup driver, clock skew, unique
//! hostnames, CPU and memory, tools the node services call, and an installation that is not
//! kinit's. Each finding names the host, the check, what was found, what was expected and how
//! to fix it; `--ignore-preflight-errors=NAME,…` (or `all`) downgrades findings to warnings.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::{Cluster, Role};
use crate::engine::facts::Facts;

/// One host's view, gathered by [`SCRIPT`] in the same round trip as its facts.
pub const SCRIPT: &str = r#"
echo "listening=$(ss -Hltn 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -un | tr '\n' ' ')"
echo "bridge_netfilter=$([ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || modprobe -n br_netfilter 2>/dev/null && echo yes || echo no)"
echo "overlay=$(grep -qw overlay /proc/filesystems || modprobe -n overlay 2>/dev/null && echo yes || echo no)"
for tool in iptables ip conntrack mount sha256sum tar socat; do command -v $tool >/dev/null || printf 'missing_tool=%s\n' $tool; done
[ -f /usr/local/lib/kinit/node.conf ] && echo "kinit_cluster=$(sed -n 's/.*belongs to cluster \([^ ]*\) as.*/\1/p' /usr/local/lib/kinit/node.conf)"
[ -e /etc/kubernetes/admin.conf ] || [ -e /etc/kubernetes/kubelet.conf ] || [ -d /var/lib/etcd/member ] && echo "kubernetes_files=yes"
if [ -f /etc/containerd/config.toml ]; then grep -Eq 'SystemdCgroup *= *true' /etc/containerd/config.toml && echo "containerd_cgroup=systemd" || echo "containerd_cgroup=cgroupfs"; fi
"#;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub host: String,
    /// The check's name, as `--ignore-preflight-errors` takes it.
    pub check: String,
    pub found: String,
    pub expected: String,
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: found {}, expected {}; fix: {}",
            self.host, self.check, self.found, self.expected, self.fix
        )
    }
}

/// Findings that stop the run, and those ignored by the operator's choice.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub errors: Vec<Finding>,
    pub ignored: Vec<Finding>,
}

/// Ports each role's components listen on.
fn ports(roles: &[Role]) -> Vec<(u16, &'static str)> {
    let mut ports = vec![(10250, "kubelet"), (10256, "kube-proxy")];
    if roles.contains(&Role::ControlPlane) {
        ports.extend([
            (6443, "kube-apiserver"),
            (10257, "kube-controller-manager"),
            (10259, "kube-scheduler"),
        ]);
    }
    if roles.contains(&Role::Etcd) || roles.contains(&Role::ControlPlane) {
        ports.extend([(2379, "etcd"), (2380, "etcd peers")]);
    }
    ports
}

/// Judges every host's facts and probe output. `operator_time` is the operator's clock, in
/// seconds since the epoch, when the facts were gathered.
pub fn judge(
    cluster: &Cluster,
    gathered: &BTreeMap<String, Result<(Facts, String), String>>,
    operator_time: i64,
    ignore: &[String],
) -> Report {
    let mut findings = Vec::new();
    let mut finding = |host: &str, check: &str, found: String, expected: &str, fix: &str| {
        findings.push(Finding {
            host: host.to_owned(),
            check: check.to_owned(),
            found,
            expected: expected.to_owned(),
            fix: fix.to_owned(),
        });
    };
    let mut hostnames: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for host in &cluster.hosts {
        let name = host.name.as_str();
        let Some(result) = gathered.get(name) else {
            continue;
        };
        let (facts, probe) = match result {
            Ok(ok) => ok,
            Err(e) => {
                finding(
                    name,
                    "Reachable",
                    e.clone(),
                    "an SSH login",
                    "check the host's address, its sshd and the ssh settings in the configuration",
                );
                continue;
            }
        };
        let values: BTreeMap<&str, Vec<&str>> = probe
            .lines()
            .filter_map(|l| l.split_once('='))
            .fold(BTreeMap::new(), |mut map, (k, v)| {
                map.entry(k.trim()).or_default().push(v.trim());
                map
            });
        let value = |key: &str| {
            values
                .get(key)
                .and_then(|v| v.first())
                .copied()
                .unwrap_or_default()
        };
        hostnames
            .entry(facts.hostname.clone())
            .or_default()
            .push(name.to_owned());
        let control_plane = host.has_role(Role::ControlPlane);

        if !facts.systemd {
            finding(
                name,
                "Systemd",
                "an init system other than systemd".into(),
                "systemd as PID 1",
                "kinit runs Kubernetes as systemd units with the systemd cgroup driver; use a systemd-based OS",
            );
        }
        if facts.swap_mib > 0 {
            finding(
                name,
                "Swap",
                format!("{} MiB of swap", facts.swap_mib),
                "no swap",
                "run `swapoff -a` and remove swap entries from /etc/fstab",
            );
        }
        if facts.architecture != "x86_64" {
            finding(
                name,
                "Architecture",
                facts.architecture.clone(),
                "x86_64 (the bundle's amd64)",
                "use a bundle built for this architecture",
            );
        }
        let (cpus, memory) = if control_plane { (2, 1700) } else { (1, 512) };
        if facts.cpus < cpus {
            finding(
                name,
                "NumCPU",
                format!("{} CPUs", facts.cpus),
                &format!("at least {cpus}"),
                "give the host more CPUs",
            );
        }
        if facts.memory_mib < memory {
            finding(
                name,
                "Mem",
                format!("{} MiB of memory", facts.memory_mib),
                &format!("at least {memory} MiB"),
                "give the host more memory",
            );
        }
        let skew = (facts.time - operator_time).abs();
        if skew > 30 {
            finding(
                name,
                "TimeSkew",
                format!("its clock {skew} s away from this machine's"),
                "at most 30 s",
                "synchronise the clocks (systemd-timesyncd, chrony); certificates and etcd depend on them",
            );
        }
        if value("bridge_netfilter") == "no" {
            finding(
                name,
                "KernelModules",
                "no br_netfilter (bridged traffic bypasses iptables)".into(),
                "br_netfilter loadable or built in",
                "install the kernel's modules package (linux-modules-extra-…)",
            );
        }
        if value("overlay") == "no" {
            finding(
                name,
                "KernelModules",
                "no overlay file system".into(),
                "overlay loadable or built in",
                "install the kernel's modules package",
            );
        }
        if let Some(missing) = values.get("missing_tool") {
            finding(
                name,
                "Tools",
                format!("{} missing", missing.join(", ")),
                "iptables, ip, conntrack, mount, sha256sum, tar and socat",
                "install them: apt-get install iptables iproute2 conntrack mount coreutils tar socat",
            );
        }
        let installed_by = value("kinit_cluster");
        if !installed_by.is_empty() && installed_by != cluster.name() {
            finding(
                name,
                "ExistingInstallation",
                format!("a node of kinit cluster {installed_by:?}"),
                &format!("a host free or of cluster {:?}", cluster.name()),
                "remove it from the other cluster first (`kinit reset`)",
            );
        } else if installed_by.is_empty() && value("kubernetes_files") == "yes" {
            finding(
                name,
                "ExistingInstallation",
                "Kubernetes files kinit did not write (/etc/kubernetes, /var/lib/etcd)".into(),
                "a host without another installation",
                "remove the other installation (`kubeadm reset`, or `kinit reset` for kinit's)",
            );
        }
        if value("containerd_cgroup") == "cgroupfs" && installed_by.is_empty() {
            finding(
                name,
                "CgroupDriver",
                "containerd configured with the cgroupfs driver".into(),
                "the systemd cgroup driver, as the kubelet's",
                "set SystemdCgroup = true in /etc/containerd/config.toml, or let kinit write it (remove the file)",
            );
        }
        if installed_by.is_empty() {
            let listening: Vec<u16> = value("listening")
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            for (port, owner) in ports(&host.roles) {
                if listening.contains(&port) {
                    finding(
                        name,
                        &format!("Port-{port}"),
                        format!("port {port} in use"),
                        &format!("port {port} free for {owner}"),
                        &format!("stop what listens on {port} (`ss -ltnp 'sport = :{port}'`)"),
                    );
                }
            }
        }
    }
    for (hostname, hosts) in hostnames {
        if hosts.len() > 1 {
            for host in &hosts {
                finding(
                    host,
                    "Hostname",
                    format!("hostname {hostname:?}, shared by {}", hosts.join(", ")),
                    "a hostname of its own",
                    "give each host its own hostname (hostnamectl set-hostname)",
                );
            }
        }
    }
    let ignore_all = ignore.iter().any(|i| i.eq_ignore_ascii_case("all"));
    let (ignored, errors) = findings
        .into_iter()
        .partition(|f| ignore_all || ignore.iter().any(|i| i.eq_ignore_ascii_case(&f.check)));
    Report { errors, ignored }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::Source;

    fn cluster() -> Cluster {
        crate::config::parse(&Source::new(
            "c.yaml",
            "apiVersion: kinit.io/v1alpha1\nkind: Cluster\nmetadata: {name: lab}\nkubernetesVersion: v1.20.2\nhosts:\n\
             - {name: cp, address: 10.0.0.1, roles: [control-plane]}\n- {name: w, address: 10.0.0.2, roles: [worker]}\n",
        ))
        .unwrap()
        .0
    }

    fn facts(hostname: &str) -> Facts {
        Facts {
            hostname: hostname.into(),
            architecture: "x86_64".into(),
            cpus: 2,
            memory_mib: 4096,
            systemd: true,
            time: 1_000,
            ..Facts::default()
        }
    }

    #[test]
    fn a_healthy_pair_passes() {
        let mut gathered = BTreeMap::new();
        gathered.insert(
            "cp".into(),
            Ok((
                facts("cp"),
                "listening=22 \nbridge_netfilter=yes\noverlay=yes\n".into(),
            )),
        );
        gathered.insert("w".into(), Ok((facts("w"), "listening=22\n".into())));
        let report = judge(&cluster(), &gathered, 1_010, &[]);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }

    #[test]
    fn findings_name_host_check_found_expected_and_fix() {
        let mut gathered = BTreeMap::new();
        let mut swapped = facts("same");
        swapped.swap_mib = 2048;
        swapped.time = 5_000;
        gathered.insert(
            "cp".into(),
            Ok((
                swapped,
                "listening=6443 22\nmissing_tool=conntrack\n".into(),
            )),
        );
        gathered.insert(
            "w".into(),
            Ok((facts("same"), "containerd_cgroup=cgroupfs\n".into())),
        );
        let report = judge(&cluster(), &gathered, 1_000, &["Hostname".into()]);
        let checks: Vec<(&str, &str)> = report
            .errors
            .iter()
            .map(|f| (f.host.as_str(), f.check.as_str()))
            .collect();
        for expected in [
            ("cp", "Swap"),
            ("cp", "TimeSkew"),
            ("cp", "Tools"),
            ("cp", "Port-6443"),
            ("w", "CgroupDriver"),
        ] {
            assert!(
                checks.contains(&expected),
                "{expected:?} missing from {checks:?}"
            );
        }
        assert_eq!(report.ignored.len(), 2, "hostnames are shared but ignored");
        let swap = report
            .errors
            .iter()
            .find(|f| f.check == "Swap")
            .unwrap()
            .to_string();
        assert_eq!(
            swap,
            "cp: Swap: found 2048 MiB of swap, expected no swap; fix: run `swapoff -a` and remove swap entries from /etc/fstab"
        );
        assert!(
            judge(&cluster(), &gathered, 1_000, &["all".into()])
                .errors
                .is_empty()
        );
    }
}
