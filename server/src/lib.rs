//! `basis lsp`: the language server, the only crate that knows LSP.
//!
//! Built on tower-lsp-server (the community continuation of tower-lsp), with a
//! layer in front of it ([`layer`]) that applies document sync in arrival order and
//! puts a panic boundary around every handler. Handlers ([`backend`]) turn LSP
//! requests into calls on the plain-Rust crates below (`code`, `skills`,
//! `feedback`, `model`) and convert their answers back ([`proto`]).

pub mod backend;
pub mod cancel;
pub mod debug;
pub mod documents;
pub mod indexing;
pub mod layer;
pub mod model_host;
pub mod position;
pub mod proto;
pub mod settings;
pub mod skills;
pub mod state;
pub mod tracker;
pub mod transport;

use std::path::PathBuf;

use tower_lsp_server::{LspService, Server};

pub use basis_model::registry::ModelSpec;
pub use model_host::Resolver;

/// What the command line gives the server.
#[derive(Clone)]
pub struct ServerOptions {
    /// `$BASIS_HOME`: the feedback store's default location.
    pub basis_home: PathBuf,
    /// Resolves the `model` setting to weights (the CLI owns the model store).
    pub resolver: Resolver,
    /// Enables `basis/debug/panic` and `basis/debug/sleep`, for tests.
    pub test_hooks: bool,
}

fn service(
    options: ServerOptions,
) -> (
    layer::Ordered<LspService<backend::Backend>>,
    tower_lsp_server::ClientSocket,
) {
    let shared = state::Shared::new(options);
    let for_backend = shared.clone();
    let (service, socket) = LspService::build(move |client| {
        backend::Backend(state::Ctx {
            client,
            shared: for_backend,
        })
    })
    .custom_method("basis/localize", backend::Backend::localize)
    .custom_method("basis/feedback", backend::Backend::feedback)
    .custom_method("basis/feedbackFlush", backend::Backend::feedback_flush)
    .custom_method(
        "window/workDoneProgress/cancel",
        backend::Backend::progress_cancel,
    )
    .custom_method(
        "basis/debug/documentText",
        backend::Backend::debug_document_text,
    )
    .custom_method("basis/debug/stats", backend::Backend::debug_stats)
    .custom_method("basis/debug/panic", backend::Backend::debug_panic)
    .custom_method("basis/debug/sleep", backend::Backend::debug_sleep)
    .finish();
    (layer::Ordered::new(service, shared), socket)
}

/// Serves one client over a byte stream until it exits (see [`transport`] for why
/// the frames pass through our own pumps).
async fn serve_io<I, O>(input: I, output: O, options: ServerOptions)
where
    I: tokio::io::AsyncRead + Unpin + Send + 'static,
    O: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (service, socket) = service(options);
    let (to_server, server_in) = tokio::io::duplex(1 << 16);
    let (server_out, from_server) = tokio::io::duplex(1 << 16);
    let (errors_tx, errors_rx) = tokio::sync::mpsc::unbounded_channel();
    let input_pump = tokio::spawn(transport::pump_input(input, to_server, errors_tx));
    let output_pump = transport::pump_output(from_server, output, errors_rx);
    let server = async move {
        Server::new(server_in, server_out, socket)
            .concurrency_level(layer::CONCURRENCY)
            .serve(service)
            .await;
    };
    tokio::join!(server, output_pump);
    // After `exit` the client may keep its end open; stop reading it.
    input_pump.abort();
}

/// Serves one client over stdin/stdout until it exits.
pub async fn serve_stdio(options: ServerOptions) {
    serve_io(tokio::io::stdin(), tokio::io::stdout(), options).await;
}

/// Serves clients over TCP (for debugging), one connection at a time.
pub async fn serve_tcp(addr: std::net::SocketAddr, options: ServerOptions) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, peer) = listener.accept().await?;
        tracing::info!("client connected from {peer}");
        let (read, write) = stream.into_split();
        serve_io(read, write, options.clone()).await;
        tracing::info!("client {peer} disconnected");
    }
}
