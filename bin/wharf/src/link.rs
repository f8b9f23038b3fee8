//! Reaching a server and deciding to trust it: connection options, the QUIC link with its control
//! stream, certificate checks (a CA, the system's store, or a pin recorded on first use), and what
//! a failed handshake means in words a user can act on. [`crate::session`] builds the command API
//! on top.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wharf_common::net::CloseCodeExt as _;

use wharf_common::datagram::{largest_datagram_towards, quic_endpoint};
use wharf_common::net::{TransportSettings, bind_udp};
use wharf_common::proto::CloseCode;
use wharf_common::transfer::OutgoingLanes;

use crate::error::{ClientError, Result};
use crate::rpc::Rpc;
use crate::streams::IncomingStreams;
use crate::target::Target;
use crate::trust::{HostKeyError, KnownHosts, PinVerifier, ca_verifier, system_verifier};

/// Asked about an unknown host: `(host_key, fingerprint) -> trust it?`.
pub type AskUser = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// What to do when `known_hosts` has no entry for the server.
#[derive(Clone)]
pub enum UnknownHost {
    /// Refuse (batch mode without `--accept-new-host`).
    Refuse,
    /// Trust and record it (`--accept-new-host`).
    Accept,
    /// Ask the user.
    Ask(AskUser),
}

impl std::fmt::Debug for UnknownHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnknownHost::Refuse => "Refuse",
            UnknownHost::Accept => "Accept",
            UnknownHost::Ask(_) => "Ask",
        })
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Verify against the certificates in this file (a CA, or the server's own certificate).
    Ca(PathBuf),
    /// Verify against the operating system's CA certificates.
    System,
    /// Pin the certificate's fingerprint in a known-hosts file.
    Pinned { known_hosts: KnownHosts, unknown: UnknownHost },
}

/// Everything needed to reach a server.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub target: Target,
    pub trust: Trust,
    pub transport: TransportSettings,
    pub connect_timeout: Duration,
    /// Local address to send from (any address of the right family when `None`).
    pub bind_ip: Option<std::net::IpAddr>,
}

impl ConnectOptions {
    pub fn new(target: Target, trust: Trust) -> ConnectOptions {
        ConnectOptions {
            target,
            trust,
            transport: TransportSettings::default(),
            connect_timeout: Duration::from_secs(10),
            bind_ip: None,
        }
    }
}

/// One QUIC connection of a session, with its control stream and incoming transfer streams.
/// [`Session::reconnect`] replaces it; `generation` tells the links apart.
#[derive(Debug)]
pub(crate) struct Link {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    /// The same connection as the sending end of upload lanes, in the order they go out in.
    pub outgoing: OutgoingLanes,
    pub rpc: Rpc,
    pub incoming: Arc<IncomingStreams>,
    pub generation: u64,
}

/// Connects to the server of `options` and checks its certificate; nothing secret is sent.
pub(crate) async fn connect_link(options: &ConnectOptions, generation: u64) -> Result<Link> {
    let target = &options.target;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|err| connect_error(options, format!("cannot resolve {}: {err}", target.host)))?
        .collect();
    let trust = Verification::of(options)?;
    let crypto = wharf_common::tls::client_crypto(trust.verifier.clone())
        .map_err(|err| connect_error(options, err.to_string()))?;
    let crypto = Arc::new(crypto);

    let mut last_error = connect_error(options, "no address found".into());
    for addr in addrs {
        let largest_datagram = largest_datagram_towards(addr);
        let mut client_config = quinn::ClientConfig::new(crypto.clone());
        client_config
            .transport_config(Arc::new(options.transport.transport_config(true, largest_datagram)));
        let endpoint = endpoint_for(options, addr, largest_datagram)?;
        let connecting = endpoint
            .connect_with(client_config, addr, &target.host)
            .map_err(|err| connect_error(options, err.to_string()))?;
        // Only a first connection listens for a refusal: a reconnection may be waiting for a
        // server that is starting again.
        let handshake = tokio::select! {
            outcome = tokio::time::timeout(options.connect_timeout, connecting) => outcome,
            () = refused(options, addr), if generation == 0 => {
                let why = format!("connection refused: nothing listens on UDP port {}", addr.port());
                last_error = connect_error(options, why);
                continue;
            }
        };
        let conn = match handshake {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => {
                trust.refuse_if_changed(options)?;
                last_error = match &err {
                    quinn::ConnectionError::ApplicationClosed(_) => crate::rpc::closed_error(&err),
                    _ => {
                        let reason =
                            explain_handshake(&err.to_string(), &target.host, &options.trust);
                        connect_error(options, reason)
                    }
                };
                continue;
            }
            Err(_) => {
                let waited = options.connect_timeout;
                last_error =
                    connect_error(options, format!("no answer from {addr} within {waited:?}"));
                continue;
            }
        };
        if let Err(err) = trust.pin_if_new(options) {
            conn.close(CloseCode::Normal.varint(), b"host not trusted");
            return Err(err);
        }
        let (send, recv) = conn.open_bi().await.map_err(|err| crate::rpc::closed_error(&err))?;
        let rpc = Rpc::start(conn.clone(), send, recv);
        let incoming = Arc::new(IncomingStreams::default());
        tokio::spawn(incoming.clone().accept(conn.clone()));
        let outgoing = OutgoingLanes::new(conn.clone());
        return Ok(Link { endpoint, conn, outgoing, rpc, incoming, generation });
    }
    Err(last_error)
}

