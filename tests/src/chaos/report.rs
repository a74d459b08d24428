//! [`ChaosReport`]: the counts of a chaos run and the first violations found.

use std::collections::BTreeMap;
use std::fmt;

/// How many violation messages a report keeps (the counts go on).
pub const KEEP_VIOLATIONS: usize = 40;

/// How many violation messages of one class a report keeps.
pub const EXAMPLES_PER_CLASS: usize = 3;

/// Counts of a chaos run (one proptest case, or a whole soak), and what went wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChaosReport {
    /// Histories (cases) run.
    pub cases: u64,
    /// Rounds run.
    pub rounds: u64,
    /// Containers asked for (schedule requests and direct reservations).
    pub requests: u64,
    /// `Ok(Placement)` answers that placed (not `already_held`) plus reservations accepted.
    pub placements: u64,
    /// `Ok(Placement)` answers with `already_held`.
    pub already_held: u64,
    /// Schedule errors (any kind).
    pub errors: u64,
    /// Answers compared with the store (ids no other action of the round touched).
    pub answers_checked: u64,
    /// Answers the store contradicts.
    pub disagreements: u64,
    /// The same id twice in one call with two different answers.
    pub inconsistent_answers: u64,
    /// Containers held by two workers (or twice in one ledger).
    pub duplicates: u64,
    /// Workers whose audit drift is not zero, or whose `free + Σ ledger ≠ total`.
    pub drift: u64,
    /// Containers still failing once the faults stopped.
    pub blocked: u64,
    /// Faults injected, by kind (`faulty:<kind>` and `real:<kind>`).
    pub faults: BTreeMap<String, u64>,
    /// Real faults the server refused (e.g. `DEBUG` disabled), by kind.
    pub refused: BTreeMap<String, u64>,
    /// Violations by class (`schedule-ok-not-held`, `duplicate`, `blocked`, ...).
    pub classes: BTreeMap<String, u64>,
    /// Some violations (the first few of each class), as `[class] message`.
    pub violations: Vec<String>,
    /// Violations in all.
    pub violation_count: u64,
}

impl ChaosReport {
    /// Records a violation of class `class`.
    pub fn violation_of(&mut self, class: &str, msg: String) {
        *self.classes.entry(class.to_owned()).or_default() += 1;
        self.violation_count += 1;
        self.keep(format!("[{class}] {msg}"));
    }

    /// Records a violation of class `other`.
    pub fn violation(&mut self, msg: String) {
        self.violation_of("other", msg);
    }

    /// Keeps `msg` (`[class] text`) unless [`KEEP_VIOLATIONS`] are kept already, or
    /// [`EXAMPLES_PER_CLASS`] of its class.
    fn keep(&mut self, msg: String) {
        let class = msg.split(']').next().unwrap_or_default();
        let same = self
            .violations
            .iter()
            .filter(|v| v.split(']').next() == Some(class))
            .count();
        if self.violations.len() < KEEP_VIOLATIONS && same < EXAMPLES_PER_CLASS {
            self.violations.push(msg);
        }
    }

    /// Counts one injected fault of `kind`.
    pub fn fault(&mut self, kind: &str) {
        *self.faults.entry(kind.to_owned()).or_default() += 1;
    }

    /// Faults injected in all.
    pub fn faults_total(&self) -> u64 {
        self.faults.values().sum()
    }

    /// True when nothing was found wrong.
    pub fn clean(&self) -> bool {
        self.violation_count == 0
    }

    /// Adds `other`'s counts and violations to this one.
    pub fn merge(&mut self, other: ChaosReport) {
        self.cases += other.cases;
        self.rounds += other.rounds;
        self.requests += other.requests;
        self.placements += other.placements;
        self.already_held += other.already_held;
        self.errors += other.errors;
        self.answers_checked += other.answers_checked;
        self.disagreements += other.disagreements;
        self.inconsistent_answers += other.inconsistent_answers;
        self.duplicates += other.duplicates;
        self.drift += other.drift;
        self.blocked += other.blocked;
        for (k, v) in other.faults {
            *self.faults.entry(k).or_default() += v;
        }
        for (k, v) in other.classes {
            *self.classes.entry(k).or_default() += v;
        }
        for (k, v) in other.refused {
            *self.refused.entry(k).or_default() += v;
        }
        for v in other.violations {
            self.keep(v);
        }
        self.violation_count += other.violation_count;
    }
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cases {}  rounds {}  requests {}  placements {}  already_held {}  errors {}",
            self.cases, self.rounds, self.requests, self.placements, self.already_held, self.errors
        )?;
        writeln!(
            f,
            "answers checked {}  disagreements {}  inconsistent answers {}  duplicates {}  \
             drift {}  blocked {}",
            self.answers_checked,
            self.disagreements,
            self.inconsistent_answers,
            self.duplicates,
            self.drift,
            self.blocked
        )?;
        write!(f, "faults injected {}:", self.faults_total())?;
        for (k, v) in &self.faults {
            write!(f, " {k}={v}")?;
        }
        writeln!(f)?;
        if !self.refused.is_empty() {
            write!(f, "real faults refused by the server:")?;
            for (k, v) in &self.refused {
                write!(f, " {k}={v}")?;
            }
            writeln!(f)?;
        }
        write!(f, "violations {}", self.violation_count)?;
        for (k, v) in &self.classes {
            write!(f, " {k}={v}")?;
        }
        writeln!(f)?;
        for v in &self.violations {
            writeln!(f, "  - {v}")?;
        }
        Ok(())
    }
}
