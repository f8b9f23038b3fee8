//! The transport ceiling: bytes from memory over quinn with wharf's transport settings, with no disk
//! and no hashing, server to client on `streams` unidirectional streams at once.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wharf_common::datagram::{largest_datagram_towards, quic_endpoint};
use wharf_common::net::{TransportSettings, bind_udp};

const CHUNK: usize = 1 << 20;

fn endpoint(
    settings: &TransportSettings,
    server: Option<quinn::ServerConfig>,
) -> anyhow::Result<quinn::Endpoint> {
    let bound = bind_udp("127.0.0.1:0".parse()?, settings.socket_buffer)?;
    Ok(quic_endpoint(quinn::EndpointConfig::default(), server, bound.socket, largest_datagram())?)
}

/// What wharf's ends search up to on loopback.
fn largest_datagram() -> u16 {
    largest_datagram_towards(SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Time to move `bytes_per_stream` on each of `streams` streams, from connection to the last byte.
pub async fn transfer(
    cert: &Path,
    key: &Path,
    streams: usize,
    bytes_per_stream: u64,
) -> anyhow::Result<Duration> {
    let settings = TransportSettings::default();
    let crypto = wharf_common::tls::server_crypto(
        wharf_common::tls::load_certs(cert)?,
        wharf_common::tls::load_key(key)?,
    )?;
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server_config.transport_config(Arc::new(settings.transport_config(false, largest_datagram())));
    let server = endpoint(&settings, Some(server_config))?;
    let server_addr = server.local_addr()?;

    let sender = tokio::spawn(send_all(server, streams, bytes_per_stream));

    let verifier = wharf::trust::ca_verifier(cert)?;
    let mut client_config =
        quinn::ClientConfig::new(Arc::new(wharf_common::tls::client_crypto(verifier)?));
    client_config.transport_config(Arc::new(settings.transport_config(true, largest_datagram())));
    let client = endpoint(&settings, None)?;
    let conn = client.connect_with(client_config, server_addr, "localhost")?.await?;
    let started = Instant::now();
    let mut reads = Vec::new();
    for _ in 0..streams {
        let mut stream = conn.accept_uni().await?;
        reads.push(tokio::spawn(async move {
            let mut total = 0u64;
            while let Some(chunk) = stream.read_chunk(CHUNK, true).await.expect("read") {
                total += chunk.bytes.len() as u64;
            }
            total
        }));
    }
    for read in reads {
        anyhow::ensure!(read.await? == bytes_per_stream, "short read");
    }
    let elapsed = started.elapsed();
    conn.close(0u32.into(), b"done");
    let _ = sender.await;
    client.wait_idle().await;
    Ok(elapsed)
}

/// The sending side: accepts one connection and sends `bytes_per_stream` of zeros on each of
/// `streams` streams at once.
async fn send_all(server: quinn::Endpoint, streams: usize, bytes_per_stream: u64) {
    let conn = server.accept().await.expect("incoming").await.expect("handshake");
    let payload = Bytes::from(vec![0u8; CHUNK]);
    let mut sends = Vec::new();
    for _ in 0..streams {
        let (conn, payload) = (conn.clone(), payload.clone());
        sends.push(tokio::spawn(async move {
            let mut stream = conn.open_uni().await.expect("open");
            let mut left = bytes_per_stream;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                stream.write_chunk(payload.slice(..n)).await.expect("write");
                left -= n as u64;
            }
            stream.finish().expect("finish");
            let _ = stream.stopped().await;
        }));
    }
    for send in sends {
        send.await.expect("send task");
    }
    conn.closed().await;
}
