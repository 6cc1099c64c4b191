//! `polyhost compile`: fill the precompiled-module cache ahead of time.

use anyhow::{Context, Result, anyhow};
use polyhost::cache::{CacheOutcome, DEFAULT_MAX_BYTES, ModuleCache};
use polyhost::{AnyEngine, Engine, EngineConfig, EngineVisitor};
use std::path::PathBuf;
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
    /// Cache folder (default: the platform cache directory + `polyhost`).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Cache size bound in MiB.
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

/// Runs the command.
pub fn run(args: CompileArgs) -> Result<ExitCode> {
    let cache = match &args.cache_dir {
        Some(dir) => ModuleCache::new(dir, args.max_mib << 20),
        None => ModuleCache::new(
            ModuleCache::at_default_location()?.dir(),
            args.max_mib << 20,
        ),
    };
    let names = match args.engine.as_deref() {
        Some("all") => AnyEngine::names(),
        Some(name) => vec![name],
        None => vec![AnyEngine::default_name().context("no engine compiled in")?],
    };
    for path in &args.plugins {
        let wasm =
            std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
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
            let what = match outcome {
                CacheOutcome::Hit => "already cached",
                CacheOutcome::Miss => "compiled and cached",
                CacheOutcome::Rebuilt => "rebuilt a broken entry",
                CacheOutcome::Uncacheable => {
                    "compiled (this engine has no ahead-of-time mode; nothing cached)"
                }
            };
            println!(
                "{} on {name}: {what} in {:.1} ms -> {}",
                path.display(),
                start.elapsed().as_secs_f64() * 1e3,
                entry.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
