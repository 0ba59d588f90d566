//! What the egress proxy adds to one small HTTP request: a GET of a 13-byte body from a local
//! hyper server, directly and through the proxy (decide with an allow policy, journal the
//! decision with `normal` sync, connect, forward, stream back, queue the outcome record).
//!
//! Each request opens a fresh connection in both cases (the proxy opens one upstream per
//! request; it keeps no pool), so the ratio compares like with like.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use warden_core::{AgentId, SessionId};
use warden_gateway::Guard;
use warden_gateway::egress::{EgressOptions, EgressProxy};
use warden_journal::{Journal, JournalOptions, SyncMode};
use warden_policy::{PolicySet, SourceFile};

const POLICY: &str = r#"permit(principal == Agent::"bench", action == Action::"http_request", resource == Host::"127.0.0.1")
  when { context.method == "GET" && context.path like "/v1/*" };"#;

/// A destination answering every request with a small body.
async fn destination() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"hello, agent\n",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

async fn proxy(dir: &tempfile::TempDir) -> SocketAddr {
    let journal = Journal::open(
        &dir.path().join("journal.db"),
        JournalOptions {
            sync: SyncMode::Normal,
            ..JournalOptions::default()
        },
    )
    .expect("journal opens");
    let policies = PolicySet::from_sources(&[SourceFile::new("bench.cedar", POLICY)], &[])
        .expect("policy loads");
    let guard = Guard::new(
        AgentId::new("bench").expect("agent"),
        SessionId::from_random([3; 16]),
        Arc::new(policies),
        journal,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let options = EgressOptions {
        allow_loopback: true,
        ..EgressOptions::default()
    };
    tokio::spawn(EgressProxy::new(guard, options).serve(listener, std::future::pending()));
    addr
}

/// One GET of `uri` on a fresh connection to `to`; returns the body length.
async fn get(to: SocketAddr, uri: &str) -> usize {
    let tcp = TcpStream::connect(to).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let response = sender
        .send_request(
            Request::get(uri)
                .body(Empty::<Bytes>::new())
                .expect("request"),
        )
        .await
        .expect("response");
    assert!(response.status().is_success(), "{}", response.status());
    let body = response.into_body().collect().await.expect("body");
    body.to_bytes().len()
}

fn egress(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (dest, proxy) = rt.block_on(async { (destination().await, proxy(&dir).await) });
    let absolute = format!("http://{dest}/v1/items");
    // Both paths work before anything is measured.
    assert_eq!(rt.block_on(get(dest, "/v1/items")), 13);
    assert_eq!(rt.block_on(get(proxy, &absolute)), 13);

    let mut g = c.benchmark_group("egress_get");
    g.sample_size(30)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("direct", |b| b.iter(|| rt.block_on(get(dest, "/v1/items"))));
    g.bench_function("through_proxy", |b| {
        b.iter(|| rt.block_on(get(proxy, &absolute)))
    });
    g.finish();
}

criterion_group!(benches, egress);
criterion_main!(benches);
