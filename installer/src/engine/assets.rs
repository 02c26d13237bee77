//! Playbooks and templates: kinit's own, embedded in the binary from the repository's
//! `playbooks/` and `templates/` directories, or the operator's, from directories given on the
//! command line (copy kinit's, adapt them, point kinit at the copies).

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

use crate::yaml::Source;

static PLAYBOOKS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../playbooks");
static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../templates");

#[derive(Debug, Clone, Default)]
pub struct Assets {
    playbooks: Option<PathBuf>,
    templates: Option<PathBuf>,
}

fn embedded_files(dir: &Dir<'_>, into: &mut Vec<(String, String)>) {
    for file in dir.files() {
        if let Some(text) = file.contents_utf8() {
            into.push((file.path().to_string_lossy().into_owned(), text.to_owned()));
        }
    }
    for sub in dir.dirs() {
        embedded_files(sub, into);
    }
}

fn disk_files(root: &Path, dir: &Path, into: &mut Vec<(String, String)>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            disk_files(root, &path, into)?;
        } else if super::templates::is_template(&path) {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            into.push((name, text));
        }
    }
    Ok(())
}

impl Assets {
    /// kinit's own playbooks and templates, or the given directories instead.
    pub fn new(playbooks: Option<PathBuf>, templates: Option<PathBuf>) -> Assets {
        Assets {
            playbooks,
            templates,
        }
    }

    /// A playbook by name (`init` → `playbooks/init.yaml`) or by path to a file.
    pub fn playbook(&self, name_or_path: &str) -> Result<(String, Source), String> {
        let as_path = Path::new(name_or_path);
        if as_path.is_file() {
            let name = as_path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Source::read(as_path)
                .map(|s| (name, s))
                .map_err(|e| format!("{name_or_path}: {e}"));
        }
        let file = format!("{name_or_path}.yaml");
        if let Some(dir) = &self.playbooks {
            let path = dir.join(&file);
            return Source::read(&path)
                .map(|s| (name_or_path.to_owned(), s))
                .map_err(|e| format!("{}: {e}", path.display()));
        }
        let embedded = PLAYBOOKS
            .get_file(&file)
            .and_then(|f| f.contents_utf8())
            .ok_or_else(|| {
                let known: Vec<String> = PLAYBOOKS
                    .files()
                    .map(|f| {
                        f.path()
                            .to_string_lossy()
                            .trim_end_matches(".yaml")
                            .to_owned()
                    })
                    .collect();
                format!(
                    "no playbook {name_or_path:?}: give a file path, or one of kinit's: {}",
                    known.join(", ")
                )
            })?;
        Ok((
            name_or_path.to_owned(),
            Source::new(format!("playbooks/{file}"), embedded),
        ))
    }

    /// Every template, by name relative to the templates directory.
    pub fn templates(&self) -> Result<Vec<(String, String)>, String> {
        let mut files = Vec::new();
        match &self.templates {
            Some(dir) => disk_files(dir, dir, &mut files)?,
            None => embedded_files(&TEMPLATES, &mut files),
        }
        Ok(files)
    }
}
