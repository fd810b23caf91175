//! Each case's outcome, printed as it is decided, and the summary line.

use std::time::Duration;

#[derive(Default)]
pub struct Report {
    passed: usize,
    failed: Vec<String>,
    skipped: usize,
}

impl Report {
    pub fn pass(&mut self, case: &str, row: u8, detail: &str) {
        self.passed += 1;
        println!("PASS  row {row:>2}  {case}  {}", short(detail));
    }

    pub fn fail(&mut self, case: &str, row: u8, why: &str) {
        println!("FAIL  row {row:>2}  {case}  {why}");
        self.failed
            .push(format!("{case} (row {row}): {}", short(why)));
    }

    pub fn skip(&mut self, case: &str, row: u8, why: &str) {
        self.skipped += 1;
        println!("SKIP  row {row:>2}  {case}  {why}");
    }

    /// `ok` passes, otherwise fails with `why`.
    pub fn check(&mut self, case: &str, row: u8, ok: bool, why: &str) {
        if ok {
            self.pass(case, row, why);
        } else {
            self.fail(case, row, why);
        }
    }

    /// Prints the summary; true when anything failed.
    pub fn summary(&self, took: Duration) -> bool {
        for f in &self.failed {
            println!("failed: {f}");
        }
        println!(
            "escape suite: {} passed, {} failed, {} skipped in {:.0} s",
            self.passed,
            self.failed.len(),
            self.skipped,
            took.as_secs_f64()
        );
        !self.failed.is_empty()
    }
}

fn short(s: &str) -> String {
    let one_line = s.replace('\n', " ");
    match one_line.char_indices().nth(240) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}
