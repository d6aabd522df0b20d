//! Heap bytes of supervisor state per supervised process, counted by a
//! global allocator, at 10,000 processes, over an OS layer that stores
//! nothing (so the OS layer's own tables are not counted).
//!
//! Run: `cargo bench --bench memory`.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use procsup::testing::FakeSys;
use procsup::{Exit, Pid, ProcessSpec, Signal, Supervisor, Sys, SysEvent};

/// An OS layer that keeps nothing per child, so that what is counted is the
/// supervisor's own state.
#[derive(Debug, Default)]
struct BareSys {
    next: i32,
    exits: Vec<SysEvent>,
}

impl Sys for BareSys {
    fn spawn(&mut self, _: &ProcessSpec) -> std::io::Result<Pid> {
        self.next += 1;
        Ok(Pid::from_raw(self.next + 100))
    }
    fn signal(&mut self, _: Pid, _: Signal) -> std::io::Result<()> {
        Ok(())
    }
    fn poll(&mut self, events: &mut Vec<SysEvent>) {
        events.append(&mut self.exits);
        self.exits.shrink_to_fit();
    }
}

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The inline size of one process's record, as the allocator saw it: one
/// `add_process` of a spec whose heap is already counted.
fn procsup_proc_size() -> isize {
    let spec = ProcessSpec::new("x", "y");
    let mut sup = Supervisor::with_sys(FakeSys::new());
    sup.add_process(ProcessSpec::new("warm", "y")).unwrap(); // maps allocated
    let before = live();
    sup.add_process(spec).unwrap();
    live() - before
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    const N: usize = 10_000;
    let empty = live();
    let specs: Vec<ProcessSpec> = (0..N)
        .map(|i| ProcessSpec::new(format!("worker-{i:05}"), "/usr/local/bin/worker").args(["--queue", "default"]))
        .collect();
    let mut sup = Supervisor::with_sys(BareSys::default()).with_seed(1);
    for s in specs {
        sup.add_process(s).unwrap();
    }
    let added = live();
    let t0 = Instant::now();
    sup.start_all(t0).unwrap();
    sup.drain_events().for_each(drop);
    let started = live();
    // One crash cycle each, so restart bookkeeping is in the count too.
    let exits: Vec<SysEvent> = sup
        .statuses()
        .iter()
        .filter_map(|s| s.pid)
        .map(|pid| SysEvent::Exited { pid, exit: Exit::Exited(1) })
        .collect();
    sup.sys_mut().exits = exits;
    sup.tick(t0 + Duration::from_millis(10));
    sup.tick(t0 + Duration::from_secs(120));
    sup.drain_events().for_each(drop);
    let burst = live();
    // The next tick gives back what the burst of events held.
    sup.tick(t0 + Duration::from_secs(121));
    let cycled = live();
    let per = |bytes: isize| bytes as f64 / N as f64;
    println!("heap bytes per supervised process, {N} processes:");
    println!("  added (spec with its strings + bookkeeping): {:>7.0}", per(added - empty));
    println!("  started:                                     {:>7.0}", per(started - empty));
    println!("  right after a crash/restart burst of all:    {:>7.0}", per(burst - empty));
    println!("  steady state after it:                       {:>7.0}", per(cycled - empty));
    println!("  size of one process record (Proc):           {:>7}", procsup_proc_size());
}
