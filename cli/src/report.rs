//! Error output in the style of a compiler diagnostic.

use polyhost::PluginError;

/// Prints `error: ...` with its causes, the plugin's log and a hint.
pub fn error(e: &anyhow::Error) {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        if let Some(p) = cause.downcast_ref::<PluginError>() {
            // The plugin error says everything its own sources would.
            plugin_error(p);
            break;
        } else {
            eprintln!("  = caused by: {cause}");
        }
    }
}

fn plugin_error(e: &PluginError) {
    eprintln!("  = plugin: {}", e.plugin());
    if let Some(cb) = e.callback() {
        eprintln!("  = in callback: {cb}");
    }
    eprintln!(
        "  = {:?}: {}",
        e.kind(),
        e.message().lines().next().unwrap_or("")
    );
    for line in e.message().lines().skip(1) {
        eprintln!("    {line}");
    }
    if !e.logs().is_empty() {
        eprintln!("  = plugin log (most recent last):");
        for line in e.logs() {
            eprintln!("      {line}");
        }
    }
    if let Some(hint) = hint(e) {
        eprintln!("  = help: {hint}");
    }
}

fn hint(e: &PluginError) -> Option<&'static str> {
    use polyhost::PluginErrorKind as K;
    Some(match e.kind() {
        K::InvalidModule => "is this a .wasm file? text-format modules need `wat2wasm` first",
        K::MissingMemory => {
            "proxy-wasm plugins export their linear memory as `memory`; SDK builds do"
        }
        K::MissingAbiVersion => {
            "build the plugin with a proxy-wasm SDK; it must export proxy_abi_version_0_2_1 (or 0_2_0 / 0_1_0)"
        }
        K::MissingAllocator => {
            "proxy-wasm SDKs export `proxy_on_memory_allocate` or `malloc`; a hand-written module must too"
        }
        K::UnknownImport => {
            "the plugin needs a host function Polyhost does not provide; check the SDK version"
        }
        K::StartFailed => "the plugin refused its configuration; check --plugin-config / --config",
        K::Interrupted => "the plugin ran too long; raise --timeout-ms or fix the loop",
        _ => return None,
    })
}
