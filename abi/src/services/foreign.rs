//! Functions the host exposes through `proxy_call_foreign_function`.

use crate::types::Status;
use std::collections::HashMap;
use std::sync::Arc;

/// A host function callable by name from plugins: takes the argument bytes,
/// returns result bytes or a status.
pub type ForeignFunction = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync>;

/// Looks up foreign functions by name.
pub trait ForeignFunctions: Send + Sync {
    /// Calls `name` with `args`.
    ///
    /// # Errors
    /// [`Status::NotFound`] when there is no such function, or the
    /// function's own status.
    fn call(&self, name: &str, args: &[u8]) -> Result<Vec<u8>, Status>;
}

/// The default: a name-to-closure map, empty unless the embedder adds to it.
#[derive(Clone, Default)]
pub struct ForeignFunctionRegistry {
    functions: HashMap<String, ForeignFunction>,
}

impl ForeignFunctionRegistry {
    /// Adds (or replaces) a function.
    pub fn with(
        mut self,
        name: impl Into<String>,
        f: impl Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync + 'static,
    ) -> Self {
        self.functions.insert(name.into(), Arc::new(f));
        self
    }
}

impl ForeignFunctions for ForeignFunctionRegistry {
    fn call(&self, name: &str, args: &[u8]) -> Result<Vec<u8>, Status> {
        match self.functions.get(name) {
            Some(f) => f(args),
            None => Err(Status::NotFound),
        }
    }
}
