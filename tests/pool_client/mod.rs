//! A bounded HTTP client loop against the pool test worker
//! (`tests/bin/listen_worker.py`), run on its own thread.
#![allow(dead_code)]
// A test client: it owns real time.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One answer: the worker's pid, its instance number and its marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub pid: i32,
    pub instance: String,
    pub marker: String,
}

pub fn worker_script() -> String {
    format!("{}/tests/bin/listen_worker.py", env!("CARGO_MANIFEST_DIR"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One GET.
pub fn get(port: u16) -> Result<Answer, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| format!("read: {e}"))?;
    let body = text.split("\r\n\r\n").nth(1).ok_or_else(|| format!("no body in {text:?}"))?;
    let parts: Vec<&str> = body.split_whitespace().collect();
    match parts.as_slice() {
        [pid, instance, marker] => Ok(Answer {
            pid: pid.parse().map_err(|_| format!("bad pid in {body:?}"))?,
            instance: (*instance).to_owned(),
            marker: (*marker).to_owned(),
        }),
        _ => Err(format!("bad body {body:?}")),
    }
}

/// Requests in a loop until stopped, at most `max` of them and for at most
/// `limit`.
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Result<Answer, String>>>>,
}

impl Load {
    pub fn start(port: u16, max: usize, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + limit;
            let mut out = Vec::new();
            while !flag.load(Ordering::Relaxed) && out.len() < max && Instant::now() < end {
                out.push(get(port));
                std::thread::sleep(Duration::from_millis(2));
            }
            out
        });
        Load { stop, thread: Some(thread) }
    }

    pub fn finish(mut self) -> Vec<Result<Answer, String>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
