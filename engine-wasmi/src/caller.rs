//! Guest access from inside a host function.

use crate::{ENGINE_NAME, StoreData};
use polyhost_engine_core::{Error, ErrorKind, HostContext, Result, guest_slices};
use wasmi::{AsContext, AsContextMut, Memory};

/// What a host function receives on wasmi: the wasmi `Caller`, with memory
/// and allocator resolved once at instantiation.
pub struct WasmiCaller<'a, D: 'static> {
    pub(crate) caller: wasmi::Caller<'a, StoreData<D>>,
}

pub(crate) fn memory_size(store: impl AsContext, memory: Option<Memory>) -> usize {
    memory.map_or(0, |m| m.data_size(store))
}

pub(crate) fn read(
    store: impl AsContext,
    memory: Option<Memory>,
    ptr: u32,
    buf: &mut [u8],
) -> Result<()> {
    // `Memory::read` checks the range; no memory at all is an empty one.
    let len = buf.len() as u32;
    let oob = |size| Error::out_of_bounds(ENGINE_NAME, ptr, len, size);
    match memory {
        Some(m) => m
            .read(&store, ptr as usize, buf)
            .map_err(|_| oob(m.data_size(&store))),
        None => Err(oob(0)),
    }
}

pub(crate) fn write(
    mut store: impl AsContextMut,
    memory: Option<Memory>,
    ptr: u32,
    bytes: &[u8],
) -> Result<()> {
    let oob = |size| Error::out_of_bounds(ENGINE_NAME, ptr, bytes.len() as u32, size);
    match memory {
        Some(m) => m
            .write(&mut store, ptr as usize, bytes)
            .map_err(|_| oob(m.data_size(&store))),
        None => Err(oob(0)),
    }
}

pub(crate) fn allocate<T: 'static>(
    mut store: impl AsContextMut<Data = StoreData<T>>,
    size: u32,
) -> Result<u32> {
    let Some(alloc) = store.as_context().data().allocator else {
        return Err(Error::new(
            ErrorKind::MissingExport,
            ENGINE_NAME,
            "the plugin exports no memory allocator",
        ));
    };
    // Re-entering the guest from a host function is allowed by wasmi: the
    // call runs on the same store, nested inside the current one, under the
    // top-level call's deadline and fuel.
    let ptr = crate::meter::call_typed(&mut store, &alloc, size as i32, "allocator")?;
    if ptr == 0 && size != 0 {
        return Err(Error::new(
            ErrorKind::Trap,
            ENGINE_NAME,
            format!("the plugin's allocator returned null for {size} bytes"),
        ));
    }
    Ok(ptr as u32)
}

impl<D: 'static> HostContext for WasmiCaller<'_, D> {
    type Data = D;

    fn engine_name(&self) -> &'static str {
        ENGINE_NAME
    }

    #[inline]
    fn data(&self) -> &D {
        &self.caller.data().user
    }

    #[inline]
    fn data_mut(&mut self) -> &mut D {
        &mut self.caller.data_mut().user
    }

    fn memory_size(&self) -> usize {
        memory_size(&self.caller, self.caller.data().memory)
    }

    #[inline]
    fn read(&self, ptr: u32, buf: &mut [u8]) -> Result<()> {
        read(&self.caller, self.caller.data().memory, ptr, buf)
    }

    #[inline]
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()> {
        let memory = self.caller.data().memory;
        write(&mut self.caller, memory, ptr, bytes)
    }

    /// Lends the ranges in place: wasmi borrows linear memory and the
    /// store's data together.
    #[inline]
    fn lend<const N: usize, R>(
        &mut self,
        ranges: [(u32, u32); N],
        f: impl FnOnce([&[u8]; N], &mut D) -> R,
    ) -> Result<R> {
        let memory = self.caller.data().memory;
        let (data, store): (&[u8], &mut StoreData<D>) = match memory {
            Some(m) => {
                let (data, store) = m.data_and_store_mut(self.caller.as_context_mut());
                (data, store)
            }
            None => (&[], self.caller.data_mut()),
        };
        let slices = guest_slices(ENGINE_NAME, data, ranges)?;
        Ok(f(slices, &mut store.user))
    }

    fn allocate(&mut self, size: u32) -> Result<u32> {
        allocate(&mut self.caller, size)
    }

    fn call_deadline(&self) -> Option<polyhost_engine_core::Deadline> {
        self.caller.data().meter.deadline
    }
}
