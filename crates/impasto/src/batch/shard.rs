//! One worker's part of a job that array jobs split across machines: shard `index` of `count`
//! takes a fixed, contiguous slice of the sorted work list, so every item belongs to exactly one
//! shard, whichever machine runs it and however often it is retried.
//!
//! The index and count come from flags (`--shard-index`/`--shard-count`) or, by default, from the
//! variables the scheduler sets in each task:
//!
//! | scheduler | index | count |
//! |---|---|---|
//! | Slurm job arrays | `SLURM_ARRAY_TASK_ID` | `SLURM_ARRAY_TASK_COUNT` |
//! | Kubernetes Indexed Jobs | `JOB_COMPLETION_INDEX` | `IMPASTO_SHARD_COUNT` (Kubernetes sets no count: the manifest passes it) |
//! | AWS Batch array jobs | `AWS_BATCH_JOB_ARRAY_INDEX` | `AWS_BATCH_JOB_ARRAY_SIZE` |
//!
//! `IMPASTO_SHARD_INDEX` and `IMPASTO_SHARD_COUNT` stand in for the flags (for schedulers not
//! listed). A flag wins over the environment. Values that cannot all be true (an index past the
//! count, two schedulers' indices that disagree, a Slurm array not numbered `0..COUNT` whose
//! count is not given) are refused rather than guessed at, since a wrong guess silently leaves
//! part of the work undone.
//!
//! The shard is the task's id, not its position in this submission: a task resubmitted alone
//! (`sbatch --array=2`) is still shard 2, but its array then has one task, so the count must
//! come from `--shard-count` or `IMPASTO_SHARD_COUNT` (which then wins over the scheduler's,
//! with a warning when they differ).

use std::fmt;
use std::ops::Range;

use crate::{Error, Result};

/// Shard `index` of `count` (`index < count`); [`Shard::whole`] is the only shard of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
    origin: Origin,
}

/// Where a shard's index came from, for messages and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// No sharding asked for: the whole work list.
    Whole,
    /// `--shard-index` (or `IMPASTO_SHARD_INDEX`).
    Explicit,
    /// A Slurm job array task.
    Slurm,
    /// A Kubernetes Indexed Job's pod.
    Kubernetes,
    /// An AWS Batch array job's child.
    AwsBatch,
}

impl Origin {
    /// A short name: `whole`, `explicit`, `slurm`, `kubernetes`, `aws-batch`.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Whole => "whole",
            Origin::Explicit => "explicit",
            Origin::Slurm => "slurm",
            Origin::Kubernetes => "kubernetes",
            Origin::AwsBatch => "aws-batch",
        }
    }
}

/// Environment variables for the index and the count that stand in for the flags.
pub const INDEX_VAR: &str = "IMPASTO_SHARD_INDEX";
/// See [`INDEX_VAR`]; also the count a Kubernetes Indexed Job's manifest passes.
pub const COUNT_VAR: &str = "IMPASTO_SHARD_COUNT";

/// One scheduler's variables: (origin, index variable, count variable if it sets one).
const SCHEDULERS: [(Origin, &str, Option<&str>); 3] = [
    (
        Origin::Slurm,
        "SLURM_ARRAY_TASK_ID",
        Some("SLURM_ARRAY_TASK_COUNT"),
    ),
    (Origin::Kubernetes, "JOB_COMPLETION_INDEX", None),
    (
        Origin::AwsBatch,
        "AWS_BATCH_JOB_ARRAY_INDEX",
        Some("AWS_BATCH_JOB_ARRAY_SIZE"),
    ),
];

impl Shard {
    /// The whole work list (shard 0 of 1).
    pub fn whole() -> Shard {
        Shard {
            index: 0,
            count: 1,
            origin: Origin::Whole,
        }
    }

