//! A loopback TCP proxy that forwards to a node's sshd and cuts the connection once the client has
//! sent more than a given number of bytes: a network failure in the middle of an upload.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

/// The proxy: connect to `port()` instead of the node's own port.
pub struct Cutter {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Cutter {
    /// Listens on 127.0.0.1 and forwards every connection to `127.0.0.1:target`; a connection is cut
    /// in both directions as soon as its client has sent more than `limit` bytes.
    pub fn start(target: u16, limit: u64) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                relay(client, server, limit, flag.clone());
            }
        });
        Cutter { port, cut }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether a connection has been cut.
    pub fn was_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

fn relay(client: TcpStream, server: TcpStream, limit: u64, cut: Arc<AtomicBool>) {
    let sent = Arc::new(AtomicU64::new(0));
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    // Client -> server, counted; crossing the limit cuts both sockets.
    thread::spawn(move || {
        let (mut from, mut to) = (client, server);
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > limit {
                cut.store(true, Ordering::SeqCst);
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                break;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    // Server -> client, uncounted.
    thread::spawn(move || {
        let (mut from, mut to) = (s2, c2);
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}
