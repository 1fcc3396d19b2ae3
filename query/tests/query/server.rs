//! The socket limits of the served app, on a real socket at 127.0.0.1: a flood of clients that
//! never finish their headers neither keeps them open past the header timeout nor locks out a
//! client that sends its request at once; idle keep-alive connections are closed; a stop lets
//! the request in flight finish.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use nadir_query::server::{run_until, Limits};

fn app() -> Router {
    Router::new().route("/health", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            "done"
        }),
    )
}

/// Starts the server on a free port; the returned sender stops it.
fn start(
    limits: Limits,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            run_until(listener, app(), limits, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
    });
    (addr_rx.recv().unwrap(), tx, handle)
}

/// One request on a fresh connection: the status line and body.
fn get_once(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Whether the server closed `s` (a read returns end of stream or a reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => true, // an error response, then the close
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

#[test]
fn slow_headers_are_cut_off_and_do_not_lock_out_prompt_clients() {
    let limits = Limits {
        max_connections: 16,
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(30),
    };
    let (addr, stop, handle) = start(limits);
    // Four times the cap of clients that start a request and never finish its headers.
    let mut slow: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    // A prompt client is answered although the cap is full of slow ones.
    for _ in 0..5 {
        let t = Instant::now();
        let answer = get_once(addr, "/health").unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
            "{answer}"
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
    // The slow ones that were not evicted are closed by the header timeout.
    let last = slow.last_mut().unwrap();
    assert!(
        closed_within(last, Duration::from_secs(5)),
        "a slow client kept its connection"
    );
    drop(slow);
    stop.send(()).unwrap();
    handle.join().unwrap();
}

#[test]
fn idle_connections_close_and_a_stop_finishes_what_is_in_flight() {
    let limits = Limits {
        max_connections: 64,
        header_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_millis(800),
    };
    let (addr, stop, handle) = start(limits);
    // A keep-alive connection answered once, then left idle, is closed.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = idle.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)),
        "idle connection kept"
    );

    // A request in flight when the server is told to stop still gets its answer.
    let slow = std::thread::spawn(move || get_once(addr, "/slow"));
    std::thread::sleep(Duration::from_millis(200));
    stop.send(()).unwrap();
    let answer = slow.join().unwrap().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"),
        "{answer}"
    );
    handle.join().unwrap();
    assert!(
        TcpStream::connect(addr).is_err() || get_once(addr, "/health").is_err(),
        "stopped"
    );
}