    /// Shard `index` of `count`, as given explicitly; refuses `count == 0` and `index ≥ count`.
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        Shard::checked(
            index,
            count,
            Origin::Explicit,
            "--shard-index",
            "--shard-count",
        )
    }

    fn checked(
        index: usize,
        count: usize,
        origin: Origin,
        index_name: &str,
        count_name: &str,
    ) -> Result<Shard> {
        if count == 0 {
            return Err(Error::parameter(format!(
                "{count_name} is 0: a job needs at least one shard"
            )));
        }
        if index >= count {
            return Err(Error::parameter(format!(
                "{index_name} {index} is not below {count_name} {count}: shards are numbered \
                 from 0 to {}",
                count - 1
            )));
        }
        Ok(Shard {
            index,
            count,
            origin,
        })
    }

    /// The shard this process is, from the scheduler's environment alone (see the module
    /// documentation); [`Shard::whole`] when no scheduler variable is set.
    pub fn from_env() -> Result<Shard> {
        Shard::resolve(None, None)
    }

    /// The shard from flags where given, else from the environment (see the module
    /// documentation).
    pub fn resolve(index: Option<usize>, count: Option<usize>) -> Result<Shard> {
        Shard::resolve_with(index, count, |name| std::env::var(name).ok())
    }

    /// [`Shard::resolve`] with the environment read through `env` (a test's map, say).
    pub fn resolve_with(
        index: Option<usize>,
        count: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Shard> {
        let number = |name: &str| -> Result<Option<usize>> {
            match env(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                    Error::parameter(format!(
                        "{name}={v:?} is not a shard number (a whole number ≥ 0)"
                    ))
                }),
            }
        };
        // The explicit count: the flag, else the variable standing in for it.
        let (count, count_name) = match count {
            Some(c) => (Some(c), "--shard-count".to_string()),
            None => (number(COUNT_VAR)?, COUNT_VAR.to_string()),
        };
        let explicit_index = match index {
            Some(i) => Some((i, "--shard-index".to_string())),
            None => number(INDEX_VAR)?.map(|i| (i, INDEX_VAR.to_string())),
        };
        if let Some((index, index_name)) = explicit_index {
            let Some(count) = count else {
                return Err(Error::parameter(format!(
                    "{index_name} {index} without a shard count: pass --shard-count (or set \
                     {COUNT_VAR})"
                )));
            };
            return Shard::checked(index, count, Origin::Explicit, &index_name, &count_name);
        }

        let mut found: Option<(Shard, &str, String)> = None;
        for (origin, index_var, count_var) in SCHEDULERS {
            let Some(raw) = number(index_var)? else {
                continue;
            };
            let (index, index_name) = (raw, index_var.to_string());
            let scheduler_count = match count_var {
                Some(var) => number(var)?.map(|c| (c, var.to_string())),
                None => None,
            };
            let (count, count_name) = match (count, scheduler_count) {
                (Some(c), Some((sc, var))) => {
                    if c != sc {
                        // Legitimate for a subset of tasks resubmitted; a mistake otherwise.
                        tracing::warn!(
                            "{count_name} {c} but {var}={sc}: using {c} shards (right when only \
                             some tasks were resubmitted; otherwise some work is left undone)"
                        );
                    }
                    (c, count_name.clone())
                }
                (Some(c), None) => (c, count_name.clone()),
                (None, Some((sc, var))) if origin == Origin::Slurm => {
                    check_slurm_numbering(sc, &number)?;
                    (sc, var)
                }
                (None, Some((sc, var))) => (sc, var),
                (None, None) => {
                    return Err(Error::parameter(format!(
                        "{index_var} is set but not the shard count: set {COUNT_VAR} to the \
                         number of tasks (a Kubernetes Indexed Job's completions) or pass \
                         --shard-count"
                    )))
                }
            };
            let shard = Shard::checked(index, count, origin, &index_name, &count_name)?;
            if let Some((other, other_var, _)) = &found {
                if (other.index, other.count) != (shard.index, shard.count) {
                    return Err(Error::parameter(format!(
                        "{other_var} and {index_var} are both set and disagree ({} against \
                         {}): pass --shard-index and --shard-count to say which",
                        other.describe(),
                        shard.describe()
                    )));
                }
                continue;
            }
            found = Some((shard, index_var, index_name));
        }
        match (found, count) {
            (Some((shard, _, _)), _) => Ok(shard),
            (None, Some(c)) => Err(Error::parameter(format!(
                "{count_name} {c} without a shard index: pass --shard-index, or run as a Slurm, \
                 Kubernetes Indexed or AWS Batch array task"
            ))),
            (None, None) => Ok(Shard::whole()),
        }
    }

    /// This shard's number, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many shards the work is split into.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Where the index came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Whether this is the only shard.
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// The positions this shard takes of a work list of `len` items: a contiguous run,
    /// `⌊index·len/count⌋ .. ⌊(index+1)·len/count⌋`. The runs of shards `0..count` tile
    /// `0..len` without gaps or overlaps, and differ in length by at most one.
    pub fn range(&self, len: usize) -> Range<usize> {
        // u128: index·len cannot overflow for any usize.
        let at = |i: usize| ((i as u128 * len as u128) / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }

    /// This shard's part of `items`, which must be in the same order on every shard (sorted).
    pub fn take<'a, T>(&self, items: &'a [T]) -> &'a [T] {
        &items[self.range(items.len())]
    }

    /// `shard 2 of 4 (slurm)`.
    fn describe(&self) -> String {
        format!(
            "shard {} of {} ({})",
            self.index,
            self.count,
            self.origin.name()
        )
    }
}

