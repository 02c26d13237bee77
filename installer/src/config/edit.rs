//! Changing a configuration file the way its owner would by hand: the new text is the old
//! text with one addition, comments and layout kept, validated before anything is written,
//! and written atomically (a crash leaves the old file or the new one, never half of one).

use std::io::Write;
use std::path::Path;

use super::{LoadedCluster, Role, load, parse};
use crate::yaml::Source;

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn content(line: &str) -> bool {
    let trimmed = line.trim();
    !trimmed.is_empty() && !trimmed.starts_with('#')
}

/// `text` with a host appended to its `hosts:` list, in the list's own indentation.
pub fn with_host(text: &str, name: &str, address: &str, roles: &[Role]) -> Result<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("hosts:"))
        .ok_or("the configuration has no top-level `hosts:` list")?;
    if content(lines[start].trim_start_matches("hosts:")) {
        return Err(
            "`hosts:` is written inline (flow style); add the host by hand, one item per line"
                .into(),
        );
    }
    let item_indent = lines[start + 1..]
        .iter()
        .find(|l| content(l))
        .filter(|l| l.trim_start().starts_with("- "))
        .map(|l| indentation(l))
        .ok_or("`hosts:` is not followed by a list of hosts")?;
    // The list ends at the first line that is neither an item nor inside one.
    let mut end = lines.len();
    for (index, line) in lines.iter().enumerate().skip(start + 1) {
        if !content(line) {
            continue;
        }
        let indent = indentation(line);
        if indent < item_indent || (indent == item_indent && !line.trim_start().starts_with('-')) {
            end = index;
            break;
        }
    }
    // New lines go right after the last item's last line, before any blank lines or comments
    // that introduce what follows.
    while end > start + 1 && !content(lines[end - 1]) {
        end -= 1;
    }
    let pad = " ".repeat(item_indent);
    let roles = roles
        .iter()
        .map(|r| crate::ops::inventory::role_name(*r))
        .collect::<Vec<_>>()
        .join(", ");
    let quote = |v: &str| serde_json::to_string(v).expect("strings serialize");
    let entry = [
        format!("{pad}- name: {}", quote(name)),
        format!("{pad}  address: {}", quote(address)),
        format!("{pad}  roles: [{roles}]"),
    ];
    let mut out: Vec<String> = lines[..end].iter().map(|l| (*l).to_owned()).collect();
    out.extend(entry);
    out.extend(lines[end..].iter().map(|l| (*l).to_owned()));
    let mut text = out.join("\n");
    text.push('\n');
    Ok(text)
}

/// Adds a host to the configuration file at `path`; the file is unchanged when the result
/// would not be a valid configuration (the errors say why, with their line and column).
pub fn add_host(
    path: &Path,
    name: &str,
    address: &str,
    roles: &[Role],
) -> Result<LoadedCluster, String> {
    let before = load(path).map_err(|e| e.to_string())?;
    if before.cluster.host(name).is_some() {
        return Err(format!(
            "{}: a host named {name} exists already",
            path.display()
        ));
    }
    let old = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let new =
        with_host(&old, name, address, roles).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&Source::new(path, new.clone())).map_err(|e| e.to_string())?;
    let temporary = path.with_extension("yaml.kinit-new");
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(new.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(format!("writing {}: {e}", path.display()));
    }
    load(path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
apiVersion: kinit.io/v1alpha1
kind: Cluster
metadata:
  name: lab
kubernetesVersion: v1.20.3
hosts:
  - name: cp1
    address: 10.0.0.11
    roles: [control-plane]   # the first
  - name: w1
    address: 10.0.0.21
    roles: [worker]

# the pod network
networking:
  podCIDR: 10.244.0.0/16
";

    #[test]
    fn a_host_goes_at_the_end_of_the_list_and_everything_else_stays() {
        let text = with_host(CONFIG, "w2", "10.0.0.22", &[Role::Worker]).unwrap();
        let expected = CONFIG.replace(
            "    roles: [worker]\n",
            "    roles: [worker]\n  - name: \"w2\"\n    address: \"10.0.0.22\"\n    roles: [worker]\n",
        );
        assert_eq!(text, expected);
        let (cluster, _) = parse(&Source::new("cluster.yaml", text)).unwrap();
        assert_eq!(cluster.hosts.len(), 3);
        assert_eq!(cluster.hosts[2].address.to_string(), "10.0.0.22");
    }

    #[test]
    fn lists_at_column_zero_and_at_the_end_of_the_file_work_too() {
        let config = "hosts:\n- name: a\n  address: 10.0.0.1\n  roles: [control-plane]\n";
        let text = with_host(config, "b", "10.0.0.2", &[Role::ControlPlane]).unwrap();
        assert!(
            text.ends_with("  roles: [control-plane]\n- name: \"b\"\n  address: \"10.0.0.2\"\n  roles: [control-plane]\n"),
            "{text}"
        );
    }

    #[test]
    fn an_invalid_addition_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.yaml");
        std::fs::write(&path, CONFIG).unwrap();
        let error = add_host(&path, "w2", "not an address", &[Role::Worker]).unwrap_err();
        assert!(error.contains("cluster.yaml:"), "{error}");
        let error = add_host(&path, "w1", "10.0.0.23", &[Role::Worker]).unwrap_err();
        assert!(error.contains("exists already"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), CONFIG);
        let loaded = add_host(&path, "w2", "10.0.0.22", &[Role::Worker]).unwrap();
        assert!(loaded.cluster.host("w2").is_some());
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("# the pod network")
        );
    }
}
