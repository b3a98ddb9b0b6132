//! The history against its promises: what goes in comes out, across cuts and reopening;
//! torn logs, corrupt blocks, retention, staleness and private files.

use std::os::unix::fs::PermissionsExt;

use super::*;

const S: i64 = 1000;
const MIN: i64 = 60 * S;
const HOUR: i64 = 60 * MIN;
/// 2026-01-01T00:00:00Z, a block boundary.
const T0: i64 = 1_767_225_600_000;

fn cpu(replica: &str) -> Labels {
    Labels::metric("cpu_seconds_total", [("replica", replica)])
}

fn scrape(t: i64, replicas: &[&str]) -> Scrape {
    Scrape {
        t,
        samples: replicas
            .iter()
            .map(|r| (cpu(r), (t - T0) as f64 / 1000.0 + r.len() as f64))
            .collect(),
    }
}

fn raw(h: &History, m: &[Matcher], from: i64, to: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
    h.select(m, from, to, Resolution::Raw)
        .expect("select")
        .into_iter()
        .map(|s| match s.points {
            Points::Raw(p) => (s.labels, p),
            Points::Windows(_) => panic!("raw asked"),
        })
        .collect()
}

fn name(n: &str) -> Vec<Matcher> {
    vec![Matcher::equal(METRIC_NAME, n)]
}

#[test]
fn samples_come_back_across_cuts_and_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let steps = 5 * 360; // five hours at 10 s: two cuts and a head
    {
        let h = History::open(dir.path(), HistoryConfig::default()).expect("open");
        for i in 0..steps {
            let done = h
                .append(&scrape(T0 + i * 10 * S, &["a", "bb"]))
                .expect("append");
            assert_eq!(done.samples, 2);
        }
        let got = raw(&h, &name("cpu_seconds_total"), T0, T0 + 6 * HOUR);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1.len(), steps as usize);
        let blocks = std::fs::read_dir(dir.path().join("blocks"))
            .expect("blocks")
            .count();
        assert_eq!(blocks, 2);
    }
    let h = History::open(dir.path(), HistoryConfig::default()).expect("reopen");
    assert_eq!(h.recovery().dropped_bytes, 0);
    assert_eq!(h.recovery().scrapes, 360);
    let got = raw(&h, &[Matcher::equal("replica", "bb")], T0, T0 + 6 * HOUR);
    assert_eq!(got.len(), 1);
    let points = &got[0].1;
    assert_eq!(points.len(), steps as usize);
    for (i, (t, v)) in points.iter().enumerate() {
        assert_eq!(*t, T0 + i as i64 * 10 * S);
        assert_eq!(*v, (t - T0) as f64 / 1000.0 + 2.0);
    }
    // A sub-range, its ends inclusive.
    let got = raw(
        &h,
        &name("cpu_seconds_total"),
        T0 + 2 * HOUR - 10 * S,
        T0 + 2 * HOUR,
    );
    assert_eq!(got[0].1.len(), 2);
    // And appending goes on after the replayed head.
    h.append(&scrape(T0 + steps * 10 * S, &["a", "bb"]))
        .expect("append");
    assert_eq!(
        raw(&h, &name("cpu_seconds_total"), T0, i64::MAX)[0].1.len(),
        steps as usize + 1
    );
}

