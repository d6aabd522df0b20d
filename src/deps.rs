//! Start dependencies: the conditions, and the pure graph rules over them
//! (validation, cycle detection, topological order, shutdown tiers).
//!
//! The supervisor keeps the graph in the specs (each names what it depends
//! on); these functions take it as plain indices so they can be tested
//! without a supervisor.

use std::fmt;

/// What a dependency must have reached before a process that depends on
/// it starts; see [`ProcessSpec::depends_on`](crate::ProcessSpec::depends_on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Condition {
    /// The dependency has a child: it was spawned (`Starting` or
    /// `Running`), or it already exited successfully (`Exited`).
    Started,
    /// The dependency is `Running`: alive through its readiness (its start
    /// grace). Under [`Strategy::OneForOne`](crate::Strategy::OneForOne)
    /// a dependent with this condition is stopped when the dependency
    /// leaves `Running` unasked (a crash, not during a shutdown), and waits
    /// for it again; the other strategies restart the group instead.
    Ready,
    /// The dependency exited with a success code and is not restarted
    /// (`Exited`): migrations, a one-shot setup. If it ends any other way
    /// for good (`Exited` with a failure, `Fatal`), the dependent fails.
    Completed,
}

impl Condition {
    /// `"started"`, `"ready"` or `"completed"`.
    ///
    /// ```
    /// assert_eq!(procsup::Condition::Ready.as_str(), "ready");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Ready => "ready",
            Condition::Completed => "completed",
        }
    }

    /// The inverse of [`as_str`](Condition::as_str).
    ///
    /// ```
    /// use procsup::Condition;
    /// assert_eq!(Condition::parse("completed"), Some(Condition::Completed));
    /// assert_eq!(Condition::parse("healthy"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Condition> {
        [Condition::Started, Condition::Ready, Condition::Completed].into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kahn's order of nodes `0..n`, where `deps[i]` are the nodes `i` depends
/// on: every node comes after its dependencies; ties keep index order.
/// `Err` carries one cycle, as node indices, each depending on the next
/// and the last on the first.
pub(crate) fn topo_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    let mut missing: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| missing[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &dependents[i] {
            missing[j] -= 1;
            if missing[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Every node left has a dependency left: walk them until one repeats.
    let left = |i: usize| missing[i] > 0;
    let mut path = vec![(0..n).find(|&i| left(i)).expect("some node is left")];
    loop {
        let last = *path.last().expect("the path is never empty");
        let next = deps[last].iter().copied().find(|&d| left(d)).expect("a node left has a dependency left");
        if let Some(at) = path.iter().position(|&p| p == next) {
            return Err(path.split_off(at));
        }
        path.push(next);
    }
}

/// The shutdown tier of each node of an acyclic graph: 0 for a node no
/// other depends on, else one more than the highest tier of its
/// dependents. Tier 0 stops first; nothing stops before what depends on it.
pub(crate) fn stop_tiers(deps: &[Vec<usize>]) -> Vec<usize> {
    let order = topo_order(deps).unwrap_or_else(|_| (0..deps.len()).collect());
    let mut tier = vec![0usize; deps.len()];
    // Dependents come later in the order: walking it backwards, a node's
    // tier is final before it raises its dependencies'.
    for &i in order.iter().rev() {
        for &d in &deps[i] {
            tier[d] = tier[d].max(tier[i] + 1);
        }
    }
    tier
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_puts_dependencies_first_and_keeps_ties() {
        // 0 depends on 2, 1 on nothing, 2 on 1, 3 on nothing.
        let deps = vec![vec![2], vec![], vec![1], vec![]];
        assert_eq!(topo_order(&deps), Ok(vec![1, 2, 0, 3]));
    }

    #[test]
    fn cycle_is_reported_as_a_path() {
        // 0 -> 1 -> 2 -> 1, 3 free.
        let deps = vec![vec![1], vec![2], vec![1], vec![]];
        let cycle = topo_order(&deps).unwrap_err();
        assert_eq!(cycle, vec![1, 2]);
        assert_eq!(topo_order(&[vec![0]]), Err(vec![0]), "a self-dependency");
    }

    #[test]
    fn tiers_stop_dependents_first() {
        // db <- app <- worker, db <- cron; logger unrelated.
        let (db, app, worker, cron, logger) = (0, 1, 2, 3, 4);
        let mut deps = vec![vec![]; 5];
        deps[app] = vec![db];
        deps[worker] = vec![app];
        deps[cron] = vec![db];
        let t = stop_tiers(&deps);
        assert_eq!((t[worker], t[cron], t[logger]), (0, 0, 0));
        assert_eq!((t[app], t[db]), (1, 2));
    }

    #[test]
    fn parse_round_trips() {
        for c in [Condition::Started, Condition::Ready, Condition::Completed] {
            assert_eq!(Condition::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
        }
    }
}
