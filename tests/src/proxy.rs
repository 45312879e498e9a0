//! A TCP proxy in front of one member's peer URL. Members connect to peers from their own
//! loopback address (127.0.0.x), so the proxy knows who is calling and can drop, or delay,
//! traffic from chosen members: a one-way partition is one proxy refusing one source.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    blocked: HashSet<IpAddr>,
    delay: Duration,
    conns: Vec<(IpAddr, tokio::task::AbortHandle)>,
}

pub struct PeerProxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl PeerProxy {
    /// Listens on 127.0.0.1:`port` and forwards to `target`.
    pub fn start(port: u16, target: SocketAddr) -> PeerProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let state = Arc::new(Mutex::new(State::default()));
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("proxy bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let st = state.clone();
        runtime.spawn(async move {
            let Ok(listener) = TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((inbound, from)) = listener.accept().await {
                let mut s = lock(&st);
                if s.blocked.contains(&from.ip()) {
                    continue; // dropped: the caller sees its connection close
                }
                let task = tokio::spawn(pipe(inbound, target, st.clone()));
                s.conns.retain(|(_, h)| !h.is_finished());
                s.conns.push((from.ip(), task.abort_handle()));
            }
        });
        PeerProxy {
            port,
            state,
            runtime: Some(runtime),
        }
    }

    /// Drops traffic from these member addresses, cutting their open connections too.
    pub fn block(&self, sources: &[IpAddr]) {
        let mut s = lock(&self.state);
        s.blocked.extend(sources.iter().copied());
        for (ip, h) in &s.conns {
            if sources.contains(ip) {
                h.abort();
            }
        }
    }

    pub fn unblock_all(&self) {
        lock(&self.state).blocked.clear();
    }

    /// Holds every chunk passing through for `delay`.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).delay = delay;
    }
}

impl Drop for PeerProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn pipe(inbound: TcpStream, target: SocketAddr, state: Arc<Mutex<State>>) {
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (ri, wi) = inbound.into_split();
    let (ro, wo) = outbound.into_split();
    let a = copy(ri, wo, state.clone());
    let b = copy(ro, wi, state);
    tokio::select! {
        _ = a => {}
        _ = b => {}
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<Mutex<State>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = lock(&state).delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
