//! The Azure Key Vault fake (fake_azure.rs) reachable from outside the test process: the binary
//! and Python's azure-keyvault-secrets talk to `https://fakevault.vault.azure.net` through an
//! HTTP CONNECT proxy on 127.0.0.1 (`HTTPS_PROXY=http://127.0.0.1:PORT`), which terminates TLS
//! with a certificate for that name signed by a throwaway test CA (`SSL_CERT_FILE` /
//! `REQUESTS_CA_BUNDLE` point the clients at it) and answers each HTTP/1.1 request with the fake.
//! So the clients run unchanged: real name, real TLS verification, the fake's challenge flow.
//! Nothing leaves loopback: every CONNECT ends here, whatever host it names.
#![allow(dead_code)]

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use azure_core::http::{Method, Request, Url};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::fake_azure::FakeAzure;

/// Serve `fake` behind a CONNECT proxy; returns the proxy URL (`http://127.0.0.1:PORT`). The
/// listener is bound before this returns, so it is ready.
pub async fn start(fake: FakeAzure, cert_chain: &Path, key: &Path) -> String {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert_chain).expect("server.pem").collect::<Result<_, _>>().expect("server.pem");
    let key = PrivateKeyDer::from_pem_file(key).expect("server.key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, fake) = (acceptor.clone(), fake.clone());
            tokio::spawn(async move {
                let _ = serve(tcp, acceptor, fake).await;
            });
        }
    });
    format!("http://{addr}")
}

/// The request head (request line + headers), or None at EOF.
async fn read_head<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> std::io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            if lines.is_empty() {
                continue;
            }
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

async fn serve(tcp: tokio::net::TcpStream, acceptor: TlsAcceptor, fake: FakeAzure) -> std::io::Result<()> {
    let mut tcp = BufReader::new(tcp);
    let Some(head) = read_head(&mut tcp).await? else { return Ok(()) };
    if !head[0].starts_with("CONNECT ") {
        tcp.get_mut().write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n").await?;
        return Ok(());
    }
    tcp.get_mut().write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await?;
    let tls = acceptor.accept(tcp.into_inner()).await?;
    let mut stream = BufReader::new(tls);
    while let Some(head) = read_head(&mut stream).await? {
        let mut parts = head[0].split_whitespace();
        let (method, target) = (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or("/").to_string());
        let mut headers = Vec::new();
        for h in &head[1..] {
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let mut body = vec![0u8; header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0)];
        stream.read_exact(&mut body).await?;
        let host = header("host").unwrap_or_else(|| "fakevault.vault.azure.net".into());
        let host = host.strip_suffix(":443").unwrap_or(&host);
        let url = Url::parse(&format!("https://{host}{target}")).map_err(std::io::Error::other)?;
        let mut req = Request::new(url, Method::from_str(&method).map_err(|_| std::io::Error::other("method"))?);
        for (k, v) in &headers {
            if !matches!(k.as_str(), "host" | "content-length" | "connection") {
                req.insert_header(k.clone(), v.clone());
            }
        }
        req.set_body(body);
        let (status, resp_headers, resp_body) = fake.handle(&mut req).await.deconstruct();
        let bytes = resp_body.collect().await.map_err(std::io::Error::other)?;
        let mut out = format!("HTTP/1.1 {} X\r\n", u16::from(status));
        for (k, v) in resp_headers.iter() {
            if k.as_str() != "content-length" {
                out.push_str(&format!("{}: {}\r\n", k.as_str(), v.as_str()));
            }
        }
        out.push_str(&format!("content-length: {}\r\n\r\n", bytes.len()));
        let w = stream.get_mut();
        w.write_all(out.as_bytes()).await?;
        w.write_all(&bytes).await?;
        w.flush().await?;
        if header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
            break;
        }
    }
    let _ = stream.get_mut().shutdown().await;
    Ok(())
}

/// A fake `az` on PATH for the binary's `credential = "azure_cli"`: prints the fake vault's token.
pub fn fake_az(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let exp = chrono::Utc::now().timestamp() + 3600;
    let script = format!(
        "#!/bin/sh\necho '{{\"accessToken\": \"{}\", \"expiresOn\": \"2099-01-01 00:00:00.000000\", \"expires_on\": {exp}, \"tokenType\": \"Bearer\"}}'\n",
        crate::fake_azure::TOKEN
    );
    let path = dir.join("az");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
