//! The plugin exports (callbacks) the host calls, with their signatures.

use crate::types::AbiVersion;
use polyhost_engine_core::CallbackSig;

macro_rules! callbacks {
    ($( $variant:ident => $name:literal, $sig:expr; )*) => {
        /// A plugin callback.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Callback {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl Callback {
            /// Every callback, in declaration order.
            pub const ALL: &'static [Callback] = &[$(Callback::$variant),*];

            /// The export name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Callback::$variant => $name,)*
                }
            }

            /// The signature under ABI 0.2.x.
            fn sig_v2(self) -> CallbackSig {
                match self {
                    $(Callback::$variant => $sig,)*
                }
            }
        }
    };
}

use CallbackSig as S;

callbacks! {
    Initialize => "_initialize", S::void(0);
    Start => "_start", S::void(0);
    Main => "main", S::i32(2);
    MainVoid => "__main_void", S::i32(0);
    ContextCreate => "proxy_on_context_create", S::void(2);
    VmStart => "proxy_on_vm_start", S::i32(2);
    Configure => "proxy_on_configure", S::i32(2);
    Tick => "proxy_on_tick", S::void(1);
    QueueReady => "proxy_on_queue_ready", S::void(2);
    ForeignFunction => "proxy_on_foreign_function", S::void(3);
    Done => "proxy_on_done", S::i32(1);
    Log => "proxy_on_log", S::void(1);
    Delete => "proxy_on_delete", S::void(1);
    NewConnection => "proxy_on_new_connection", S::i32(1);
    DownstreamData => "proxy_on_downstream_data", S::i32(3);
    UpstreamData => "proxy_on_upstream_data", S::i32(3);
    DownstreamClose => "proxy_on_downstream_connection_close", S::void(2);
    UpstreamClose => "proxy_on_upstream_connection_close", S::void(2);
    RequestHeaders => "proxy_on_request_headers", S::i32(3);
    RequestBody => "proxy_on_request_body", S::i32(3);
    RequestTrailers => "proxy_on_request_trailers", S::i32(2);
    ResponseHeaders => "proxy_on_response_headers", S::i32(3);
    ResponseBody => "proxy_on_response_body", S::i32(3);
    ResponseTrailers => "proxy_on_response_trailers", S::i32(2);
    HttpCallResponse => "proxy_on_http_call_response", S::void(5);
    GrpcInitialMetadata => "proxy_on_grpc_receive_initial_metadata", S::void(3);
    GrpcReceive => "proxy_on_grpc_receive", S::void(3);
    GrpcTrailingMetadata => "proxy_on_grpc_receive_trailing_metadata", S::void(3);
    GrpcClose => "proxy_on_grpc_close", S::void(3);
}

impl Callback {
    /// The signature the host expects under `abi`.
    pub fn sig(self, abi: AbiVersion) -> CallbackSig {
        match (self, abi) {
            // 0.1.0 headers callbacks have no end_of_stream flag.
            (Callback::RequestHeaders | Callback::ResponseHeaders, AbiVersion::V0_1_0) => {
                CallbackSig::i32(2)
            }
            _ => self.sig_v2(),
        }
    }
}