#[test]
fn a_torn_log_record_is_dropped_and_the_rest_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let h = History::open(dir.path(), HistoryConfig::default()).expect("open");
        for i in 0..10 {
            h.append(&scrape(T0 + i * 10 * S, &["a"])).expect("append");
        }
    }
    let wal = dir.path().join("wal");
    let len = std::fs::metadata(&wal).expect("wal").len();
    // Every possible tear of the last record, and garbage after a whole log.
    // The last record is 25 bytes: frame, kind, time, count, id, value.
    for cut in (len - 24)..len {
        let copy = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(copy.path().join("blocks")).expect("blocks");
        let bytes = std::fs::read(&wal).expect("read");
        std::fs::write(copy.path().join("wal"), &bytes[..cut as usize]).expect("write");
        let h = History::open(copy.path(), HistoryConfig::default()).expect("open torn");
        assert!(h.recovery().dropped_bytes > 0);
        let got = raw(&h, &name("cpu_seconds_total"), T0, i64::MAX);
        assert_eq!(got[0].1.len(), 9, "cut at {cut}");
        h.append(&scrape(T0 + 10 * 10 * S, &["a"]))
            .expect("append after repair");
        drop(h);
        let h = History::open(copy.path(), HistoryConfig::default()).expect("reopen");
        assert_eq!(h.recovery().dropped_bytes, 0);
        assert_eq!(
            raw(&h, &name("cpu_seconds_total"), T0, i64::MAX)[0].1.len(),
            10
        );
    }
    let mut bytes = std::fs::read(&wal).expect("read");
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&wal, &bytes).expect("write");
    let h = History::open(dir.path(), HistoryConfig::default()).expect("open");
    assert_eq!(h.recovery().dropped_bytes, 11);
    assert_eq!(
        raw(&h, &name("cpu_seconds_total"), T0, i64::MAX)[0].1.len(),
        10
    );
}

#[test]
fn a_corrupt_block_is_set_aside_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let h = History::open(dir.path(), HistoryConfig::default()).expect("open");
        for i in 0..(3 * 360) {
            h.append(&scrape(T0 + i * 10 * S, &["a"])).expect("append");
        }
    }
    let mut blocks: Vec<PathBuf> = std::fs::read_dir(dir.path().join("blocks"))
        .expect("blocks")
        .map(|e| e.expect("entry").path())
        .collect();
    blocks.sort();
    assert_eq!(blocks.len(), 1);
    let mut bytes = std::fs::read(&blocks[0]).expect("read");
    let n = bytes.len();
    bytes[n - 40] ^= 0xff;
    std::fs::write(&blocks[0], &bytes).expect("write");
    let h = History::open(dir.path(), HistoryConfig::default()).expect("open");
    assert_eq!(h.recovery().corrupt_blocks.len(), 1);
    // The head (the last hour) is still there.
    assert_eq!(
        raw(&h, &name("cpu_seconds_total"), T0, i64::MAX)[0].1.len(),
        360
    );

    // A chunk whose bytes rot after the index was read is an error, not a panic.
    drop(h);
    let dir = tempfile::tempdir().expect("tempdir");
    let h = History::open(dir.path(), HistoryConfig::default()).expect("open");
    for i in 0..(3 * 360) {
        h.append(&scrape(T0 + i * 10 * S, &["a"])).expect("append");
    }
    let block = std::fs::read_dir(dir.path().join("blocks"))
        .expect("blocks")
        .map(|e| e.expect("entry").path())
        .next()
        .expect("a block");
    let mut bytes = std::fs::read(&block).expect("read");
    bytes[20] ^= 0x55;
    std::fs::write(&block, &bytes).expect("write");
    let err = h.select(&name("cpu_seconds_total"), T0, i64::MAX, Resolution::Raw);
    assert!(matches!(err, Err(StoreError::Corrupt { .. })), "{err:?}");
}

#[test]
fn retention_deletes_whole_old_blocks_and_forgets_their_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = HistoryConfig {
        retention: Duration::from_secs(6 * 3600),
        ..HistoryConfig::default()
    };
    let h = History::open(dir.path(), config).expect("open");
    for i in 0..(4 * 360) {
        h.append(&scrape(T0 + i * 10 * S, &["old"]))
            .expect("append");
    }
    for i in (4 * 360)..(12 * 360) {
        h.append(&scrape(T0 + i * 10 * S, &["new"]))
            .expect("append");
    }
    // The cut at hour 10 deleted what ended before hour 4: "old" has only the staleness
    // marker it got at hour 4, in the block after.
    let got = raw(&h, &[Matcher::equal("replica", "old")], i64::MIN, i64::MAX);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.len(), 1);
    assert!(is_stale(got[0].1[0].1));
    h.retain(T0 + 12 * HOUR).expect("retain");
    let got = raw(&h, &name("cpu_seconds_total"), i64::MIN, i64::MAX);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.get("replica"), Some("new"));
    assert_eq!(got[0].1[0].0, T0 + 6 * HOUR);
    assert_eq!(h.series_count(), 1);
    let blocks = std::fs::read_dir(dir.path().join("blocks"))
        .expect("blocks")
        .count();
    assert_eq!(blocks, 2);
}

