//! Every YAML document kinit reads or writes goes through this module. serde_yaml is archived
//! upstream; keeping it behind one door makes replacing it a one-file change.
//!
//! Errors carry the file, line and column and the field path (`hosts[2].address`). Checks that
//! run after deserialisation (overlapping CIDRs, duplicate names) find their position through
//! [`Positions`], an index from field paths to where they appear in the text.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A YAML text and the name it is reported under (usually its path).
#[derive(Debug, Clone)]
pub struct Source {
    pub name: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<PathBuf>, text: impl Into<String>) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    pub fn read(path: &Path) -> Result<Source, std::io::Error> {
        Ok(Source::new(path, std::fs::read_to_string(path)?))
    }
}

/// A position in a source: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// An error in a YAML file, located: `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LocatedError {
    pub file: PathBuf,
    pub position: Option<Position>,
    /// The message, starting with the field path when there is one.
    pub message: String,
}

impl fmt::Display for LocatedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                p.line,
                p.column,
                self.message
            ),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Deserialises one document, rejecting what the target type rejects (unknown fields
/// included) and keys repeated within a mapping.
pub fn parse<T: DeserializeOwned>(source: &Source) -> Result<T, LocatedError> {
    if let Some(duplicate) = Positions::index(&source.text).duplicates.into_iter().next() {
        return Err(LocatedError {
            file: source.name.clone(),
            position: Some(duplicate.position),
            message: format!(
                "{}duplicate key `{}` (first given at line {})",
                if duplicate.path.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", duplicate.path)
                },
                duplicate.key,
                duplicate.first.line
            ),
        });
    }
    serde_yaml::from_str(&source.text).map_err(|e| locate(source, &e))
}

/// Deserialises every document of a multi-document stream.
pub fn parse_all<T: DeserializeOwned>(source: &Source) -> Result<Vec<T>, LocatedError> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&source.text) {
        let value = serde::Deserialize::deserialize(document).map_err(|e| locate(source, &e))?;
        documents.push(value);
    }
    Ok(documents)
}

/// Serialises a value as a YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(value)
}

/// serde_yaml's message is `path: message at line L column C[, while …]`; cut the location
/// out so that the file, line and column lead, as compilers print them.
fn locate(source: &Source, error: &serde_yaml::Error) -> LocatedError {
    let mut message = error.to_string();
    if let Some(at) = message.find(" at line ") {
        let rest = &message[at + " at line ".len()..];
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let line_len = digits(rest);
        let after_line = &rest[line_len..];
        if line_len > 0 && after_line.starts_with(" column ") {
            let column_len = digits(&after_line[" column ".len()..]);
            let end = at + " at line ".len() + line_len + " column ".len() + column_len;
            message.replace_range(at..end, "");
        }
    }
    LocatedError {
        file: source.name.clone(),
        position: error.location().map(|l| Position {
            line: l.line(),
            column: l.column(),
        }),
        message,
    }
}

/// Where each field path of a document appears: `hosts[2].address` → line and column of its
/// value. Paths use the document's own keys.
#[derive(Debug, Default)]
pub struct Positions {
    values: HashMap<String, Position>,
    /// Keys given twice in one mapping.
    pub duplicates: Vec<DuplicateKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// Path of the mapping holding the key.
    pub path: String,
    pub key: String,
    pub position: Position,
    pub first: Position,
}

impl Positions {
    /// Indexes the first document of `text`. A text that does not parse yields an empty index
    /// (its syntax error is reported by [`parse`]).
    pub fn index(text: &str) -> Positions {
        let mut indexer = Indexer::default();
        let _ = Parser::new_from_str(text).load(&mut indexer, false);
        Positions {
            values: indexer.values,
            duplicates: indexer.duplicates,
        }
    }

    /// The position of `path`, or of its nearest ancestor that appears in the text.
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(position) = self.values.get(path) {
                return Some(*position);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }

    /// An error at `path`, with its message prefixed by the path.
    pub fn error_at(
        &self,
        source: &Source,
        path: &str,
        message: impl fmt::Display,
    ) -> LocatedError {
        LocatedError {
            file: source.name.clone(),
            position: self.find(path),
            message: if path.is_empty() {
                message.to_string()
            } else {
                format!("{path}: {message}")
            },
        }
    }
}

enum Frame {
    Mapping {
        key: Option<String>,
        seen: HashMap<String, Position>,
    },
    Sequence {
        index: usize,
    },
}

