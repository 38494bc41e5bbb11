//! [`Transport`] over TCP: the BitBox02 firmware simulator (`test/simulator/simulator.c`,
//! 127.0.0.1:15423 by default) exchanges the same raw 64-byte reports as the USB device, without
//! a report id. The test kit's fake device listens the same way.

use super::{HidError, REPORT_SIZE, Report, Transport};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// A connection to a simulator.
pub struct Tcp {
    stream: TcpStream,
    addr: String,
}

/// Connects to `addr` (`HOST:PORT`), waiting up to `timeout`.
pub fn connect(addr: &str, timeout: Duration) -> Result<Tcp, HidError> {
    let open = |detail: String| HidError::Open {
        path: format!("simulator {addr}"),
        detail,
    };
    let target = addr
        .to_socket_addrs()
        .map_err(|e| open(format!("not a HOST:PORT address: {e}")))?
        .next()
        .ok_or_else(|| open("the address resolves to nothing".into()))?;
    let stream = TcpStream::connect_timeout(&target, timeout).map_err(|e| open(e.to_string()))?;
    stream.set_nodelay(true).map_err(|e| open(e.to_string()))?;
    Ok(Tcp {
        stream,
        addr: addr.to_string(),
    })
}

impl Transport for Tcp {
    fn write(&mut self, report: &Report) -> Result<(), HidError> {
        self.stream
            .write_all(report)
            .map_err(|e| HidError::Io(format!("simulator {}: {e}", self.addr)))
    }

    fn read(&mut self, timeout: Duration) -> Result<Option<Report>, HidError> {
        let io = |e: std::io::Error| HidError::Io(format!("simulator {}: {e}", self.addr));
        // One deadline for the whole report: a peer dripping bytes cannot stretch it.
        let deadline = Instant::now() + timeout;
        let mut report = [0u8; REPORT_SIZE];
        let mut got = 0;
        while got < REPORT_SIZE {
            let left = deadline.saturating_duration_since(Instant::now());
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(io)?;
            match self.stream.read(&mut report[got..]) {
                Ok(0) => {
                    return Err(io(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "connection closed",
                    )));
                }
                Ok(n) => got += n,
                Err(e) if got == 0 && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None);
                }
                // Part of a report came, then nothing for a whole timeout: it is cut short.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(io(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        format!("a report cut short after {got} bytes"),
                    )));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
        Ok(Some(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A peer that sends a report a byte at a time, each byte just inside the read timeout: the
    /// report must come within one timeout, not one per byte.
    #[test]
    fn a_report_dripped_byte_by_byte_runs_out_of_time() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            for _ in 0..REPORT_SIZE {
                // The peer's pace; it stops when the host hangs up.
                std::thread::sleep(Duration::from_millis(20));
                if s.write_all(&[0xff]).is_err() {
                    break;
                }
            }
        });
        let mut t = connect(&addr, Duration::from_secs(5)).unwrap();
        let e = t.read(Duration::from_millis(100)).unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
        drop(t);
        peer.join().unwrap();
    }
}
