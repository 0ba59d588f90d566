//! The listener's bounds: a client that never finishes its request head is cut off, and
//! connections past the limit are closed at once, so no client can hold the process's
//! descriptors before presenting a token.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warden_gateway::http::serve::{Bounds, serve};

/// Longer than any wait below should take; a failure, not a measurement.
const HANG_GUARD: Duration = Duration::from_secs(20);

async fn start(bounds: Bounds) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/", get(|| async { "hello" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, None, router, bounds, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Reads until the server closes the connection; what it sent.
async fn until_closed(tcp: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(HANG_GUARD, tcp.read_to_end(&mut out))
        .await
        .expect("the server kept the connection open")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

async fn get_root(addr: std::net::SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    until_closed(&mut tcp).await
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off() {
    let (addr, _stop) = start(Bounds {
        max_connections: 8,
        header_timeout: Duration::from_millis(300),
        ..Bounds::default()
    })
    .await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = until_closed(&mut slow).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(get_root(addr).await.contains("hello"));
}

#[tokio::test]
async fn a_client_that_never_sends_a_byte_is_cut_off() {
    let (addr, _stop) = start(Bounds {
        max_connections: 8,
        header_timeout: Duration::from_millis(300),
        ..Bounds::default()
    })
    .await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert_eq!(until_closed(&mut silent).await, "");
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_and_slots_come_back() {
    let (addr, _stop) = start(Bounds {
        max_connections: 2,
        header_timeout: Duration::from_millis(500),
        ..Bounds::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // One byte: the server has surely accepted it (and given it a slot).
        tcp.write_all(b"G").await.unwrap();
        held.push(tcp);
    }
    // Give the accept loop the two connections before the third (bounded polling).
    let mut third = String::from("200 OK");
    for _ in 0..50 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let _ = tcp
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        third = until_closed(&mut tcp).await;
        if third.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(third, "", "a third connection was served");
    // The two held ones are cut off by the head timeout; then there is room again.
    for tcp in &mut held {
        until_closed(tcp).await;
    }
    let mut served = String::new();
    for _ in 0..50 {
        served = get_root(addr).await;
        if served.contains("hello") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(served.contains("hello"), "{served}");
}
