//! # Migrating from supervisord, systemd, gunicorn and Twisted
//!
//! Each section takes a real configuration, writes it as a
//! [`ProcessSpec`](crate::ProcessSpec), and checks on virtual time that
//! procsup restarts, gives up and stops exactly as the original did. The
//! crate docs have a table of every knob; here are whole examples.
//!
//! ## supervisord
//!
//! ```ini
//! [program:worker]
//! command=/usr/bin/worker --queue default
//! startsecs=1
//! startretries=3
//! autorestart=unexpected
//! exitcodes=0,2
//! stopsignal=INT
//! stopwaitsecs=5
//! ```
//!
//! supervisord counts an exit within `startsecs` as a failed start, waits 1,
//! 2, 3 s between them, and makes the program FATAL when `startretries`
//! retries failed too — 4 failed starts in all. A program that was RUNNING
//! restarts at once. `autorestart=unexpected` restarts on exit codes not
//! in `exitcodes`.
//!
//! ```
//! use std::time::Duration;
//! use procsup::{Backoff, Exit, ProcessSpec, RestartPolicy, Signal, State, Supervisor};
//! use procsup::testing::{FakeSys, VirtualClock};
//!
//! let secs = Duration::from_secs;
//! let worker = ProcessSpec::new("worker", "/usr/bin/worker")
//!     .args(["--queue", "default"])
//!     .start_grace(secs(1))
//!     .backoff(Backoff::linear(secs(1)).immediate_after_running(true))
//!     .give_up_after(4)
//!     .restart(RestartPolicy::OnFailure)
//!     .success_codes([0, 2])
//!     .stop_signal(Signal::SIGINT)
//!     .stop_timeout(secs(5));
//!
//! let mut clock = VirtualClock::new();
//! let mut sup = Supervisor::with_sys(FakeSys::new());
//! sup.add_process(worker)?;
//! sup.start_all(clock.now())?;
//! let mut retries_at = Vec::new();
//! while sup.sys_mut().exit_by_name("worker", Exit::Exited(1)) {
//!     sup.tick(clock.now());
//!     if let Some(at) = sup.advance_to_next_deadline(&mut clock) {
//!         retries_at.push(clock.secs(at));
//!     }
//! }
//! assert_eq!(retries_at, [1.0, 3.0, 6.0]); // waits of 1, 2 and 3 s
//! assert_eq!(sup.status("worker")?.state, State::Fatal);
//!
//! // Exit code 2 is expected: no restart.
//! sup.start_process("worker", clock.now())?;
//! assert!(sup.sys_mut().exit_by_name("worker", Exit::Exited(2)));
//! sup.tick(clock.now());
//! assert_eq!(sup.status("worker")?.state, State::Exited);
//! # Ok::<(), procsup::Error>(())
//! ```
//!
//! ## systemd
//!
//! ```ini
//! [Service]
//! ExecStart=/usr/bin/api --port 8080
//! Restart=on-failure
//! RestartSec=100ms
//! StartLimitBurst=5
//! StartLimitIntervalSec=10
//! KillSignal=SIGTERM
//! TimeoutStopSec=30
//! ```
//!
//! systemd restarts a failed service after `RestartSec`, and refuses the
//! start that would be the sixth within 10 s. `KillMode=control-group` is
//! procsup's process group (on by default): the stop reaches grandchildren.
//!
//! ```
//! use std::time::Duration;
//! use procsup::{Backoff, Event, Exit, FatalReason, ProcessSpec, RestartPolicy, State, Supervisor};
//! use procsup::testing::{FakeSys, VirtualClock};
//!
//! let api = ProcessSpec::new("api", "/usr/bin/api")
//!     .args(["--port", "8080"])
//!     .restart(RestartPolicy::OnFailure)
//!     .backoff(Backoff::fixed(Duration::from_millis(100)))
//!     .max_restarts_within(5, Duration::from_secs(10))
//!     .stop_timeout(Duration::from_secs(30));
//!
//! let mut clock = VirtualClock::new();
//! let mut sup = Supervisor::with_sys(FakeSys::new());
//! sup.add_process(api)?;
//! sup.start_all(clock.now())?;
//! let mut restarts = 0;
//! while sup.sys_mut().exit_by_name("api", Exit::Exited(1)) {
//!     sup.tick(clock.now());
//!     if sup.advance_to_next_deadline(&mut clock).is_some() {
//!         restarts += 1;
//!     }
//! }
//! assert_eq!(restarts, 5);
//! assert_eq!(clock.secs(clock.now()), 0.5);
//! let st = sup.status("api")?;
//! assert_eq!(st.state, State::Fatal);
//! assert!(sup.take_events().iter().any(|e| matches!(e, Event::Fatal { reason: FatalReason::TooManyRestarts { .. }, .. })));
//! # Ok::<(), procsup::Error>(())
//! ```
//!
//! ## gunicorn
//!
//! gunicorn's companion manager restarts a companion process after a
//! fixed `restart_delay`, and its arbiter reloads workers on SIGHUP: new
//! ones first, the old ones stopped once the new ones are up. In procsup
//! the workers are [`instances`](crate::ProcessSpec::instances) of one spec,
//! the reload is [`rolling_restart`](crate::Supervisor::rolling_restart)
//! (call it from the host's own SIGHUP handling), and the companion is a
//! fixed backoff.
//!
//! ```
//! use std::time::Duration;
//! use procsup::{Backoff, Event, Exit, ProcessSpec, State, Supervisor};
//! use procsup::testing::{FakeSys, VirtualClock};
//!
//! let mut clock = VirtualClock::new();
//! let mut sup = Supervisor::with_sys(FakeSys::new());
//! // restart_delay = 5
//! sup.add_process(ProcessSpec::new("companion", "celery").backoff(Backoff::fixed(Duration::from_secs(5))))?;
//! // workers = 2; a worker is up once it lived 2 s
//! sup.add_process(ProcessSpec::new("worker", "app-worker").instances(2).start_grace(Duration::from_secs(2)))?;
//! sup.start_all(clock.now())?;
//! sup.run_until_idle(&mut clock, 10).unwrap(); // everything Running at 2 s
//!
//! assert!(sup.sys_mut().exit_by_name("companion", Exit::Exited(1)));
//! sup.tick(clock.now());
//! assert_eq!(sup.status("companion")?.next_retry_at, Some(clock.at(7.0)));
//!
//! // SIGHUP: one worker at a time, each replacement up before the old one stops.
//! let old = sup.sys().pid_of("worker:0");
//! sup.rolling_restart(Some("worker"), clock.now())?;
//! sup.run_until_idle(&mut clock, 50).unwrap();
//! assert_ne!(sup.sys().pid_of("worker:0"), old);
//! assert!(sup.take_events().iter().any(|e| matches!(e, Event::RollDone { .. })));
//! assert_eq!(sup.status("worker:1")?.state, State::Running);
//! # Ok::<(), procsup::Error>(())
//! ```
//!
//! ## Twisted's procmon
//!
//! ```python
//! pm = ProcessMonitor()
//! pm.minRestartDelay = 1
//! pm.maxRestartDelay = 8
//! pm.threshold = 10
//! pm.killTime = 5
//! pm.addProcess("web", ["twistd", "-n", "web"])
//! ```
//!
//! procmon restarts a process that lived at least `threshold` seconds at
//! once, with its delay reset to the minimum; one that died sooner waits
//! the current delay, which then doubles up to the maximum. `stopProcess`
//! sends SIGTERM, then SIGKILL after `killTime`.
//!
//! ```
//! use std::time::Duration;
//! use procsup::{Backoff, Exit, ProcessSpec, Supervisor};
//! use procsup::testing::{FakeSys, VirtualClock};
//!
//! let secs = Duration::from_secs;
//! let web = ProcessSpec::new("web", "twistd")
//!     .args(["-n", "web"])
//!     .backoff(Backoff::exponential(secs(1)).max(secs(8)).jitter(0.0).immediate_after_running(true))
//!     .start_grace(secs(10))
//!     .stop_timeout(secs(5));
//!
//! let mut clock = VirtualClock::new();
//! let mut sup = Supervisor::with_sys(FakeSys::new());
//! sup.add_process(web)?;
//! sup.start_all(clock.now())?;
//! let mut waits = Vec::new();
//! for _ in 0..5 {
//!     let died = clock.now();
//!     assert!(sup.sys_mut().exit_by_name("web", Exit::Exited(1)));
//!     sup.tick(clock.now());
//!     sup.advance_to_next_deadline(&mut clock);
//!     waits.push(clock.secs(clock.now()) - clock.secs(died));
//! }
//! assert_eq!(waits, [1.0, 2.0, 4.0, 8.0, 8.0]);
//!
//! // Alive past the threshold: the next death restarts at once.
//! sup.advance_to_next_deadline(&mut clock); // Running after 10 s
//! assert!(sup.sys_mut().exit_by_name("web", Exit::Exited(1)));
//! sup.tick(clock.now());
//! assert_eq!(sup.status("web")?.restart_count, 6);
//! # Ok::<(), procsup::Error>(())
//! ```
