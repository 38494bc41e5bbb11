//! The fake BitBox02 over TCP, as the firmware simulator serves the real one: raw 64-byte
//! reports both ways, one client at a time, the device (keys, pairings, card) outliving each
//! connection. Stopped when dropped.

use super::bitbox02_fake::{DeviceState, FakeBitBox02};
use crate::hid::{REPORT_SIZE, Transport};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A fake BitBox02 listening on 127.0.0.1.
pub struct FakeServer {
    /// `127.0.0.1:PORT`, for `--simulator`.
    pub addr: String,
    /// The device: set it up before a run, read it after.
    pub state: Arc<Mutex<DeviceState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Starts serving `device` on a free port.
    pub fn start(device: DeviceState) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr").to_string();
        let state = Arc::new(Mutex::new(device));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, FakeBitBox02::new(state.clone()), &stop);
                    }
                }
            })
        };
        FakeServer {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// A copy of the device's state now.
    pub fn device(&self) -> DeviceState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes the device between runs.
    pub fn set(&self, f: impl FnOnce(&mut DeviceState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// One client until it disconnects (or the server stops): each report in goes to the device,
/// each report it answers goes back.
fn serve(mut stream: TcpStream, mut device: FakeBitBox02, stop: &AtomicBool) {
    // The timeout only lets the loop notice a stop; reports are handled as they arrive.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut report = [0u8; REPORT_SIZE];
    let mut got = 0;
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut report[got..]) {
            Ok(0) => return,
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        if got < REPORT_SIZE {
            continue;
        }
        got = 0;
        if device.write(&report).is_err() {
            return;
        }
        while let Ok(Some(answer)) = device.read(Duration::ZERO) {
            if stream.write_all(&answer).is_err() {
                return;
            }
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
