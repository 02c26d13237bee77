//! Embeds the console's islands for the browser (the wasm module and its JavaScript glue that
//! `scripts/build-console-ui` leaves in ui/pkg/), gzipped once here rather than per request.
//! Without them the console still serves every page; only live updates need them.

use std::io::Write;
use std::path::Path;

const FILES: [&str; 2] = ["kinit_console_ui.js", "kinit_console_ui_bg.wasm"];

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
    let out = std::env::var("OUT_DIR").expect("cargo sets it");
    let pkg = Path::new(&manifest).join("ui/pkg");
    println!("cargo::rerun-if-changed=ui/pkg");
    let mut version = sha2::Sha256::default();
    let mut found = true;
    for name in FILES {
        let bytes = std::fs::read(pkg.join(name)).unwrap_or_default();
        found &= !bytes.is_empty();
        sha2::Digest::update(&mut version, &bytes);
        std::fs::write(Path::new(&out).join(name), &bytes).expect("OUT_DIR is writable");
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gzip.write_all(&bytes).expect("in memory");
        std::fs::write(
            Path::new(&out).join(format!("{name}.gz")),
            gzip.finish().expect("in memory"),
        )
        .expect("OUT_DIR is writable");
    }
    if !found {
        println!(
            "cargo::warning=the console's islands are not built (scripts/build-console-ui): \
             pages work, live updates do not"
        );
    }
    let version = hex::encode(&sha2::Digest::finalize(version)[..6]);
    std::fs::write(Path::new(&out).join("islands-version"), version).expect("OUT_DIR is writable");
}
