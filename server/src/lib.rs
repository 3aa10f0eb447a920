//! `ferrolm serve`: an OpenAI-compatible HTTP server over one model.
//!
//! The model is mapped once; `n_slots` sequences of one context share it, each with its own KV
//! cache allocated at start. The engine thread ([`engine`]) batches every running request's next
//! token into one forward pass (continuous batching) and keeps each slot's cache for the next
//! request with the same prefix; the HTTP side ([`api`], on tokio and axum) validates requests,
//! queues them and streams the tokens back.

pub mod api;
pub mod engine;
pub mod openai;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferrolm::chat::ChatTemplate;
use ferrolm::model::Model;
use ferrolm::tokenizer::Tokenizer;

pub use engine::EngineConfig;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Model(#[from] ferrolm::model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] ferrolm::tokenizer::TokenizerError),
    #[error(transparent)]
    Chat(#[from] ferrolm::chat::ChatError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("--cors {0:?} is not a valid origin header value")]
    Cors(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How `ferrolm serve` runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub model: PathBuf,
    pub host: String,
    /// 0: any free port (the address is printed).
    pub port: u16,
    pub engine: EngineConfig,
    pub api_key: Option<String>,
    pub cors: Option<String>,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// How long a request body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// A chat template to use instead of the model's (Jinja source).
    pub chat_template: Option<String>,
}

/// Loads the model, starts the engine, serves until SIGINT or SIGTERM, then stops accepting,
/// lets the requests in flight finish, and returns.
pub fn run(mut cfg: ServerConfig) -> Result<(), ServerError> {
    let model = Arc::new(Model::load(&cfg.model)?);
    if cfg.engine.n_ctx == 0 {
        cfg.engine.n_ctx = model
            .config()
            .n_ctx_train
            .clamp(1, ferrolm::model::DEFAULT_MAX_CTX);
    }
    let tok = Arc::new(Tokenizer::from_gguf(model.gguf())?);
    let own = ChatTemplate::from_gguf(model.gguf())?;
    let template = match &cfg.chat_template {
        Some(src) => ChatTemplate::new(src, own.bos_token(), own.eos_token())?,
        None => own,
    };
    let cors = cfg
        .cors
        .as_ref()
        .map(|o| axum::http::HeaderValue::from_str(o).map_err(|_| ServerError::Cors(o.clone())))
        .transpose()?;
    let model_id = cfg
        .model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let model_id = model_id
        .strip_suffix(".gguf")
        .unwrap_or(&model_id)
        .to_string();
    let (handle, engine) = engine::start(Arc::clone(&model), Arc::clone(&tok), &cfg.engine)?;
    let kv_bytes = {
        let c = model.config();
        ferrolm::kv_cache::KvCache::bytes_needed(
            cfg.engine.kv_type,
            c.n_layer,
            cfg.engine.n_ctx,
            c.n_head_kv,
            c.head_dim,
        )
        .unwrap_or(0)
            * cfg.engine.n_slots
    };
    let state = Arc::new(api::AppState {
        handle,
        tok,
        template,
        model_id: model_id.clone(),
        n_ctx: cfg.engine.n_ctx,
        n_slots: cfg.engine.n_slots,
        api_key: cfg.api_key.clone(),
        cors,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        body_limit: cfg.body_limit,
        body_timeout: cfg.body_timeout,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let local: SocketAddr = listener.local_addr()?;
        eprintln!(
            "ferrolm serve: {model_id}: {} slots x {} positions, KV cache {:.1} MiB, {} threads",
            cfg.engine.n_slots,
            cfg.engine.n_ctx,
            kv_bytes as f64 / (1 << 20) as f64,
            cfg.engine.n_threads,
        );
        eprintln!("ferrolm serve: listening on http://{local}");
        let app = api::router(Arc::clone(&state));
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        eprintln!("ferrolm serve: stopped accepting; finishing the requests in flight");
        Ok::<_, ServerError>(())
    })?;
    drop(state);
    drop(rt);
    let _ = engine.join();
    eprintln!("ferrolm serve: done");
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let int = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = int.await;
                    return;
                }
            };
        tokio::select! {
            _ = int => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = int.await;
    }
}