/// Whether a Slurm array's task ids are `0..count`, so that its task count is the shard count:
/// `--array=1-4` (no task 0), `--array=0-6:2` (gaps) or a list like `--array=0,2,5`, and a task
/// resubmitted alone (`--array=2`, count 1), would leave shards unrun or clash.
fn check_slurm_numbering(
    count: usize,
    number: &impl Fn(&str) -> Result<Option<usize>>,
) -> Result<()> {
    let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
    let max = number("SLURM_ARRAY_TASK_MAX")?;
    let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1);
    if min != 0 || step > 1 || max.is_some_and(|m| m + 1 != count) {
        return Err(Error::parameter(format!(
            "the Slurm array's task ids are not 0 to {} (SLURM_ARRAY_TASK_MIN={min}, \
             SLURM_ARRAY_TASK_MAX={}, SLURM_ARRAY_TASK_STEP={step}), so its task count {count} \
             is not the number of shards: submit with --array=0-{} or give the number of \
             shards (--shard-count, or {COUNT_VAR} in the batch script)",
            count.saturating_sub(1),
            max.map_or("unset".to_string(), |m| m.to_string()),
            count.saturating_sub(1),
        )));
    }
    Ok(())
}

impl Default for Shard {
    fn default() -> Self {
        Shard::whole()
    }
}

