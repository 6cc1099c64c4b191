// `hello`: the README example (contract: plugins/rust/README.md, `hello`).
// Adds a configurable request header, denies a path prefix with a local 403,
// rewrites `hello` to `HELLO` in request bodies and tags responses.

export * from "./lib/proxy";

import {
  RootContext,
  Context,
  FilterHeadersStatusValues,
  FilterDataStatusValues,
  GrpcStatusValues,
  HeaderPair,
  LogLevelValues,
  log,
  send_local_response,
  stream_context,
} from "@solo-io/proxy-runtime/runtime";
import { PolyhostRoot, PolyhostContext, registerRoot } from "./lib/base";
import { parseStringFields, StringFields } from "./lib/json";
import {
  REQUEST_HEADERS, RESPONSE_HEADERS, HTTP_REQUEST_BODY, VM_CONFIGURATION, PLUGIN_CONFIGURATION,
  getHeader, getBuffer, setBuffer, utf8, concat, logBytes, utf8Lossy,
  replaceAll, startsWith, orElse,
} from "./lib/host";

class Config {
  header: string = "x-hello";
  value: string = "polyhost";
  denyPath: string = "/admin";
}

const KNOWN_FIELDS: Array<string> = ["header", "value", "deny_path"];

// Absent or empty configuration: defaults. Otherwise a JSON object whose
// known fields, if present, are strings; unknown fields are ignored.
function parseConfig(raw: ArrayBuffer): Config | null {
  let config = new Config();
  if (raw.byteLength == 0) return config;
  let fields = parseStringFields(raw, KNOWN_FIELDS);
  if (fields === null) return null;
  let values = (fields as StringFields).values;
  if (values.has("header")) config.header = values.get("header");
  if (values.has("value")) config.value = values.get("value");
  if (values.has("deny_path")) config.denyPath = values.get("deny_path");
  return config;
}

class HelloRoot extends PolyhostRoot {
  // Replaced wholesale on reconfiguration, so in-flight requests keep the
  // configuration they started with.
  config: Config = new Config();

  createContext(context_id: u32): Context {
    return new Hello(context_id, this, this.config);
  }

  onStart(vm_configuration_size: usize): bool {
    // Read everything: ask for up to 0xFFFFFFFF bytes, as the Rust SDK does.
    let vmConfig = getBuffer(VM_CONFIGURATION, 0, u32.MAX_VALUE).data;
    logBytes(LogLevelValues.info, concat(utf8("hello: vm_start config="), utf8Lossy(vmConfig)));
    return true;
  }

  onConfigure(configuration_size: u32): bool {
    let raw = getBuffer(PLUGIN_CONFIGURATION, 0, u32.MAX_VALUE).data;
    let config = parseConfig(raw);
    if (config === null) {
      log(LogLevelValues.error, "hello: invalid configuration");
      return false;
    }
    this.config = config as Config;
    return true;
  }
}

class Hello extends PolyhostContext {
  config: Config;

  constructor(context_id: u32, root: RootContext, config: Config) {
    super(context_id, root);
    this.config = config;
  }

  onRequestHeaders(num_headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    let method = getHeader(REQUEST_HEADERS, ":method");
    let path = getHeader(REQUEST_HEADERS, ":path");
    let line = utf8("hello: ");
    line = concat(line, method === null ? utf8("-") : utf8Lossy(method as ArrayBuffer));
    line = concat(line, utf8(" "));
    line = concat(line, path === null ? utf8("-") : utf8Lossy(path as ArrayBuffer));
    logBytes(LogLevelValues.info, line);

    // A missing :path is "-" here too, as in the Rust plugin.
    let pathBytes = orElse(path, utf8("-"));
    if (startsWith(pathBytes, utf8(this.config.denyPath))) {
      let headers: Array<HeaderPair> = [new HeaderPair(utf8("x-denied-by"), utf8("hello"))];
      send_local_response(403, "", utf8("access denied\n"), headers, GrpcStatusValues.InvalidCode);
      return FilterHeadersStatusValues.StopIteration;
    }

    stream_context.headers.request.add(this.config.header, this.config.value);
    stream_context.headers.request.remove("x-remove-me");
    // Replace only an existing user-agent: a replace on a missing key would
    // add it.
    if (getHeader(REQUEST_HEADERS, "user-agent") !== null) {
      stream_context.headers.request.replace("user-agent", "polyhost-hello");
    }
    return FilterHeadersStatusValues.Continue;
  }

  onRequestBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    // Pausing before the end makes the host buffer the chunks, so a "hello"
    // split across chunks is caught too.
    if (!end_of_stream) {
      return FilterDataStatusValues.StopIterationAndBuffer;
    }
    let size = <u32>body_buffer_length;
    let body = getBuffer(HTTP_REQUEST_BODY, 0, size).data;
    setBuffer(HTTP_REQUEST_BODY, 0, size, replaceAll(body, utf8("hello"), utf8("HELLO")));
    return FilterDataStatusValues.Continue;
  }

  onResponseHeaders(num_headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-powered-by", "polyhost");
    return FilterHeadersStatusValues.Continue;
  }

  onLog(): void {
    let status = getHeader(RESPONSE_HEADERS, ":status");
    let s = status === null ? utf8("-") : utf8Lossy(status as ArrayBuffer);
    logBytes(LogLevelValues.debug, concat(utf8("hello: done "), s));
  }
}

registerRoot("hello", (context_id: u32): RootContext => new HelloRoot(context_id), idof<Hello>());
