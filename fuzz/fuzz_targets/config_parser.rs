//! Any text given as a cluster configuration is either accepted or rejected with located
//! errors; the loader never panics, and every rejection names a position within the text.
#![no_main]

use kinit::config::{self, ConfigError};
use kinit::yaml::Source;
use libfuzzer_sys::fuzz_target;

/// Lines as YAML (and editors) count them: `\r\n`, `\r`, `\n`, NEL, LS and PS each end one.
fn yaml_lines(text: &str) -> usize {
    let mut lines = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines += 1;
            }
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => lines += 1,
            _ => {}
        }
    }
    lines
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = yaml_lines(text);
    match config::parse(&Source::new("fuzz.yaml", text)) {
        Ok(_) => {}
        Err(ConfigError::Invalid { errors }) => {
            assert!(!errors.is_empty());
            for error in errors {
                if let Some(position) = error.position {
                    // libyaml reports end-of-input one line past the last.
                    assert!(
                        position.line <= lines + 1,
                        "{error} (text has {lines} lines)"
                    );
                }
            }
        }
        Err(other) => panic!("parsing text must not fail with {other}"),
    }
});
