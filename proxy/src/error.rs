//! Errors of the data plane: every one names what it is about.

/// Why the proxy cannot start (or reload) with a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The configuration file could not be read or does not fit the
    /// supported subset of Envoy's bootstrap.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A configuration value that parsed but cannot be used (a name that
    /// does not resolve, an engine not compiled in, ...).
    #[error("{path}: {message}")]
    Invalid {
        /// Where in the configuration.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A Wasm plugin could not be loaded or refused its configuration.
    #[error("wasm plugin {plugin}: {message}")]
    Plugin {
        /// The plugin's name (and root id).
        plugin: String,
        /// What went wrong.
        message: String,
    },
    /// The server could not be set up.
    #[error("server: {0}")]
    Server(String),
}