#[test]
fn a_series_missing_from_a_scrape_is_marked_stale_and_order_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = History::open(dir.path(), HistoryConfig::default()).expect("open");
    h.append(&scrape(T0, &["a", "b"])).expect("append");
    let done = h.append(&scrape(T0 + 10 * S, &["a"])).expect("append");
    assert_eq!(
        done,
        Appended {
            samples: 1,
            out_of_order: 0,
            stale: 1
        }
    );
    let done = h.append(&scrape(T0 + 20 * S, &["a"])).expect("append");
    assert_eq!(done.stale, 0);
    let got = raw(&h, &[Matcher::equal("replica", "b")], T0, i64::MAX);
    assert_eq!(got[0].1.len(), 2);
    assert!(is_stale(got[0].1[1].1));
    // The same time again, an earlier one, a repeated series: refused.
    let mut again = scrape(T0 + 20 * S, &["a"]);
    assert_eq!(h.append(&again).expect("append").out_of_order, 1);
    again.t = T0 + 30 * S;
    again.samples.push(again.samples[0].clone());
    let done = h.append(&again).expect("append");
    assert_eq!(
        done,
        Appended {
            samples: 1,
            out_of_order: 1,
            stale: 0
        }
    );
}

#[test]
fn aggregates_match_the_raw_samples_across_blocks_and_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = History::open(dir.path(), HistoryConfig::default()).expect("open");
    for i in 0..(3 * 360) {
        let t = T0 + i * 10 * S;
        // A counter reset at 1 h 30 m.
        let v = if i < 540 {
            i as f64 * 3.0
        } else {
            (i - 540) as f64
        };
        h.append(&Scrape {
            t,
            samples: vec![(cpu("a"), v)],
        })
        .expect("append");
    }
    let all = raw(&h, &name("cpu_seconds_total"), i64::MIN, i64::MAX);
    let expect = downsample::downsample(&all[0].1, None);
    let got = h
        .select(
            &name("cpu_seconds_total"),
            i64::MIN,
            i64::MAX,
            Resolution::FiveMinutes,
        )
        .expect("select");
    assert_eq!(got[0].points, Points::Windows(expect.clone()));
    assert_eq!(expect.len(), 36);
    let inc: f64 = expect.iter().map(|w| w.inc).sum();
    assert_eq!(inc, 539.0 * 3.0 + (1080.0 - 540.0 - 1.0) + 0.0);
}

#[test]
fn files_are_private_and_one_process_holds_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("metrics");
    let h = History::open(&root, HistoryConfig::default()).expect("open");
    for i in 0..(2 * 360 + 1) {
        h.append(&scrape(T0 + i * 10 * S, &["a"])).expect("append");
    }
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("blocks")), 0o700);
    assert_eq!(mode(&root.join("wal")), 0o600);
    for e in std::fs::read_dir(root.join("blocks")).expect("blocks") {
        assert_eq!(mode(&e.expect("entry").path()), 0o600);
    }
    assert!(matches!(
        History::open(&root, HistoryConfig::default()),
        Err(StoreError::Locked { .. })
    ));
}

#[test]
fn a_full_chunk_is_cut_at_a_window_boundary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = HistoryConfig {
        max_chunk_samples: 100,
        ..HistoryConfig::default()
    };
    let h = History::open(dir.path(), config).expect("open");
    // One sample a second: 100 samples in, the head is cut at the next 5 minutes.
    for i in 0..(20 * 60) {
        h.append(&scrape(T0 + i * S, &["a"])).expect("append");
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("blocks"))
        .expect("blocks")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    for n in &names {
        let end: i64 = n
            .trim_end_matches(".blk")
            .split('-')
            .nth(1)
            .and_then(|e| e.parse().ok())
            .expect("an end");
        assert_eq!(end % WINDOW_MS, 0, "{n}");
    }
    assert_eq!(
        raw(&h, &name("cpu_seconds_total"), i64::MIN, i64::MAX)[0]
            .1
            .len(),
        1200
    );
}