/// Returns if nothing listens on `addr`, and never otherwise. QUIC's socket is not connected, so the
/// ICMP "port unreachable" a host sends back for a closed port never reaches it, and a mistyped port
/// or a server that is not running would cost the whole connect timeout, where ssh says "connection
/// refused" at once. A socket connected to `addr` hears it: it sends one empty datagram (a server
/// drops it unread) and waits for the refusal.
async fn refused(options: &ConnectOptions, addr: SocketAddr) {
    let heard_refusal = async {
        let probe = tokio::net::UdpSocket::bind(local_for(options, addr)).await.ok()?;
        probe.connect(addr).await.ok()?;
        probe.send(&[]).await.ok()?;
        let mut answer = [0u8; 1];
        loop {
            match probe.recv(&mut answer).await {
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => return Some(()),
                Err(_) => return None,
                // Whatever answers is no refusal; a QUIC server answers nothing.
                Ok(_) => {}
            }
        }
    };
    if heard_refusal.await.is_none() {
        std::future::pending::<()>().await;
    }
}

fn connect_error(options: &ConnectOptions, reason: String) -> ClientError {
    ClientError::Connect { target: options.target.host_key(), reason }
}

/// A QUIC endpoint on a fresh UDP socket, of the address family of `addr` (or bound where the
/// options say), taking datagrams of up to `largest_datagram` bytes.
fn endpoint_for(
    options: &ConnectOptions,
    addr: SocketAddr,
    largest_datagram: u16,
) -> Result<quinn::Endpoint> {
    let bound = bind_udp(local_for(options, addr), options.transport.socket_buffer)
        .map_err(|err| connect_error(options, format!("cannot bind a UDP socket: {err}")))?;
    quic_endpoint(quinn::EndpointConfig::default(), None, bound.socket, largest_datagram)
        .map_err(|err| connect_error(options, err.to_string()))
}

/// Where a socket that talks to `addr` is bound: any port, on the address the options say or on
/// any address of `addr`'s family.
fn local_for(options: &ConnectOptions, addr: SocketAddr) -> SocketAddr {
    match options.bind_ip {
        Some(ip) => SocketAddr::new(ip, 0),
        None if addr.is_ipv6() => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        None => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
    }
}

/// How the server's certificate is checked, and, for a pinned host, what the handshake saw.
struct Verification {
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    /// The pin on record for this host, if any.
    pin: Option<crate::trust::Pin>,
    observed: Option<Arc<parking_lot::Mutex<crate::trust::Observed>>>,
}

impl Verification {
    fn of(options: &ConnectOptions) -> Result<Verification> {
        Ok(match &options.trust {
            Trust::Ca(file) => {
                Verification { verifier: ca_verifier(file)?, pin: None, observed: None }
            }
            Trust::System => {
                Verification { verifier: system_verifier()?, pin: None, observed: None }
            }
            Trust::Pinned { known_hosts, .. } => {
                let pin = known_hosts.lookup(&options.target.host_key())?;
                let (verifier, observed) =
                    PinVerifier::new(pin.as_ref().map(|p| p.fingerprint.clone()));
                Verification { verifier, pin, observed: Some(observed) }
            }
        })
    }

    /// After a failed handshake: a pinned host that presented another certificate is refused
    /// loudly, like ssh's "REMOTE HOST IDENTIFICATION HAS CHANGED".
    fn refuse_if_changed(&self, options: &ConnectOptions) -> Result<()> {
        if let (Some(pin), Some(observed)) = (&self.pin, &self.observed) {
            let seen = observed.lock().fingerprint.clone();
            if let Some(presented) = seen.filter(|seen| *seen != pin.fingerprint) {
                return Err(changed(options, pin, presented));
            }
        }
        Ok(())
    }

