//! Groups that grow and shrink: `scale`, as gunicorn's TTIN and TTOU.

use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::spec::{ProcessSpec, MAX_INSTANCES};
use crate::state::State;
use crate::sys::Sys;

use super::Supervisor;

/// A group added with [`ProcessSpec::instances`]: the spec its instances
/// are made from, and its version (see [`Supervisor::update_spec`]).
#[derive(Debug)]
pub(super) struct Pool {
    pub(super) template: ProcessSpec,
    pub(super) version: u64,
}

impl<S: Sys> Supervisor<S> {
    pub(super) fn add_pool(&mut self, group: Arc<str>, template: ProcessSpec) {
        self.pools.insert(group, Pool { template, version: 0 });
    }

    /// The ids of the group's instances that are not being removed.
    pub(super) fn members(&self, group: &str) -> Vec<usize> {
        self.procs
            .iter()
            .enumerate()
            .filter_map(|(id, p)| p.as_ref().map(|p| (id, p)))
            .filter(|(_, p)| p.group.as_deref() == Some(group) && !p.removing)
            .map(|(id, _)| id)
            .collect()
    }

    /// Grows or shrinks `group` (a spec added with
    /// [`instances`](ProcessSpec::instances)) to `n` instances, as
    /// gunicorn's SIGTTIN and SIGTTOU do.
    ///
    /// - Growing adds instances with the lowest free numbers, made from the
    ///   group's spec (the latest [`update_spec`](Supervisor::update_spec)
    ///   one, with [`instances_with`](ProcessSpec::instances_with) applied).
    ///   They are started at once when the group is live (a member is not
    ///   `Stopped` and was not stopped by the host), and take part in the
    ///   next [`rolling_restart`](Supervisor::rolling_restart).
    /// - Shrinking removes the newest instances first, as
    ///   [`remove_process`](Supervisor::remove_process) does: each is
    ///   stopped, then [`Event::Removed`](crate::Event::Removed).
    ///
    /// Scaling to 0 keeps the group known, so it can grow again.
    ///
    /// ```
    /// use std::time::Instant;
    /// use procsup::{ProcessSpec, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("web", "server").instances(2)).unwrap();
    /// let now = Instant::now();
    /// sup.start_all(now).unwrap();
    /// sup.scale("web", 4, now).unwrap();
    /// assert!(sup.status("web:3").unwrap().pid.is_some());
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownProcess`] when `group` is no group;
    /// [`Error::InvalidSpec`] for `n` above [`MAX_INSTANCES`] or an
    /// instance spec that does not validate (nothing is added then);
    /// [`Error::ShuttingDown`].
    pub fn scale(&mut self, group: &str, n: u32, now: Instant) -> Result<()> {
        let now = self.observe(now);
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        let Some((key, pool)) = self.pools.get_key_value(group) else {
            return Err(Error::UnknownProcess(group.to_owned()));
        };
        let key = key.clone();
        if n > MAX_INSTANCES {
            return Err(Error::InvalidSpec {
                name: group.to_owned(),
                reason: format!("instances must be at most {MAX_INSTANCES}, got {n}"),
            });
        }
        let members = self.members(group);
        let have = members.len();
        let want = n as usize;
        if want < have {
            let mut newest: Vec<(u64, usize)> = members.iter().map(|&id| (self.p(id).added_seq, id)).collect();
            newest.sort_unstable_by(|a, b| b.cmp(a));
            for &(_, id) in newest.iter().take(have - want) {
                let name = self.p(id).name.clone();
                self.remove_process(&name, now)?;
            }
            return Ok(());
        }
        let live = members.iter().any(|&id| {
            let p = self.p(id);
            p.state != State::Stopped && !p.manual_stop
        });
        let version = pool.version;
        let mut ones = Vec::with_capacity(want - have);
        let mut i = 0u32;
        while ones.len() < want - have {
            if !self.names.contains_key(format!("{group}:{i}").as_str()) {
                let one = pool.template.instance(i);
                one.validate_instance()?;
                ones.push(one);
            }
            i += 1;
        }
        for one in ones {
            let name = one.name.clone();
            self.insert(one, Some(key.clone()));
            let id = self.id(&name)?;
            self.p_mut(id).spec_version = version;
            if live {
                self.start_process(&name, now)?;
            }
        }
        Ok(())
    }
}
