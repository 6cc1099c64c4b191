//! Running a module's start function under the call deadline.
//!
//! wasmer runs the start section inside `Instance::new`, before the
//! instance exists, so the deadline flag the watchdog raises (a global of
//! the instance, see `deadline.rs`) cannot be wired yet and a start function
//! that loops would hang the host thread for good. When deadlines are on,
//! the module is therefore rewritten before compilation: its start section
//! is removed and the start function exported as [`START_EXPORT`]; the
//! instance calls that export right after instantiation, armed with the
//! start-up limit like any other call. The module's behaviour is otherwise
//! unchanged (the start function still runs before any other export).
//!
//! The rewrite works on the binary's sections only: the start section is
//! dropped and one entry is appended to the export section (one is added if
//! the module has none).

use wasmparser::{Parser, Payload};

/// The export name the deferred start function gets. Not a name a plugin
/// can meaningfully export itself; [`crate::WasmerEngine`] hides it from
/// the module's export list.
pub(crate) const START_EXPORT: &str = "__polyhost_start";

/// The export section's id in the binary format.
const EXPORT_SECTION: u8 = 7;

/// The module without its start section and with the start function
/// exported as [`START_EXPORT`]; `None` when the module has no start
/// section or does not parse (the compiler then reports what is wrong).
pub(crate) fn defer_start(wasm: &[u8]) -> Option<Vec<u8>> {
    let mut start = None;
    // (range of the whole section including its header, count, entries)
    let mut exports = None;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.ok()? {
            Payload::StartSection { func, range } => start = Some((func, range)),
            Payload::ExportSection(reader) => {
                let body = reader.range();
                let count = reader.count();
                // The entries follow the count's LEB128 bytes.
                let entries_at = body.start + leb128_len(u64::from(count));
                exports = Some((body, count, entries_at));
            }
            Payload::CodeSectionStart { .. } => break,
            _ => {}
        }
    }
    let (func, start_range) = start?;
    let start_section = section_bounds(wasm, start_range.start)?;

    let mut entry = Vec::new();
    write_name(&mut entry, START_EXPORT);
    entry.push(0x00); // function
    write_leb128(&mut entry, u64::from(func));

    let mut out = Vec::with_capacity(wasm.len() + entry.len() + 8);
    match exports {
        Some((body, count, entries_at)) => {
            let export_section = section_bounds(wasm, body.start)?;
            let mut content = Vec::new();
            write_leb128(&mut content, u64::from(count) + 1);
            content.extend_from_slice(wasm.get(entries_at..body.end)?);
            content.extend_from_slice(&entry);
            for (at, section) in sections(wasm)? {
                if at == export_section.start {
                    out.push(EXPORT_SECTION);
                    write_leb128(&mut out, content.len() as u64);
                    out.extend_from_slice(&content);
                } else if at != start_section.start {
                    out.extend_from_slice(section);
                } else {
                    // The start section is dropped.
                }
            }
        }
        None => {
            // An export section goes where the start section was: the
            // order of sections puts exports just before start.
            let mut content = Vec::new();
            write_leb128(&mut content, 1);
            content.extend_from_slice(&entry);
            for (at, section) in sections(wasm)? {
                if at == start_section.start {
                    out.push(EXPORT_SECTION);
                    write_leb128(&mut out, content.len() as u64);
                    out.extend_from_slice(&content);
                } else {
                    out.extend_from_slice(section);
                }
            }
        }
    }
    Some(out)
}

/// The module header followed by every section, each with the offset of
/// its id byte.
fn sections(wasm: &[u8]) -> Option<Vec<(usize, &[u8])>> {
    let mut all = vec![(0, wasm.get(..8)?)];
    let mut at = 8;
    while at < wasm.len() {
        let bounds = section_at(wasm, at)?;
        all.push((at, wasm.get(bounds.clone())?));
        at = bounds.end;
    }
    Some(all)
}

/// The whole section (id, size, content) whose content starts at
/// `content_start`.
fn section_bounds(wasm: &[u8], content_start: usize) -> Option<std::ops::Range<usize>> {
    sections(wasm)?.into_iter().find_map(|(at, _)| {
        let bounds = section_at(wasm, at)?;
        let (_, header) = read_leb128(wasm.get(at + 1..)?)?;
        (at + 1 + header == content_start).then_some(bounds)
    })
}

/// The section starting at `at` (its id byte).
fn section_at(wasm: &[u8], at: usize) -> Option<std::ops::Range<usize>> {
    let (size, header) = read_leb128(wasm.get(at + 1..)?)?;
    let end = (at + 1 + header).checked_add(usize::try_from(size).ok()?)?;
    (end <= wasm.len()).then_some(at..end)
}

fn read_leb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn leb128_len(mut value: u64) -> usize {
    let mut n = 1;
    while value >= 0x80 {
        value >>= 7;
        n += 1;
    }
    n
}

fn write_leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    write_leb128(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exports_of(wasm: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        let mut has_start = false;
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.expect("the rewritten module parses") {
                Payload::ExportSection(reader) => {
                    for export in reader {
                        names.push(export.unwrap().name.to_string());
                    }
                }
                Payload::StartSection { .. } => has_start = true,
                _ => {}
            }
        }
        assert!(!has_start, "the start section is gone");
        names
    }

    #[test]
    fn the_start_function_becomes_an_export() {
        let wasm = wat::parse_str(
            r#"(module
                (memory (export "memory") 1)
                (global $g (mut i32) (i32.const 0))
                (func $s (global.set $g (i32.const 7)))
                (start $s)
                (func (export "get") (result i32) (global.get $g)))"#,
        )
        .unwrap();
        let rewritten = defer_start(&wasm).expect("rewritten");
        assert_eq!(exports_of(&rewritten), ["memory", "get", START_EXPORT]);
    }

    #[test]
    fn a_module_without_exports_gets_an_export_section() {
        let wasm = wat::parse_str("(module (func $s) (start $s))").unwrap();
        let rewritten = defer_start(&wasm).expect("rewritten");
        assert_eq!(exports_of(&rewritten), [START_EXPORT]);
    }

    #[test]
    fn modules_without_start_or_unparsable_are_left_alone() {
        let wasm = wat::parse_str("(module (func (export \"f\")))").unwrap();
        assert_eq!(defer_start(&wasm), None);
        assert_eq!(defer_start(b"\0asm\x01\0\0\0\x08\xff"), None);
    }
}
