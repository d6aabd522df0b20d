//! Rolling out a new spec: `update_spec` replaces the spec and rolls with
//! it, through the rolling-restart machinery; an aborted roll reverts it.

use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::spec::ProcessSpec;
use crate::sys::Sys;

use super::Supervisor;

/// A spec update whose roll-out is in progress: what to put back if it is
/// aborted.
#[derive(Debug)]
pub(super) struct Update {
    target: Arc<str>,
    /// The group's previous spec and version.
    template: Option<(ProcessSpec, u64)>,
    /// Each process's previous spec and version, by slot and identity.
    procs: Vec<(usize, u64, ProcessSpec, u64)>,
}

impl<S: Sys> Supervisor<S> {
    /// Replaces the spec of `target` (a group added with
    /// [`instances`](ProcessSpec::instances), or one process) with `spec`,
    /// and rolls it out with a [`rolling_restart`](Supervisor::rolling_restart)
    /// of `target`: each running child gets a replacement from the new
    /// spec, and retires only once that one is `Running` (new before old,
    /// ready before the old one retires). Processes without a running child
    /// take the new spec at their next start.
    ///
    /// `spec`'s name is ignored (the target keeps its names); for a group,
    /// its instance count is ignored too ([`scale`](Supervisor::scale)
    /// changes it) and its [`instances_with`](ProcessSpec::instances_with)
    /// closure, if any, makes each instance's spec.
    ///
    /// Each update is a new spec version: [`Event::SpecUpdated`] says which,
    /// and [`ProcessStatus::spec_version`](crate::ProcessStatus::spec_version)
    /// which one each serving child runs. If a replacement fails to start
    /// (exits before its start grace, or cannot be spawned), the roll is
    /// aborted ([`Event::RollAborted`]), the old children keep serving, and
    /// the spec is reverted: [`Event::SpecReverted`] says to which version
    /// and why. An update made while an earlier one still rolls out makes
    /// the earlier one final (it is no longer reverted).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use procsup::{ProcessSpec, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// let v1 = ProcessSpec::new("web", "server-v1").start_grace(Duration::ZERO).instances(2);
    /// sup.add_process(v1).unwrap();
    /// let now = Instant::now();
    /// sup.start_all(now).unwrap();
    /// let v2 = ProcessSpec::new("web", "server-v2").start_grace(Duration::ZERO);
    /// sup.update_spec("web", v2, now).unwrap();
    /// assert_eq!(sup.spec("web:0").unwrap().get_program(), "server-v2");
    /// // Replaced at once (no start grace): the serving child runs version 1,
    /// // the old one was sent its stop signal.
    /// let st = sup.status("web:0").unwrap();
    /// assert_eq!((st.spec_version, st.retiring_pid.is_some()), (1, true));
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownProcess`]; [`Error::InvalidSpec`] (nothing changes);
    /// [`Error::ShuttingDown`].
    pub fn update_spec(&mut self, target: &str, spec: ProcessSpec, now: Instant) -> Result<()> {
        let now = self.observe(now);
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        let mut news: Vec<(usize, ProcessSpec)> = Vec::new();
        let template = match self.pools.get_key_value(target) {
            Some((key, pool)) => {
                let mut template = spec;
                template.name = key.to_string();
                template.instances = pool.template.instances;
                for id in self.members(target) {
                    let i = instance_number(&self.p(id).name, target);
                    news.push((id, template.instance(i)));
                }
                template.validate()?;
                self.check_limits(&template)?;
                Some(template)
            }
            None => {
                let id = self.id(target)?;
                let mut one = spec;
                one.name = self.p(id).name.to_string();
                one.instances = None;
                one.per_instance = None;
                news.push((id, one));
                None
            }
        };
        for (_, one) in &news {
            if template.is_some() {
                one.validate_instance()?;
            } else {
                one.validate()?;
                self.check_limits(one)?;
            }
        }
        match &template {
            Some(t) => self.open_logs(t)?,
            None => self.open_logs(&news[0].1)?,
        }
        let target: Arc<str> = Arc::from(target);
        let mut update = Update { target: target.clone(), template: None, procs: Vec::with_capacity(news.len()) };
        let mut version = 0;
        if let Some(template) = template {
            let pool = self.pools.get_mut(&*target).expect("found above");
            pool.version += 1;
            version = pool.version;
            let old = std::mem::replace(&mut pool.template, template);
            update.template = Some((old, version - 1));
        }
        for (id, one) in news {
            let p = self.p_mut(id);
            let v = if update.template.is_some() { version } else { p.spec_version + 1 };
            version = v;
            let old = std::mem::replace(&mut p.spec, one);
            update.procs.push((id, p.added_seq, old, p.spec_version));
            p.spec_version = v;
        }
        let rolls = !update.procs.is_empty();
        self.emit(Event::SpecUpdated { name: target.clone(), version });
        if !rolls {
            // A group scaled to nothing: the spec is for its next instances.
            return Ok(());
        }
        self.update = Some(update);
        self.rolling_restart(Some(&target), now)
    }

    /// The roll ended: a finished one makes the update final, an aborted
    /// one reverts it.
    pub(super) fn roll_ended(&mut self, aborted: Option<&str>) {
        let Some(update) = self.update.take() else { return };
        let Some(reason) = aborted else { return };
        let mut version = 0;
        if let Some((template, v)) = update.template {
            if let Some(pool) = self.pools.get_mut(&*update.target) {
                pool.template = template;
                pool.version = v;
            }
            version = v;
        }
        for (id, added, spec, v) in update.procs {
            if self.procs.get(id).and_then(Option::as_ref).is_some_and(|p| p.added_seq == added) {
                let p = self.p_mut(id);
                p.spec = spec;
                p.spec_version = v;
                version = v;
            }
        }
        self.emit(Event::SpecReverted { name: update.target, version, reason: reason.to_owned() });
        self.close_unused_logs();
    }
}

/// The number of instance `name` of `group` (`group:n`).
pub(super) fn instance_number(name: &str, group: &str) -> u32 {
    name.strip_prefix(group).and_then(|s| s.strip_prefix(':')).and_then(|n| n.parse().ok()).unwrap_or(0)
}
