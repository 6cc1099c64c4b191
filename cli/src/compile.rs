//! `polyhost compile`: fill the precompiled-module cache ahead of time.

use crate::files::{MAX_PLUGIN_BYTES, read_bounded};
use anyhow::{Context, Result, anyhow};
use polyhost::cache::{CacheOutcome, DEFAULT_MAX_BYTES, ModuleCache};
use polyhost::{AnyEngine, Engine, EngineConfig, EngineVisitor, check_binary};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `polyhost compile`.
#[derive(clap::Args)]
pub struct CompileArgs {
    /// The plugins (.wasm) to precompile.
    #[arg(required = true)]
    plugins: Vec<PathBuf>,
    /// Engine to compile for, or `all`.
    #[arg(long, value_name = "NAME")]
    engine: Option<String>,
    /// Cache folder (default: the platform cache directory + `polyhost`,
    /// e.g. `~/.cache/polyhost`). Created private (0700); a folder others
    /// can write is refused.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Cache size bound in MiB; least recently used entries beyond it are
    /// deleted. With 0 nothing is kept.
    #[arg(long, default_value_t = DEFAULT_MAX_BYTES >> 20)]
    max_mib: u64,
}

struct Fill<'a> {
    cache: &'a ModuleCache,
    wasm: &'a [u8],
}

impl EngineVisitor for Fill<'_> {
    type Output = Result<(CacheOutcome, PathBuf)>;
    fn visit<E: Engine>(self, engine: E) -> Self::Output {
        let loaded = self.cache.load(&engine, self.wasm)?;
        Ok((loaded.outcome, self.cache.entry_path(&engine, self.wasm)))
    }
}

/// The cache a command uses: `dir`, or the platform's default folder.
pub fn cache_at(dir: Option<&Path>, max_bytes: u64) -> Result<ModuleCache> {
    Ok(match dir {
        Some(dir) => ModuleCache::new(dir, max_bytes),
        None => ModuleCache::new(ModuleCache::default_dir()?, max_bytes),
    })
}

/// Runs the command.
pub fn run(args: CompileArgs) -> Result<ExitCode> {
    let max_bytes = args
        .max_mib
        .checked_mul(1 << 20)
        .context("--max-mib is too large")?;
    let cache = cache_at(args.cache_dir.as_deref(), max_bytes)?;
    let names = match args.engine.as_deref() {
        Some("all") => AnyEngine::names(),
        Some(name) => vec![name],
        None => vec![AnyEngine::default_name().context("no engine compiled in")?],
    };
    for path in &args.plugins {
        let wasm = read_bounded("plugin", path, MAX_PLUGIN_BYTES)?;
        // The same refusal of text and non-Wasm files as `call` and the
        // data plane give, before any engine sees the bytes.
        check_binary(&path.display().to_string(), &wasm)?;
        for name in &names {
            let engine =
                AnyEngine::by_name(name, &EngineConfig::default()).map_err(|e| anyhow!("{e}"))?;
            let start = Instant::now();
            let (outcome, entry) = engine
                .visit(Fill {
                    cache: &cache,
                    wasm: &wasm,
                })
                .with_context(|| format!("cannot compile `{}` for {name}", path.display()))?;
            let (what, stored) = match outcome {
                CacheOutcome::Hit => ("already cached", true),
                CacheOutcome::Miss => ("compiled and cached", true),
                CacheOutcome::Rebuilt => ("rebuilt a broken entry", true),
                CacheOutcome::NotStored => (
                    "compiled; not cached: the entry is larger than the cache bound (--max-mib)",
                    false,
                ),
                CacheOutcome::Uncacheable => (
                    "compiled (this engine has no ahead-of-time mode; nothing cached)",
                    false,
                ),
            };
            let elapsed = start.elapsed().as_secs_f64() * 1e3;
            // Only a path that exists now is printed.
            if stored {
                println!(
                    "{} on {name}: {what} in {elapsed:.1} ms -> {}",
                    path.display(),
                    entry.display()
                );
            } else {
                println!("{} on {name}: {what} in {elapsed:.1} ms", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
