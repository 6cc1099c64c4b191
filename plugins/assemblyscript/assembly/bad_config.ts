// `bad_config`: always rejects its configuration (contract:
// plugins/rust/README.md). vm_start succeeds; configure logs an error and
// returns false, so a host must refuse to serve with it.

export * from "./lib/proxy";

import { RootContext, Context, LogLevelValues, log } from "@solo-io/proxy-runtime/runtime";
import { PolyhostRoot, PolyhostContext, registerRoot } from "./lib/base";

class BadConfig extends PolyhostRoot {
  onConfigure(configuration_size: u32): bool {
    log(LogLevelValues.error, "bad_config: rejecting configuration");
    return false;
  }

  // Only reachable if a host ignores the false above; passes everything.
  createContext(context_id: u32): Context {
    return new PolyhostContext(context_id, this);
  }
}

registerRoot("bad_config", (context_id: u32): RootContext => new BadConfig(context_id), idof<PolyhostContext>());
