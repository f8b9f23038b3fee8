//! The QUIC endpoint and the accept loop.
//!
//! [`Server::bind`] builds everything from a root and its configuration; [`Server::run`] accepts until
//! the shutdown future completes, then tells every connection to stop (a `watch` channel), waits for
//! them (each holds a clone of an mpsc sender; all dropped means all done), and closes the endpoint.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use wharf_common::net::CloseCodeExt as _;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;
use wharf_common::datagram;
use wharf_common::net::bind_udp;
use wharf_common::proto::CloseCode;

use crate::auth::Authenticator;
use crate::blocking::BlockingPool;
use crate::config::Config;
use crate::context::ServerContext;
use crate::layout::Layout;
use crate::limiter::{ConnectionLimiter, HandshakeCount};
use crate::password::Passwords;
use crate::quota::QuotaBook;
use crate::storage::Storage;
use crate::users::UserStore;

/// A bound, ready server.
pub struct Server {
    endpoint: quinn::Endpoint,
    /// What every connection's configuration starts from (the TLS identity, migration).
    server_config: quinn::ServerConfig,
    ctx: Arc<ServerContext>,
    limiter: Arc<ConnectionLimiter>,
    /// Handshakes in progress from addresses not yet validated.
    unvalidated: Arc<HandshakeCount>,
    /// The admin address for metrics, if `[metrics] listen` names one.
    metrics: Option<tokio::net::TcpListener>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.local_addr().ok()).finish_non_exhaustive()
    }
}

impl Server {
    /// Loads the certificate, opens storage and binds the UDP socket on `listen`.
    pub async fn bind(
        layout: &Layout,
        config: Config,
        listen: SocketAddr,
    ) -> anyhow::Result<Server> {
        Server::bind_with(layout, config, listen, |storage| storage).await
    }