    /// After a handshake with a host not pinned yet: pins what it presented, if the user (or the
    /// options) trust it.
    fn pin_if_new(&self, options: &ConnectOptions) -> Result<()> {
        let (Trust::Pinned { known_hosts, unknown }, None) = (&options.trust, &self.pin) else {
            return Ok(());
        };
        let seen = self.observed.as_ref().and_then(|o| o.lock().fingerprint.clone());
        let fingerprint =
            seen.ok_or_else(|| connect_error(options, "no certificate seen".into()))?;
        trust_new_host(&options.target.host_key(), &fingerprint, known_hosts, unknown)
            .map_err(ClientError::from)
    }
}

/// A handshake failure, with what to do about the usual ones: a certificate that the trusted CAs
/// (the `--ca` file, or the system's store) did not issue, or that does not name the host the
/// client was asked to reach.
fn explain_handshake(reason: &str, host: &str, trust: &Trust) -> String {
    let not_issued = ["UnknownIssuer", "BadSignature"].iter().any(|why| reason.contains(why));
    if not_issued && let Trust::Ca(file) = trust {
        format!(
            "the server's certificate is not one {} issued or holds: is it this server's CA file \
             (or its certs/server.crt)? [{reason}]",
            file.display()
        )
    } else if not_issued && matches!(trust, Trust::System) {
        format!(
            "the server's certificate was not issued by a CA this system trusts (a self-signed \
             one needs --ca FILE or pinning) [{reason}]"
        )
    } else if reason.contains("not valid for name") {
        format!(
            "the server's certificate does not name {host:?}: connect by a name it has, or on the \
             server run `wharfd setup --force --host {host}` and restart it (clients that pinned \
             the old certificate must then drop its known_hosts line) [{reason}]"
        )
    } else {
        reason.to_owned()
    }
}

fn changed(options: &ConnectOptions, pin: &crate::trust::Pin, presented: String) -> ClientError {
    let file = match &options.trust {
        Trust::Pinned { known_hosts, .. } => known_hosts.path().display().to_string(),
        Trust::Ca(_) | Trust::System => String::new(),
    };
    HostKeyError::Changed {
        host: options.target.host_key(),
        expected: pin.fingerprint.clone(),
        presented,
        file,
        line: pin.line,
    }
    .into()
}

fn trust_new_host(
    host_key: &str,
    fingerprint: &str,
    known_hosts: &KnownHosts,
    unknown: &UnknownHost,
) -> Result<(), HostKeyError> {
    let accepted = match unknown {
        UnknownHost::Accept => true,
        UnknownHost::Refuse => {
            return Err(HostKeyError::Unknown {
                host: host_key.to_owned(),
                fingerprint: fingerprint.to_owned(),
            });
        }
        UnknownHost::Ask(ask) => ask(host_key, fingerprint),
    };
    if !accepted {
        return Err(HostKeyError::Declined { host: host_key.to_owned() });
    }
    known_hosts.add(host_key, fingerprint)
}

#[cfg(test)]
mod tests {
    use super::{Trust, explain_handshake};

    #[test]
    fn a_certificate_for_another_name_says_how_to_fix_it() {
        let reason = "the cryptographic handshake failed: error 42: invalid peer certificate: \
                      certificate not valid for name \"files.example\"; certificate is only valid \
                      for DnsName(\"localhost\")";
        let text = explain_handshake(reason, "files.example", &Trust::System);
        assert!(text.contains("wharfd setup --force --host files.example"), "{text}");
        assert_eq!(explain_handshake("timed out", "h", &Trust::System), "timed out");
    }

    #[test]
    fn a_certificate_the_trusted_cas_did_not_issue_names_where_trust_came_from() {
        let reason = "the cryptographic handshake failed: error 51: invalid peer certificate: \
                      BadSignature";
        let ca = Trust::Ca("/etc/wharf/ca.pem".into());
        let text = explain_handshake(reason, "h", &ca);
        assert!(
            text.contains("not one /etc/wharf/ca.pem issued") && text.contains(reason),
            "{text}"
        );
        let text =
            explain_handshake("invalid peer certificate: UnknownIssuer", "h", &Trust::System);
        assert!(text.contains("not issued by a CA this system trusts"), "{text}");
    }
}
