//! Facts about a host, gathered once per run in a single round trip: one shell script prints
//! `key=value` lines, parsed here. Templates see them as `facts`; preflight checks judge them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::transport::{Session, Stdin, TransportError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub hostname: String,
    /// IPv4 and IPv6 addresses of the host's interfaces, loopback excepted.
    pub addresses: Vec<String>,
    /// `ID` and `VERSION_ID` of /etc/os-release, such as `debian` and `12`.
    pub os_id: String,
    pub os_version: String,
    pub kernel: String,
    pub architecture: String,
    /// 1 or 2.
    pub cgroup_version: u8,
    pub cpus: u32,
    pub memory_mib: u64,
    pub swap_mib: u64,
    /// True when systemd is PID 1.
    pub systemd: bool,
    /// Seconds since the epoch on the host, for clock-skew checks.
    pub time: i64,
    pub user: String,
    /// True when the host is itself a container (a lab node): some kernel settings are then
    /// the machine's, not the host's.
    pub container: bool,
}

/// The script: POSIX sh and tools every Linux host has.
const SCRIPT: &str = r#"
echo "hostname=$(hostname)"
echo "addresses=$(ip -o addr show 2>/dev/null | awk '$2 != "lo" {split($4, a, "/"); printf "%s ", a[1]}')"
. /etc/os-release 2>/dev/null; echo "os_id=${ID:-unknown}"; echo "os_version=${VERSION_ID:-unknown}"
echo "kernel=$(uname -r)"
echo "architecture=$(uname -m)"
echo "cgroup_fs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
echo "cpus=$(nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo)"
echo "memory_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
echo "swap_kib=$(awk '/^SwapTotal:/ {print $2}' /proc/meminfo)"
echo "pid1=$(cat /proc/1/comm 2>/dev/null)"
echo "systemd_dir=$([ -d /run/systemd/system ] && echo yes || echo no)"
echo "time=$(date +%s)"
echo "user=$(id -un)"
echo "container=$(systemd-detect-virt --container 2>/dev/null || echo none)"
"#;

impl Facts {
    pub async fn gather(session: &Session) -> Result<Facts, TransportError> {
        let output = session.exec(SCRIPT, Stdin::none(), false).await?;
        Ok(Facts::parse(&output.stdout_text()))
    }

    fn parse(text: &str) -> Facts {
        let values: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |key: &str| values.get(key).copied().unwrap_or_default().to_owned();
        let number = |key: &str| {
            values
                .get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Facts {
            hostname: get("hostname"),
            addresses: get("addresses")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            os_id: get("os_id"),
            os_version: get("os_version"),
            kernel: get("kernel"),
            architecture: get("architecture"),
            cgroup_version: if get("cgroup_fs") == "cgroup2fs" {
                2
            } else {
                1
            },
            cpus: u32::try_from(number("cpus")).unwrap_or(u32::MAX),
            memory_mib: number("memory_kib") / 1024,
            swap_mib: number("swap_kib") / 1024,
            systemd: get("pid1") == "systemd" && get("systemd_dir") == "yes",
            time: values.get("time").and_then(|v| v.parse().ok()).unwrap_or(0),
            user: get("user"),
            container: !matches!(get("container").as_str(), "" | "none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transport::{Privilege, local::LocalTransport};
    use std::sync::Arc;

    #[test]
    fn parses_the_script_output() {
        let facts = Facts::parse(
            "hostname=node1\naddresses=172.30.0.11 fe80::1 \nos_id=debian\nos_version=12\nkernel=6.1\narchitecture=x86_64\n\
             cgroup_fs=tmpfs\ncpus=2\nmemory_kib=2048000\nswap_kib=0\npid1=systemd\nsystemd_dir=yes\ntime=1700000000\nuser=root\n",
        );
        assert_eq!(facts.addresses, ["172.30.0.11", "fe80::1"]);
        assert_eq!(
            (
                facts.cgroup_version,
                facts.cpus,
                facts.memory_mib,
                facts.swap_mib
            ),
            (1, 2, 2000, 0)
        );
        assert!(facts.systemd);
    }

    #[tokio::test]
    async fn gathers_on_this_machine() {
        let session = Session::new(Arc::new(LocalTransport), Privilege::Root);
        let facts = Facts::gather(&session).await.unwrap();
        assert!(!facts.hostname.is_empty());
        assert!(facts.cpus >= 1 && facts.memory_mib > 0);
        assert!(facts.time > 1_700_000_000);
    }
}
