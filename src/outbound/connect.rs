//! Opening the connection of one call: the URL is checked against the
//! policy, its host is resolved here and every address it resolves to is
//! checked before one of exactly those addresses is connected to, so a DNS
//! answer that changes between the check and the connection (rebinding)
//! cannot reach a private address; `https` URLs then get a TLS session
//! verified against [`Trust`].

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::outbound::policy::{UrlPolicy, check_addresses, check_url};
use crate::outbound::trust::Trust;

/// A connection, plain or TLS: what an exchange runs on.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects to `u`'s server as the policy allows, or says why not.
pub async fn open(u: &url::Url, policy: UrlPolicy, trust: &Trust) -> Result<Box<dyn Io>, String> {
    check_url(u, policy).map_err(|e| format!("refused URL: {e}"))?;
    let host = u.host_str().ok_or("the URL names no host")?.to_owned();
    let port = u.port_or_known_default().ok_or("the URL names no port")?;
    let addrs = resolve(u, &host, port).await?;
    check_addresses(&addrs, policy)?;
    let tcp = connect(&addrs, port).await?;
    let _ = tcp.set_nodelay(true);
    if u.scheme() != "https" {
        return Ok(Box::new(tcp));
    }
    let name = match u.host() {
        Some(url::Host::Ipv4(ip)) => ServerName::IpAddress(IpAddr::V4(ip).into()),
        Some(url::Host::Ipv6(ip)) => ServerName::IpAddress(IpAddr::V6(ip).into()),
        _ => ServerName::try_from(host).map_err(|_| "the host is not a valid TLS name")?,
    };
    let tls = trust
        .connector()
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(Box::new(tls))
}

/// Every address of the URL's host: the literal itself, or what the
/// resolver answered.
async fn resolve(u: &url::Url, host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
    Ok(match u.host() {
        Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        _ => {
            let mut found: Vec<IpAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("cannot resolve the host: {e}"))?
                .map(|a| a.ip())
                .collect();
            found.dedup();
            found
        }
    })
}

/// Connects to the first of the checked addresses that answers.
async fn connect(addrs: &[IpAddr], port: u16) -> Result<TcpStream, String> {
    let mut last = String::from("no address to connect to");
    for ip in addrs {
        match TcpStream::connect(SocketAddr::new(*ip, port)).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("cannot connect: {e}"),
        }
    }
    Err(last)
}
