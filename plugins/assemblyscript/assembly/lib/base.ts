// Base classes for our plugins' root and stream contexts.
//
// The SDK's own defaults log a debug line from nearly every callback
// ("context id: N: onDone()", ...) and its default `onConfigure` is unusable
// (it passes the configuration size where the host expects an out-pointer,
// so the host writes the length to that address). The Rust plugins log
// nothing there, so these bases make the defaults silent: vm_start and
// configure succeed, ticks, queue signals, done/delete/log do nothing.
// Plugins override what they use.
//
// What cannot be silenced without replacing the SDK's context table: the SDK
// logs a few debug lines whenever the host creates a context
// (`ensureRootContext(...)`, `Registering new context ...`, ...).

import {
  BaseContext,
  RootContext,
  Context,
  getBaseContext,
  registerRootContext,
} from "@solo-io/proxy-runtime/runtime";

export class PolyhostRoot extends RootContext {
  constructor(context_id: u32) {
    super(context_id);
  }

  onStart(vm_configuration_size: usize): bool {
    return true;
  }

  onConfigure(configuration_size: u32): bool {
    return true;
  }

  onTick(): void { }

  onQueueReady(token: u32): void { }

  onDone(): bool {
    return true;
  }

  onDelete(): void { }

  // Reached through our proxy_on_foreign_function export (see proxy.ts).
  onForeignFunction(function_id: u32, arguments_size: u32): void { }
}

export class PolyhostContext extends Context {
  constructor(context_id: u32, root_context: RootContext) {
    super(context_id, root_context);
  }

  onDone(): bool {
    return true;
  }

  onDelete(): void { }

  onLog(): void { }
}

// Registers a plugin's root context. The SDK picks the root context factory
// by the `plugin_root_id` property and aborts when none matches; hosts and
// tests usually leave the root id empty, so the factory is registered under
// "" and under the plugin's name.
//
// `contextClass` is `idof<TheStreamContextClass>()` and is not used at run
// time. Naming the class here, in top-level code, makes AssemblyScript 0.14
// resolve it early: the compiler builds its virtual-call tables only from
// classes it has resolved by then, and a context class first met inside
// `createContext` can be left out, so that the host's callbacks silently run
// the SDK's default methods instead of the plugin's.
export function registerRoot(name: string, factory: (context_id: u32) => RootContext, contextClass: u32): void {
  registerRootContext(factory, "");
  registerRootContext(factory, name);
}

// The SDK context object for an id, without the reference leak of the SDK's
// getContext/getRootContext (see proxy.ts): a downcast of a call's result
// (`f() as Context`) is never released by AssemblyScript 0.14; a local plus
// `changetype` is. Our own code downcasts the same way.
export function contextOf(context_id: u32): Context {
  let base: BaseContext = getBaseContext(context_id);
  return changetype<Context>(base);
}

export function rootOf(context_id: u32): RootContext {
  let base: BaseContext = getBaseContext(context_id);
  return changetype<RootContext>(base);
}