    /// Like [`Server::bind`], with the storage the server uses made from the configured backend by
    /// `wrap`, which may add behaviour (tests inject faults this way).
    pub async fn bind_with(
        layout: &Layout,
        config: Config,
        listen: SocketAddr,
        wrap: impl FnOnce(Arc<dyn Storage>) -> Arc<dyn Storage>,
    ) -> anyhow::Result<Server> {
        wharf_common::transfer::set_thread_niceness(config.transfer.thread_niceness);
        let certs = wharf_common::tls::load_certs(&config.tls.cert_path(layout.root()))?;
        let key = wharf_common::tls::load_key(&config.tls.key_path(layout.root()))?;
        let crypto = wharf_common::tls::server_crypto(certs, key)?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        // Each connection gets its own transport configuration ([`Server::admit`]); this one is
        // quinn's fallback and is never used.
        server_config.transport_config(Arc::new(
            config.transport.transport_config(false, datagram::DEFAULT_DATAGRAM),
        ));
        server_config.migration(true);

        let bound = bind_udp(listen, config.transport.socket_buffer)
            .with_context(|| format!("binding UDP {listen}"))?;
        tracing::info!(
            requested = config.transport.socket_buffer,
            recv = bound.recv_buffer,
            send = bound.send_buffer,
            "UDP socket buffers granted by the kernel"
        );
        if bound.recv_buffer < config.transport.socket_buffer {
            tracing::warn!(
                "receive buffer smaller than asked for; raise net.core.rmem_max for full speed"
            );
        }
        // Clients on any route may send datagrams as large as it carries.
        let endpoint = datagram::quic_endpoint(
            crate::setup::endpoint_config(layout)?,
            Some(server_config.clone()),
            bound.socket,
            datagram::MAX_DATAGRAM,
        )
        .context("creating the QUIC endpoint")?;

        let files = BlockingPool::new(config.server.blocking_ops);
        let auth = authenticator(layout, &config, files.clone())?;
        let storage = crate::storage::open(layout, &config, files).await?;
        let unvalidated = Arc::new(HandshakeCount::new(config.server.retry_above_handshakes));
        let limiter = ConnectionLimiter::new(
            config.server.max_connections,
            config.server.max_connections_per_ip,
        );
        let ctx = ServerContext {
            config,
            auth,
            storage: wrap(storage),
            quotas: QuotaBook::default(),
            uploads: Arc::default(),
        };
        let metrics = match ctx.config.metrics.listen {
            Some(listen) => Some(crate::metrics::bind(listen).await?),
            None => None,
        };
        Ok(Server { endpoint, server_config, ctx: Arc::new(ctx), limiter, unvalidated, metrics })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Accepts connections until `shutdown` completes, then shuts down gracefully.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        sweep_partials(&self.ctx).await;
        let sweeper = tokio::spawn(sweep_every_hour(self.ctx.clone()));
        let metrics =
            self.metrics.take().map(|listener| tokio::spawn(crate::metrics::serve(listener)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        tokio::pin!(shutdown);
        loop {
            let incoming = tokio::select! {
                incoming = self.endpoint.accept() => incoming,
                () = &mut shutdown => break,
            };
            let Some(incoming) = incoming else { break };
            self.admit(incoming, stop_rx.clone(), done_tx.clone());
        }

        sweeper.abort();
        if let Some(metrics) = &metrics {
            metrics.abort();
        }
        tracing::info!("shutting down: no new connections");
        self.endpoint.set_server_config(None);
        let _ = stop_tx.send(true);
        drop(done_tx);
        let grace = self.ctx.config.server.shutdown_grace() + Duration::from_secs(5);
        if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
            tracing::warn!("connections still open after the grace period; closing them");
        }
        self.endpoint.close(CloseCode::ShuttingDown.varint(), b"server shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        tracing::info!("stopped");
    }

    /// The server configuration for a connection from `remote`: the path-MTU search goes as high
    /// as the route towards it carries.
    fn server_config_for(&self, remote: SocketAddr) -> quinn::ServerConfig {
        let largest = datagram::largest_datagram_towards(remote);
        let mut config = self.server_config.clone();
        config
            .transport_config(Arc::new(self.ctx.config.transport.transport_config(false, largest)));
        config
    }

    /// Starts the handshake of one incoming connection and serves it once it is admitted; `done`
    /// is dropped when the connection ends.
    fn admit(
        &self,
        incoming: quinn::Incoming,
        stop: watch::Receiver<bool>,
        done: mpsc::Sender<()>,
    ) {
        let validated = incoming.remote_address_validated();
        let unvalidated = if validated {
            None
        } else {
            match self.unvalidated.try_enter() {
                Some(handshake) => Some(handshake),
                None => {
                    // Many handshakes from unproven addresses at once: a spoofed flood, perhaps.
                    // A stateless Retry makes each prove its address before we keep anything.
                    let _ = incoming.retry();
                    return;
                }
            }
        };
        let remote = incoming.remote_address();
        // An unproven address might be someone else's: it takes that address's slot only once
        // its handshake proves it, so a spoofer cannot fill another client's slots.
        let early_admission = validated.then(|| self.limiter.admit(remote.ip()));
        let (limiter, ctx) = (self.limiter.clone(), self.ctx.clone());
        let span = tracing::info_span!("conn", %remote, user = tracing::field::Empty);
        let accepted = incoming.accept_with(Arc::new(self.server_config_for(remote)));
        let serve = async move {
            let handshake = match accepted {
                Ok(connecting) => connecting.await,
                Err(err) => Err(err),
            };
            drop(unvalidated);
            let conn = match handshake {
                Ok(conn) => conn,
                Err(err) => return tracing::debug!(%err, "handshake failed"),
            };
            match early_admission.unwrap_or_else(|| limiter.admit(remote.ip())) {
                Ok(_admitted) => crate::conn::handle(conn, ctx, stop).await,
                Err(refusal) => {
                    tracing::warn!(?refusal, "connection refused");
                    conn.close(CloseCode::TooManyConnections.varint(), refusal.reason());
                }
            }
            drop(done);
        };
        tokio::spawn(serve.instrument(span));
    }
}

/// Checks logins against the configured user store; on nodes that share a database, counting the
/// failures every node saw.
fn authenticator(
    layout: &Layout,
    config: &Config,
    files: BlockingPool,
) -> anyhow::Result<Authenticator> {
    let users = UserStore::open(layout, config, tokio::runtime::Handle::current())?;
    let auth = Authenticator::new(users, Passwords::new(&config.auth)?, &config.auth, files);
    if config.database.url.is_empty() {
        return Ok(auth);
    }
    let window = Duration::from_secs(config.auth.throttle_window_secs);
    let pool = crate::db::pool(&config.database)?;
    Ok(auth.sharing(crate::db::throttle::SharedFailures::new(pool, window)))
}

/// Deletes expired partial uploads and gives their space back.
async fn sweep_partials(ctx: &ServerContext) {
    match ctx.storage.expire_partials(ctx.config.server.partial_ttl()).await {
        Ok(freed) => {
            for (user, bytes) in freed {
                tracing::info!(%user, bytes, "expired partial uploads");
                ctx.quotas.release(&user, bytes);
            }
        }
        Err(err) => tracing::warn!(%err, "cannot expire partial uploads"),
    }
}

async fn sweep_every_hour(ctx: Arc<ServerContext>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(3600));
    ticks.tick().await; // the first tick is immediate, and startup has swept already
    loop {
        ticks.tick().await;
        sweep_partials(&ctx).await;
    }
}

/// Listens for SIGINT and SIGTERM from now on, and returns what completes on the first of them.
/// Called (inside the runtime) before the server says it listens: a signal that came between that
/// line and the first poll of an `async` listener would have ended the process at once, by the
/// signal's default action, instead of shutting it down gracefully.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let listeners = [SignalKind::interrupt(), SignalKind::terminate()].map(|kind| {
        signal(kind).inspect_err(|err| tracing::error!(%err, ?kind, "cannot listen for a signal"))
    });
    async move {
        let [interrupt, terminate] = listeners;
        let recv = |listener: Result<tokio::signal::unix::Signal, _>| async move {
            match listener {
                Ok(mut signal) => drop(signal.recv().await),
                // Without the listener, this signal keeps its default action.
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = recv(interrupt) => {}
            () = recv(terminate) => {}
        }
    }
}
