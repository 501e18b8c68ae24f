//! Replaying `fixtures/small` into a file sink gives the golden line protocol byte for byte,
//! whatever the number of workers.

mod support;

use support::{heapster, small, stderr};

#[test]
fn replay_matches_golden_output_for_1_2_and_4_workers() {
    let golden =
        std::fs::read(small().join("expected/metrics.lp")).expect("fixtures/small/expected/metrics.lp");
    assert!(!golden.is_empty());
    let tmp = tempfile::tempdir().expect("tempdir");
    for workers in ["1", "2", "4"] {
        let out = tmp.path().join(format!("w{workers}.lp"));
        let sink = format!("--sink=file:{}", out.display());
        let source = format!("--source=replay:{}", small().display());
        let run = heapster(&[&source, &sink, "-w", workers]);
        assert!(run.status.success(), "-w {workers}: {}", stderr(&run));
        let written = std::fs::read(&out).expect("output");
        if written != golden {
            let first_diff = written
                .iter()
                .zip(&golden)
                .position(|(a, b)| a != b)
                .unwrap_or(written.len().min(golden.len()));
            let line = golden[..first_diff].iter().filter(|b| **b == b'\n').count() + 1;
            panic!(
                "-w {workers}: output differs from the golden file at line {line} ({} bytes written, {} expected); \
                 regenerate with `make golden` only if the change is intended",
                written.len(),
                golden.len()
            );
        }
    }
}

/// With `schedulableLabel=true`, node lines gain the tag and nothing else changes.
#[test]
fn schedulable_label_is_an_option() {
    let golden = std::fs::read_to_string(small().join("expected/metrics.lp")).expect("golden");
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("labeled.lp");
    let sink = format!("--sink=file:{}", out.display());
    let source = format!("--source=replay:{}?schedulableLabel=true", small().display());
    let run = heapster(&[&source, &sink]);
    assert!(run.status.success(), "{}", stderr(&run));
    let written = std::fs::read_to_string(&out).expect("output");
    assert_eq!(written.lines().count(), golden.lines().count());
    let mut labeled = 0;
    for (got, want) in written.lines().zip(golden.lines()) {
        assert!(!want.contains("schedulable="), "the golden output has no schedulable tag: {want}");
        let is_node = want.contains(",type=node ");
        let stripped = got.replace(",schedulable=true", "").replace(",schedulable=false", "");
        assert_eq!(stripped, want);
        assert_eq!(got != want, is_node, "{got}");
        labeled += usize::from(is_node);
    }
    assert!(labeled > 0);
}