impl fmt::Display for Shard {
    /// `shard 2 of 4 (slurm)`, or `the whole work list`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.origin == Origin::Whole {
            return f.write_str("the whole work list");
        }
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn resolve(flags: (Option<usize>, Option<usize>), vars: &[(&str, &str)]) -> Result<Shard> {
        Shard::resolve_with(flags.0, flags.1, env(vars))
    }

    fn err(flags: (Option<usize>, Option<usize>), vars: &[(&str, &str)]) -> String {
        format!("{:#}", resolve(flags, vars).unwrap_err())
    }

    #[test]
    fn every_item_lands_in_exactly_one_shard() {
        for len in 0..40 {
            for count in 1..12 {
                let items: Vec<usize> = (0..len).collect();
                let mut seen = Vec::new();
                let mut sizes = Vec::new();
                for index in 0..count {
                    let part = Shard::new(index, count).unwrap().take(&items);
                    sizes.push(part.len());
                    seen.extend_from_slice(part);
                }
                // In order, each once: the shards tile the list.
                assert_eq!(seen, items, "len {len}, count {count}");
                let (lo, hi) = (sizes.iter().min(), sizes.iter().max());
                assert!(hi.unwrap() - lo.unwrap() <= 1, "{sizes:?}");
            }
        }
        // Deterministic, and large lengths do not overflow.
        let s = Shard::new(3, 4).unwrap();
        assert_eq!(s.range(8), 6..8);
        assert_eq!(s.range(8), s.range(8));
        assert_eq!(s.range(usize::MAX).end, usize::MAX);
        assert_eq!(Shard::whole().range(5), 0..5);
    }

    #[test]
    fn nothing_set_is_the_whole_list() {
        let s = resolve((None, None), &[]).unwrap();
        assert_eq!(s, Shard::whole());
        assert!(s.is_whole());
        assert_eq!(s.to_string(), "the whole work list");
        // Empty variables are as good as unset (`env -u` is not always at hand).
        assert_eq!(
            resolve((None, None), &[("SLURM_ARRAY_TASK_ID", "")]).unwrap(),
            Shard::whole()
        );
    }

    #[test]
    fn each_scheduler_is_recognised() {
        let slurm = resolve(
            (None, None),
            &[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
        )
        .unwrap();
        assert_eq!(
            (slurm.index(), slurm.count(), slurm.origin()),
            (2, 4, Origin::Slurm)
        );
        assert_eq!(slurm.to_string(), "shard 2 of 4 (slurm)");
        let k8s = resolve(
            (None, None),
            &[("JOB_COMPLETION_INDEX", "0"), ("IMPASTO_SHARD_COUNT", "3")],
        )
        .unwrap();
        assert_eq!(
            (k8s.index(), k8s.count(), k8s.origin()),
            (0, 3, Origin::Kubernetes)
        );
        let aws = resolve(
            (None, None),
            &[
                ("AWS_BATCH_JOB_ARRAY_INDEX", "9"),
                ("AWS_BATCH_JOB_ARRAY_SIZE", "10"),
            ],
        )
        .unwrap();
        assert_eq!(
            (aws.index(), aws.count(), aws.origin()),
            (9, 10, Origin::AwsBatch)
        );
        let generic = resolve(
            (None, None),
            &[("IMPASTO_SHARD_INDEX", "1"), ("IMPASTO_SHARD_COUNT", "2")],
        )
        .unwrap();
        assert_eq!((generic.index(), generic.count()), (1, 2));
        assert_eq!(generic.origin(), Origin::Explicit);
    }

    #[test]
    fn slurm_arrays_not_numbered_from_zero_need_the_count() {
        let base = [
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_ID", "4"),
        ];
        // --array=1-4: task 0 would never run.
        let mut vars = base.to_vec();
        vars.extend([("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "4")]);
        let e = err((None, None), &vars);
        assert!(e.contains("task ids are not 0 to 3"), "{e}");
        assert!(e.contains("--array=0-3"), "{e}");
        // --array=0-6:2.
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "6"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert!(err((None, None), &vars).contains("not the number of shards"));
        // Task 2 resubmitted alone: shard 2 of the count the script gives.
        let resubmitted = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "1"),
            ("SLURM_ARRAY_TASK_MIN", "2"),
            ("SLURM_ARRAY_TASK_MAX", "2"),
        ];
        assert!(err((None, None), &resubmitted).contains("task ids are not 0 to 0"));
        let mut vars = resubmitted.to_vec();
        vars.push(("IMPASTO_SHARD_COUNT", "4"));
        let s = resolve((None, None), &vars).unwrap();
        assert_eq!((s.index(), s.count(), s.origin()), (2, 4, Origin::Slurm));
        // A whole --array=0-3 passes the check.
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "3"),
            ("SLURM_ARRAY_TASK_STEP", "1"),
        ];
        assert_eq!(resolve((None, None), &vars).unwrap().index(), 3);
    }

    #[test]
    fn flags_win_over_the_environment() {
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        let s = resolve((Some(0), Some(2)), &vars).unwrap();
        assert_eq!((s.index(), s.count(), s.origin()), (0, 2, Origin::Explicit));
        // A count alone completes a scheduler's index (Kubernetes sets none).
        let s = resolve((None, Some(5)), &[("JOB_COMPLETION_INDEX", "4")]).unwrap();
        assert_eq!((s.index(), s.count()), (4, 5));
        // The flag's count wins over IMPASTO_SHARD_COUNT.
        let s = resolve(
            (None, Some(5)),
            &[("JOB_COMPLETION_INDEX", "4"), ("IMPASTO_SHARD_COUNT", "2")],
        )
        .unwrap();
        assert_eq!(s.count(), 5);
    }

    #[test]
    fn inconsistent_values_are_refused_with_what_to_do() {
        let e = err((Some(4), Some(4)), &[]);
        assert!(
            e.contains("--shard-index 4 is not below --shard-count 4"),
            "{e}"
        );
        let e = err((Some(0), Some(0)), &[]);
        assert!(e.contains("--shard-count is 0"), "{e}");
        let e = err((Some(1), None), &[]);
        assert!(e.contains("without a shard count"), "{e}");
        let e = err((None, Some(3)), &[]);
        assert!(e.contains("without a shard index"), "{e}");
        let e = err((None, None), &[("JOB_COMPLETION_INDEX", "1")]);
        assert!(
            e.contains("JOB_COMPLETION_INDEX is set but not the shard count"),
            "{e}"
        );
        assert!(e.contains("IMPASTO_SHARD_COUNT"), "{e}");
        let e = err(
            (None, None),
            &[("JOB_COMPLETION_INDEX", "3"), ("IMPASTO_SHARD_COUNT", "3")],
        );
        assert!(
            e.contains("JOB_COMPLETION_INDEX 3 is not below IMPASTO_SHARD_COUNT 3"),
            "{e}"
        );
        let e = err(
            (None, Some(2)),
            &[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
        );
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID 3 is not below --shard-count 2"),
            "{e}"
        );
        let e = err((None, None), &[("SLURM_ARRAY_TASK_ID", "two")]);
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID=\"two\" is not a shard number"),
            "{e}"
        );
        let e = err(
            (None, None),
            &[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
                ("AWS_BATCH_JOB_ARRAY_INDEX", "2"),
                ("AWS_BATCH_JOB_ARRAY_SIZE", "4"),
            ],
        );
        assert!(e.contains("both set and disagree"), "{e}");
        // Two that agree are one shard.
        let s = resolve(
            (None, None),
            &[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
                ("AWS_BATCH_JOB_ARRAY_INDEX", "1"),
                ("AWS_BATCH_JOB_ARRAY_SIZE", "4"),
            ],
        )
        .unwrap();
        assert_eq!((s.index(), s.count()), (1, 4));
        let e = err((None, None), &[("IMPASTO_SHARD_INDEX", "0")]);
        assert!(
            e.contains("IMPASTO_SHARD_INDEX 0 without a shard count"),
            "{e}"
        );
    }
}
