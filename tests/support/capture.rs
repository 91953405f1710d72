//! Captures the loopback interface from inside a test: a raw `AF_PACKET`
//! socket bound to `lo` (the test runs as root), read on a thread until
//! stopped. Used to show that an encrypted run puts none of its plaintext on
//! the wire; the self-test shows the capture does see clear text.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

const ETH_P_ALL: u16 = 0x0003;
/// Most bytes kept (older bytes are dropped first).
const MAX_KEPT: usize = 256 << 20;

/// A running capture of every frame on `lo`.
pub struct LoopbackCapture {
    stop: Arc<AtomicBool>,
    bytes: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl LoopbackCapture {
    /// Starts capturing, or says why it cannot (not root, no AF_PACKET).
    pub fn start() -> Result<LoopbackCapture, String> {
        let s = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
        )
        .map_err(|e| format!("AF_PACKET socket: {e}"))?;
        s.bind_device(Some(b"lo"))
            .map_err(|e| format!("bind to lo: {e}"))?;
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        let _ = s.set_recv_buffer_size(8 << 20);
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (st, by) = (stop.clone(), bytes.clone());
        let mut s: std::net::UdpSocket = s.into();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 17];
            while !st.load(Ordering::SeqCst) {
                if let Ok(n) = Read::read(&mut ReadSock(&mut s), &mut buf) {
                    let mut b = by.lock().unwrap();
                    if b.len() + n > MAX_KEPT {
                        let cut = (b.len() + n - MAX_KEPT).min(b.len());
                        b.drain(..cut);
                    }
                    b.extend_from_slice(&buf[..n]);
                }
            }
        });
        Ok(LoopbackCapture {
            stop,
            bytes,
            thread: Some(thread),
        })
    }

    /// Stops and returns everything captured (frames back to back).
    pub fn stop(mut self) -> Vec<u8> {
        // Let frames already on their way reach the socket.
        std::thread::sleep(Duration::from_millis(100));
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.bytes.lock().unwrap())
    }
}

impl Drop for LoopbackCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `recv` on the packet socket through the std UDP wrapper (same fd calls).
struct ReadSock<'a>(&'a mut std::net::UdpSocket);

impl Read for ReadSock<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.recv(buf)
    }
}

/// True if `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
