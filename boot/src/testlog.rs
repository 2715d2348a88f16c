//! Reads the in-kernel test harness's output: `running N kernel tests`, one `test NAME ... ok` or
//! `test NAME ... FAILED` line per test, and `ktest: P passed, F failed` at the end. The runner
//! counts for itself, so that a crash or hang mid-run is still reported with what did run.

#[derive(Debug, Default, PartialEq, Eq)]
pub struct TestLog {
    /// How many tests the kernel said it would run.
    pub announced: Option<usize>,
    pub passed: Vec<String>,
    pub failed: Vec<String>,
    /// The kernel's own summary `(passed, failed)`, if it got that far.
    pub summary: Option<(usize, usize)>,
    /// A test whose verdict has not been printed yet: other output (a log line, a panic
    /// message) landed between `test NAME ... ` and its `ok`.
    pending: Option<String>,
}

impl TestLog {
    pub fn feed(&mut self, line: &str) {
        let line = line.trim_end();
        if let Some(name) = self.pending.take() {
            if line == "ok" {
                self.passed.push(name);
                return;
            } else if line.starts_with("FAILED") {
                self.failed.push(name);
                return;
            }
            self.pending = Some(name);
        }
        if let Some(rest) = line.strip_prefix("running ").and_then(|r| r.strip_suffix(" kernel tests")) {
            self.announced = rest.parse().ok();
        } else if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, verdict)) = rest.split_once(" ... ") {
                if verdict == "ok" {
                    self.passed.push(name.to_string());
                } else if verdict.starts_with("FAILED") {
                    if !self.failed.iter().any(|n| n == name) {
                        self.failed.push(name.to_string());
                    }
                } else {
                    // Something else was printed before the verdict: it may come on a later line.
                    self.pending = Some(name.to_string());
                }
            }
        } else if let Some(rest) = line.strip_prefix("ktest: ") {
            self.summary = parse_summary(rest);
        }
    }

    /// Tests announced but never reported (the run stopped early).
    pub fn not_run(&self) -> usize {
        self.announced.unwrap_or(0).saturating_sub(self.passed.len() + self.failed.len())
    }

    /// Whether the run, as seen on the console, passed: something ran, nothing failed, all that
    /// was announced was reported, and the kernel's summary agrees with what we counted.
    pub fn passed(&self) -> bool {
        let counted = (self.passed.len(), self.failed.len());
        self.announced.is_some_and(|n| n > 0)
            && self.failed.is_empty()
            && self.not_run() == 0
            && self.summary == Some(counted)
    }

    /// The rule for end-to-end runs, where user programs print the test lines and the machine's
    /// verdict comes from `init`'s exit code: something passed and nothing failed.
    pub fn passed_e2e(&self) -> bool {
        !self.passed.is_empty() && self.failed.is_empty()
    }

    /// The closing line: tests that did not run because the kernel stopped count as failed.
    pub fn summary_line(&self) -> String {
        let failed = self.failed.len() + self.not_run();
        let mut line = format!("kernel: {} passed, {} failed", self.passed.len(), failed);
        if self.announced.is_none() {
            line = format!("kernel: {} passed, {} failed", self.passed.len(), failed.max(1));
        }
        line
    }
}

fn parse_summary(s: &str) -> Option<(usize, usize)> {
    let (p, f) = s.split_once(" passed, ")?;
    let f = f.strip_suffix(" failed")?;
    Some((p.parse().ok()?, f.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> TestLog {
        let mut l = TestLog::default();
        for line in lines {
            l.feed(line);
        }
        l
    }

    #[test]
    fn a_clean_run_passes() {
        let l = log(&["running 2 kernel tests", "test a::b ... ok", "[ 0.1] INFO x: y", "test a::c ... ok\r", "ktest: 2 passed, 0 failed"]);
        assert!(l.passed());
        assert_eq!(l.summary_line(), "kernel: 2 passed, 0 failed");
    }

    #[test]
    fn a_failed_test_fails_the_run() {
        let l = log(&["running 2 kernel tests", "test a ... FAILED", "    check failed (x.rs:1)", "test b ... ok", "ktest: 1 passed, 1 failed"]);
        assert!(!l.passed());
        assert_eq!(l.summary_line(), "kernel: 1 passed, 1 failed");
    }

    #[test]
    fn a_crash_counts_the_crashed_and_unrun_tests_as_failed() {
        let l = log(&["running 4 kernel tests", "test a ... ok", "test b ... FAILED (kernel panic)", "KERNEL PANIC: boom"]);
        assert!(!l.passed());
        assert_eq!(l.not_run(), 2);
        assert_eq!(l.summary_line(), "kernel: 1 passed, 3 failed");
    }

    #[test]
    fn no_output_at_all_is_a_failure() {
        let l = log(&[]);
        assert!(!l.passed());
        assert_eq!(l.summary_line(), "kernel: 0 passed, 1 failed");
    }

    #[test]
    fn a_verdict_after_other_output_still_counts() {
        let l = log(&["test a ... [ 0.02] INFO task: spawn x: not an ELF file", "ok", "test b ... panic at x.rs:1: boom", "ok", "test c ... ok"]);
        assert_eq!(l.passed, ["a", "b", "c"]);
        let l = log(&["test a ... something", "FAILED: it broke"]);
        assert_eq!(l.failed, ["a"]);
    }

    #[test]
    fn end_to_end_runs_need_a_pass_and_no_failure() {
        assert!(log(&["test usertest::bad_pointer ... ok", "usertest: 1 passed, 0 failed"]).passed_e2e());
        assert!(!log(&["test a ... ok", "test b ... FAILED"]).passed_e2e());
        assert!(!log(&["usertest: 0 passed, 0 failed"]).passed_e2e());
    }

    #[test]
    fn a_summary_that_disagrees_with_the_lines_is_a_failure() {
        let l = log(&["running 1 kernel tests", "test a ... ok", "ktest: 2 passed, 0 failed"]);
        assert!(!l.passed());
    }
}
