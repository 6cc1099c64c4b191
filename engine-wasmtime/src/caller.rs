//! Guest access from inside a host function.

use crate::StoreData;
use polyhost_engine_core::{Error, ErrorKind, HostContext, Result, guest_slices};
use wasmtime::{AsContext, AsContextMut, Memory, StoreContext, StoreContextMut};

/// What a host function receives on wasmtime: the wasmtime `Caller`, with
/// memory and allocator resolved once at instantiation.
pub struct WasmtimeCaller<'a, D: 'static> {
    pub(crate) caller: wasmtime::Caller<'a, StoreData<D>>,
}

/// The engine's name (for errors) and linear memory, empty when the
/// module exports none.
#[inline]
fn memory<'a, T: 'static>(
    ctx: StoreContext<'a, StoreData<T>>,
    memory: Option<Memory>,
) -> (&'static str, &'a [u8]) {
    let name = ctx.data().engine_name;
    (name, memory.map_or(&[][..], |m| m.data(ctx)))
}

/// [`memory`], writable.
#[inline]
fn memory_mut<'a, T: 'static>(
    ctx: StoreContextMut<'a, StoreData<T>>,
    memory: Option<Memory>,
) -> (&'static str, &'a mut [u8]) {
    let name = ctx.data().engine_name;
    (name, memory.map_or(&mut [][..], |m| m.data_mut(ctx)))
}

pub(crate) fn read<T: 'static>(
    store: impl AsContext<Data = StoreData<T>>,
    memory_export: Option<Memory>,
    ptr: u32,
    buf: &mut [u8],
) -> Result<()> {
    let (name, data) = memory(store.as_context(), memory_export);
    let [src] = guest_slices(name, data, [(ptr, buf.len() as u32)])?;
    buf.copy_from_slice(src);
    Ok(())
}

pub(crate) fn write<T: 'static>(
    mut store: impl AsContextMut<Data = StoreData<T>>,
    memory_export: Option<Memory>,
    ptr: u32,
    bytes: &[u8],
) -> Result<()> {
    let (name, data) = memory_mut(store.as_context_mut(), memory_export);
    write_in(name, data, ptr, bytes)
}

/// Copies `bytes` to `ptr` of `data`, the linear memory of engine `name`.
#[inline]
fn write_in(name: &'static str, data: &mut [u8], ptr: u32, bytes: &[u8]) -> Result<()> {
    let len = data.len();
    match data
        .get_mut(ptr as usize..)
        .and_then(|tail| tail.get_mut(..bytes.len()))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            Ok(())
        }
        None => Err(Error::out_of_bounds(name, ptr, bytes.len() as u32, len)),
    }
}

/// Writes a value of a size known at compile time, such as the `u32` most
/// host calls hand back through an out-pointer: the bounds check and the
/// store are inlined, where the slice version ends in a call to `memmove`
/// for four bytes (11% of the samples of a `proxy_get_log_level` loop in
/// `scripts/profile.sh --operations host-calls`).
#[inline]
pub(crate) fn write_array<T: 'static, const N: usize>(
    mut store: impl AsContextMut<Data = StoreData<T>>,
    memory_export: Option<Memory>,
    ptr: u32,
    bytes: [u8; N],
) -> Result<()> {
    let (name, data) = memory_mut(store.as_context_mut(), memory_export);
    let len = data.len();
    match data
        .get_mut(ptr as usize..)
        .and_then(|tail| tail.first_chunk_mut::<N>())
    {
        Some(dst) => {
            *dst = bytes;
            Ok(())
        }
        None => Err(Error::out_of_bounds(name, ptr, N as u32, len)),
    }
}

/// Reads a value of a size known at compile time; see [`write_array`].
#[inline]
pub(crate) fn read_array<T: 'static, const N: usize>(
    store: impl AsContext<Data = StoreData<T>>,
    memory_export: Option<Memory>,
    ptr: u32,
) -> Result<[u8; N]> {
    let (name, data) = memory(store.as_context(), memory_export);
    match data
        .get(ptr as usize..)
        .and_then(|tail| tail.first_chunk::<N>())
    {
        Some(src) => Ok(*src),
        None => Err(Error::out_of_bounds(name, ptr, N as u32, data.len())),
    }
}

pub(crate) fn allocate<T: 'static>(
    mut store: impl AsContextMut<Data = StoreData<T>>,
    size: u32,
) -> Result<u32> {
    let mut ctx = store.as_context_mut();
    let name = ctx.data().engine_name;
    let Some(alloc) = ctx.data().allocator else {
        return Err(Error::new(
            ErrorKind::MissingExport,
            name,
            "the plugin exports no memory allocator",
        ));
    };
    let ptr = alloc
        .call(&mut ctx, &[size as i32])
        .map_err(|e| crate::instance::convert_error(name, e, "allocator", ctx.data().deadline))?
        .unwrap_or(0);
    if ptr == 0 && size != 0 {
        return Err(Error::new(
            ErrorKind::Trap,
            name,
            format!("the plugin's allocator returned null for {size} bytes"),
        ));
    }
    Ok(ptr as u32)
}

impl<D: 'static> HostContext for WasmtimeCaller<'_, D> {
    type Data = D;

    fn engine_name(&self) -> &'static str {
        self.caller.data().engine_name
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
        self.caller
            .data()
            .memory
            .map_or(0, |m| m.data_size(&self.caller))
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

    #[inline]
    fn write_u32(&mut self, ptr: u32, value: u32) -> Result<()> {
        let memory = self.caller.data().memory;
        write_array(&mut self.caller, memory, ptr, value.to_le_bytes())
    }

    #[inline]
    fn write_with_u32s(&mut self, ptr: u32, bytes: &[u8], words: [(u32, u32); 2]) -> Result<()> {
        let memory = self.caller.data().memory;
        let (name, data) = memory_mut(self.caller.as_context_mut(), memory);
        write_in(name, data, ptr, bytes)?;
        for (at, value) in words {
            write_in(name, data, at, &value.to_le_bytes())?;
        }
        Ok(())
    }

    #[inline]
    fn write_u64(&mut self, ptr: u32, value: u64) -> Result<()> {
        let memory = self.caller.data().memory;
        write_array(&mut self.caller, memory, ptr, value.to_le_bytes())
    }

    #[inline]
    fn read_u32(&self, ptr: u32) -> Result<u32> {
        read_array(&self.caller, self.caller.data().memory, ptr).map(u32::from_le_bytes)
    }

    /// Lends the ranges in place: wasmtime borrows linear memory and the
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
        let slices = guest_slices(store.engine_name, data, ranges)?;
        Ok(f(slices, &mut store.user))
    }

    fn allocate(&mut self, size: u32) -> Result<u32> {
        allocate(&mut self.caller, size)
    }

    fn call_deadline(&self) -> Option<polyhost_engine_core::Deadline> {
        self.caller.data().deadline
    }
}
