//! Choosing an engine by name at run time.

use polyhost_engine_core::{Engine, EngineConfig};

/// Something to do with an engine whose type is known only at run time.
/// [`AnyEngine::visit`] calls [`EngineVisitor::visit`] with the concrete
/// engine, so the work is compiled once per engine type.
pub trait EngineVisitor {
    /// What the work produces.
    type Output;
    /// Does the work with engine `E`.
    fn visit<E: Engine>(self, engine: E) -> Self::Output;
}

/// An engine name that is not compiled into this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine `{name}`; this build has: {}", available.join(", "))]
pub struct UnknownEngine {
    /// The name asked for.
    pub name: String,
    /// The names compiled in.
    pub available: Vec<&'static str>,
}

/// One of the engines compiled into this build.
#[derive(Clone)]
#[non_exhaustive]
pub enum AnyEngine {
    /// wasmtime (any variant).
    #[cfg(any(
        feature = "wasmtime",
        feature = "wasmtime-winch",
        feature = "wasmtime-pulley"
    ))]
    Wasmtime(polyhost_engine_wasmtime::WasmtimeEngine),
    /// wasmi.
    #[cfg(feature = "wasmi")]
    Wasmi(polyhost_engine_wasmi::WasmiEngine),
    /// wasmer.
    #[cfg(feature = "wasmer")]
    Wasmer(polyhost_engine_wasmer::WasmerEngine),
}

impl AnyEngine {
    /// The names of every engine and variant compiled in, default first.
    pub fn names() -> Vec<&'static str> {
        #[allow(unused_mut)]
        let mut names: Vec<&'static str> = Vec::new();
        #[cfg(any(
            feature = "wasmtime",
            feature = "wasmtime-winch",
            feature = "wasmtime-pulley"
        ))]
        names.extend(
            polyhost_engine_wasmtime::Variant::available()
                .iter()
                .map(|v| v.engine_name()),
        );
        #[cfg(feature = "wasmi")]
        names.push("wasmi");
        #[cfg(feature = "wasmer")]
        names.extend(polyhost_engine_wasmer::WasmerEngine::names());
        names
    }

    /// The default engine of this build (the first of [`AnyEngine::names`]).
    pub fn default_name() -> Option<&'static str> {
        Self::names().first().copied()
    }

    /// Creates the engine called `name` with `config`.
    ///
    /// # Errors
    /// [`UnknownEngine`] (listing the compiled-in names) when `name` is not
    /// compiled in; the engine's own error when it rejects `config`.
    pub fn by_name(
        name: &str,
        config: &EngineConfig,
    ) -> Result<AnyEngine, Box<dyn std::error::Error + Send + Sync>> {
        let _ = config;
        #[cfg(any(
            feature = "wasmtime",
            feature = "wasmtime-winch",
            feature = "wasmtime-pulley"
        ))]
        for v in polyhost_engine_wasmtime::Variant::available() {
            if v.engine_name() == name {
                return Ok(AnyEngine::Wasmtime(
                    polyhost_engine_wasmtime::WasmtimeEngine::new(*v, config)?,
                ));
            }
        }
        #[cfg(feature = "wasmi")]
        if name == "wasmi" {
            return Ok(AnyEngine::Wasmi(polyhost_engine_wasmi::WasmiEngine::new(
                config,
            )?));
        }
        #[cfg(feature = "wasmer")]
        if polyhost_engine_wasmer::WasmerEngine::names().contains(&name) {
            return Ok(AnyEngine::Wasmer(
                polyhost_engine_wasmer::WasmerEngine::by_name(name, config)?,
            ));
        }
        Err(Box::new(UnknownEngine {
            name: name.to_string(),
            available: Self::names(),
        }))
    }

    /// The engine's name.
    pub fn name(&self) -> &'static str {
        struct Name;
        impl EngineVisitor for Name {
            type Output = &'static str;
            fn visit<E: Engine>(self, engine: E) -> &'static str {
                engine.name()
            }
        }
        self.clone().visit(Name)
    }

    /// Runs `visitor` with the concrete engine.
    pub fn visit<V: EngineVisitor>(self, visitor: V) -> V::Output {
        match self {
            #[cfg(any(
                feature = "wasmtime",
                feature = "wasmtime-winch",
                feature = "wasmtime-pulley"
            ))]
            AnyEngine::Wasmtime(e) => visitor.visit(e),
            #[cfg(feature = "wasmi")]
            AnyEngine::Wasmi(e) => visitor.visit(e),
            #[cfg(feature = "wasmer")]
            AnyEngine::Wasmer(e) => visitor.visit(e),
        }
    }
}
