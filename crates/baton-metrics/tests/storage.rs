//! The storage figure: a week of 10-second samples of realistic series costs at most 4
//! bytes per sample on disk, everything counted (raw chunks, aggregates, indexes, log).

mod synthetic;

use synthetic::{disk_bytes, fill, Workload};

#[test]
fn a_week_of_samples_takes_at_most_four_bytes_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut workload = Workload::new(4, 7);
    let week = 7 * 24 * 360;
    let samples = fill(dir.path(), &mut workload, week);
    assert_eq!(samples, workload.width() * week as usize);
    let (blocks, wal, all) = disk_bytes(dir.path());
    let per_sample = all as f64 / samples as f64;
    println!(
        "{} series, {samples} samples in a week at 10 s: {all} bytes on disk ({blocks} in blocks, {wal} in the log): {per_sample:.2} bytes/sample",
        workload.width()
    );
    assert!(per_sample <= 4.0, "{per_sample:.2} bytes per sample");
}
