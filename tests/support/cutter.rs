//! A loopback TCP proxy in front of a node's sshd that injects one network fault once a given
//! number of bytes went through in one direction: cut the connection, or stall it (stop
//! forwarding, keep it open).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

/// Which bytes are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server (an upload).
    Up,
    /// Server to client (a download).
    Down,
}

/// What happens once the limit is crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Cut,
    Stall,
}

/// The proxy: connect to `port()` instead of the node's own port.
pub struct Cutter {
    port: u16,
    hit: Arc<AtomicBool>,
}

impl Cutter {
    /// Cuts every connection (both ways) once its client has sent more than `limit` bytes.
    pub fn start(target: u16, limit: u64) -> Cutter {
        Cutter::with(target, Direction::Up, limit, Action::Cut)
    }

    /// Forwards to `127.0.0.1:target`; applies `action` once more than `limit` bytes went in
    /// `direction` on a connection.
    pub fn with(target: u16, direction: Direction, limit: u64, action: Action) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hit = Arc::new(AtomicBool::new(false));
        let flag = hit.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let fault = Fault {
                    limit,
                    action,
                    hit: flag.clone(),
                    counted: Arc::new(AtomicU64::new(0)),
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (up, down) = match direction {
                    Direction::Up => (Some(fault), None),
                    Direction::Down => (None, Some(fault)),
                };
                thread::spawn(move || pump(client, server, up));
                thread::spawn(move || pump(s2, c2, down));
            }
        });
        Cutter { port, hit }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the fault has been injected.
    pub fn was_cut(&self) -> bool {
        self.hit.load(Ordering::SeqCst)
    }
}

struct Fault {
    limit: u64,
    action: Action,
    hit: Arc<AtomicBool>,
    counted: Arc<AtomicU64>,
}

/// Copies `from` to `to`, applying the fault (if any) to this direction.
fn pump(mut from: TcpStream, mut to: TcpStream, fault: Option<Fault>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(f) = &fault
            && f.counted.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > f.limit
        {
            f.hit.store(true, Ordering::SeqCst);
            match f.action {
                Action::Cut => {
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                    return;
                }
                // Keep both sockets open and forward nothing more: the peer waits forever.
                Action::Stall => loop {
                    match from.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                },
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
