//! Guest access from inside a host function.

use crate::StoreData;
use crate::instance::Limits;
use polyhost_engine_core::{Error, ErrorKind, HostContext, Result};
use wasmer::{AsStoreMut, AsStoreRef, FunctionEnvMut, Memory};

/// What a host function receives on wasmer: the instance's
/// `FunctionEnvMut`, which is both the host data and a mutable store handle,
/// with memory and allocator resolved once at instantiation.
pub struct WasmerCaller<'a, D: 'static> {
    pub(crate) env: FunctionEnvMut<'a, StoreData<D>>,
}

pub(crate) fn memory_size(store: &impl AsStoreRef, memory: Option<&Memory>) -> usize {
    memory.map_or(0, |m| m.view(store).data_size() as usize)
}

pub(crate) fn read(
    store: &impl AsStoreRef,
    memory: Option<&Memory>,
    engine: &'static str,
    ptr: u32,
    buf: &mut [u8],
) -> Result<()> {
    // `MemoryView::read` checks the range; no memory at all is an empty one.
    let len = buf.len() as u32;
    match memory {
        Some(m) => {
            let view = m.view(store);
            view.read(u64::from(ptr), buf)
                .map_err(|_| Error::out_of_bounds(engine, ptr, len, view.data_size() as usize))
        }
        None => Err(Error::out_of_bounds(engine, ptr, len, 0)),
    }
}

pub(crate) fn write(
    store: &impl AsStoreRef,
    memory: Option<&Memory>,
    engine: &'static str,
    ptr: u32,
    bytes: &[u8],
) -> Result<()> {
    let len = bytes.len() as u32;
    match memory {
        Some(m) => {
            let view = m.view(store);
            view.write(u64::from(ptr), bytes)
                .map_err(|_| Error::out_of_bounds(engine, ptr, len, view.data_size() as usize))
        }
        None => Err(Error::out_of_bounds(engine, ptr, len, 0)),
    }
}

/// Calls the guest allocator; `store` is the instance's `Store` outside guest
/// calls or the host function's `FunctionEnvMut` inside one.
pub(crate) fn allocate(
    store: &mut impl AsStoreMut,
    allocator: Option<wasmer::TypedFunction<i32, i32>>,
    limits: &Limits,
    engine: &'static str,
    size: u32,
) -> Result<u32> {
    let Some(alloc) = allocator else {
        return Err(Error::new(
            ErrorKind::MissingExport,
            engine,
            "the plugin exports no memory allocator",
        ));
    };
    let ptr = alloc.call(store, size as i32).map_err(|e| {
        let stopped = limits.stopped(store, engine);
        crate::instance::convert_error(engine, e, "allocator", stopped)
    })?;
    if ptr == 0 && size != 0 {
        return Err(Error::new(
            ErrorKind::Trap,
            engine,
            format!("the plugin's allocator returned null for {size} bytes"),
        ));
    }
    Ok(ptr as u32)
}

impl<D: Send + 'static> HostContext for WasmerCaller<'_, D> {
    type Data = D;

    fn engine_name(&self) -> &'static str {
        self.env.data().engine_name
    }

    #[inline]
    fn data(&self) -> &D {
        &self.env.data().user
    }

    #[inline]
    fn data_mut(&mut self) -> &mut D {
        &mut self.env.data_mut().user
    }

    fn memory_size(&self) -> usize {
        memory_size(&self.env, self.env.data().memory.as_ref())
    }

    #[inline]
    fn read(&self, ptr: u32, buf: &mut [u8]) -> Result<()> {
        let data = self.env.data();
        read(&self.env, data.memory.as_ref(), data.engine_name, ptr, buf)
    }

    #[inline]
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()> {
        let data = self.env.data();
        write(
            &self.env,
            data.memory.as_ref(),
            data.engine_name,
            ptr,
            bytes,
        )
    }

    fn allocate(&mut self, size: u32) -> Result<u32> {
        let data = self.env.data();
        let (allocator, limits, engine) = (
            data.allocator.clone(),
            data.limits.clone(),
            data.engine_name,
        );
        allocate(&mut self.env, allocator, &limits, engine, size)
    }

    fn call_deadline(&self) -> Option<polyhost_engine_core::Deadline> {
        self.env.data().limits.deadline
    }
}
