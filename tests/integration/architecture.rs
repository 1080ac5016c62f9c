//! The layering of docs/ARCHITECTURE.md §7, checked on the source: dependencies point inward,
//! the library never reaches into the binary, and no source file outgrows what a newcomer can
//! hold. Reads files only; needs no services.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The code of a file without its comments and its `#[cfg(test)]` module (tests may use
/// anything).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let code = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text,
    };
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every (file, forbidden path) found under `layer` among `forbidden`.
fn violations(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in rust_files(&src().join(layer)) {
        let code = code_of(&file);
        for f in forbidden {
            if code.contains(f) {
                found.push(format!("{} uses {f}", file.display()));
            }
        }
    }
    found
}

#[test]
fn dependencies_point_inward() {
    let io = [
        "diesel::",
        "lapin::",
        "actix::",
        "actix_web::",
        "actix_rt::",
        "tokio::",
        "ureq::",
        "std::fs",
        "std::net",
    ];
    let outer = [
        "crate::db",
        "crate::broker",
        "crate::pipeline",
        "crate::platform",
        "crate::ops",
        "crate::admin",
        "crate::sim",
        "crate::config",
    ];
    let mut broken = Vec::new();
    // The domain is pure: no I/O, nothing outer.
    broken.extend(violations("domain", &io));
    broken.extend(violations("domain", &outer));
    // The EMV codec knows nothing of the project.
    broken.extend(violations("emv", &io));
    broken.extend(violations("emv", &["crate::domain"]));
    broken.extend(violations("emv", &outer));
    // Wire types: no I/O adapters.
    broken.extend(violations(
        "messages",
        &["diesel::", "lapin::", "actix", "crate::db"],
    ));
    // Each adapter knows one outside system.
    broken.extend(violations(
        "db",
        &["lapin::", "actix", "crate::broker", "crate::pipeline"],
    ));
    broken.extend(violations("db", &["crate::platform", "crate::ops"]));
    broken.extend(violations(
        "broker",
        &["diesel::", "crate::db", "crate::pipeline"],
    ));
    broken.extend(violations("broker", &["crate::platform", "crate::ops"]));
    // Use cases sit below the front ends.
    broken.extend(violations(
        "ops",
        &["crate::platform", "crate::pipeline", "actix_web"],
    ));
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn the_library_never_reaches_into_the_binary() {
    let mut broken = Vec::new();
    for file in rust_files(&src()) {
        let rel = file.strip_prefix(src()).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        if ["cli", "bench", "main.rs"].contains(&first.as_ref()) {
            continue;
        }
        let code = code_of(&file);
        for f in ["crate::cli", "crate::bench"] {
            if code.contains(f) {
                broken.push(format!("{} uses {f}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn no_source_file_is_too_big_to_hold() {
    // About 800 lines of code (tests aside) is what one person can keep in mind at once.
    const MAX_LINES: usize = 800;
    let big: Vec<String> = rust_files(&src())
        .iter()
        .map(|f| (f, code_of(f).lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(f, n)| format!("{}: {n} lines", f.display()))
        .collect();
    assert!(big.is_empty(), "split these by job: {big:?}");
}