#[derive(Default)]
struct Indexer {
    stack: Vec<Frame>,
    values: HashMap<String, Position>,
    duplicates: Vec<DuplicateKey>,
    /// A mapping just started whose position is taken from its first key: libyaml-style
    /// parsers mark a block mapping inside a sequence at its first colon, not its first key.
    mapping_awaiting_position: Option<String>,
}

impl Indexer {
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Mapping { key: Some(key), .. } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Frame::Mapping { key: None, .. } => {}
                Frame::Sequence { index } => path.push_str(&format!("[{index}]")),
            }
        }
        path
    }

    /// True when the next node is a mapping key rather than a value.
    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Mapping { key: None, .. }))
    }

    /// Called after a complete value node: advance the enclosing collection.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Mapping { key, .. }) => *key = None,
            Some(Frame::Sequence { index }) => *index += 1,
            None => {}
        }
    }

    fn record(&mut self, mark: Marker) {
        let path = self.path();
        self.record_at(path, mark);
    }

    fn record_at(&mut self, path: String, mark: Marker) {
        let position = Position {
            line: mark.line(),
            column: mark.col() + 1,
        };
        self.values.entry(path).or_insert(position);
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, ..) if self.expecting_key() => {
                if let Some(path) = self.mapping_awaiting_position.take() {
                    self.record_at(path, mark);
                }
                let position = Position {
                    line: mark.line(),
                    column: mark.col() + 1,
                };
                let mapping_path = self.path();
                if let Some(Frame::Mapping { key, seen }) = self.stack.last_mut() {
                    if let Some(first) = seen.get(&text) {
                        self.duplicates.push(DuplicateKey {
                            path: mapping_path,
                            key: text.clone(),
                            position,
                            first: *first,
                        });
                    } else {
                        seen.insert(text.clone(), position);
                    }
                    *key = Some(text);
                }
            }
            Event::Scalar(..) | Event::Alias(_) => {
                self.record(mark);
                self.value_done();
            }
            Event::MappingStart(..) => {
                self.mapping_awaiting_position = Some(self.path());
                self.stack.push(Frame::Mapping {
                    key: None,
                    seen: HashMap::new(),
                });
            }
            Event::SequenceStart(..) => {
                self.record(mark);
                self.stack.push(Frame::Sequence { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(path) = self.mapping_awaiting_position.take() {
                    // An empty mapping: its end is as close as the parser tells.
                    self.record_at(path, mark);
                }
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
name: lab
hosts:
  - name: a
    address: 10.0.0.1
  - name: b
    address: 10.0.0.2
networking:
  podCIDR: 10.244.0.0/16
";

    #[test]
    fn positions_point_at_values() {
        let positions = Positions::index(TEXT);
        assert_eq!(
            positions.find("name"),
            Some(Position { line: 1, column: 7 })
        );
        assert_eq!(
            positions.find("hosts[1].address"),
            Some(Position {
                line: 6,
                column: 14
            })
        );
        assert_eq!(
            positions.find("networking.podCIDR"),
            Some(Position {
                line: 8,
                column: 12
            })
        );
        // Unknown leaves fall back to their nearest ancestor.
        assert_eq!(
            positions.find("hosts[1].ssh.port"),
            Some(Position { line: 5, column: 5 })
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Small {
        port: u16,
    }

    #[test]
    fn type_errors_lead_with_file_line_and_column() {
        let source = Source::new("x.yaml", "port: many\n");
        let err = parse::<Small>(&source).unwrap_err();
        assert_eq!(err.position, Some(Position { line: 1, column: 7 }));
        let text = err.to_string();
        assert!(text.starts_with("x.yaml:1:7: port: invalid type"), "{text}");
    }

    #[test]
    fn duplicate_keys_point_at_the_second() {
        let source = Source::new("x.yaml", "port: 1\nport: 2\n");
        let err = parse::<Small>(&source).unwrap_err();
        assert_eq!(err.position, Some(Position { line: 2, column: 1 }));
        assert!(
            err.message
                .contains("duplicate key `port` (first given at line 1)"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let source = Source::new("x.yaml", "port: [1, 2\n");
        let err = parse::<Small>(&source).unwrap_err();
        assert!(err.position.is_some(), "{err}");
        assert!(!err.message.contains(" at line "), "{err}");
    }
}
