//! kill -9 of a process appending to the history, at many moments (mid-scrape, mid-cut,
//! mid-replay): the history always opens, nothing acknowledged before the kill is lost
//! beyond the torn record, and appending goes on where it stopped.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use baton_metrics::{
    History, HistoryConfig, Labels, Matcher, Points, Resolution, Scrape, METRIC_NAME,
};

const CHILD: &str = "BATON_METRICS_KILL9_CHILD";
const T0: i64 = 1_767_225_600_000;
const SERIES: usize = 50;

fn config() -> HistoryConfig {
    // A block a minute: at one scrape per (virtual) second, the writer cuts often.
    HistoryConfig {
        block: Duration::from_secs(60),
        ..HistoryConfig::default()
    }
}

fn value(i: usize, t: i64) -> f64 {
    ((t - T0) / 1000) as f64 * (i + 1) as f64
}

fn all(h: &History) -> Vec<(Labels, Vec<(i64, f64)>)> {
    h.select(
        &[Matcher::equal(METRIC_NAME, "work_total")],
        i64::MIN,
        i64::MAX,
        Resolution::Raw,
    )
    .expect("select")
    .into_iter()
    .filter_map(|s| match s.points {
        Points::Raw(p) => Some((s.labels, p)),
        Points::Windows(_) => None,
    })
    .collect()
}

/// The child: appends one scrape per virtual second after what is stored, forever.
fn write_forever(dir: &Path) {
    let h = History::open(dir, config()).expect("open");
    let mut t = all(&h)
        .iter()
        .filter_map(|(_, p)| p.last().map(|x| x.0))
        .max()
        .map_or(T0, |t| t + 1000);
    loop {
        let samples = (0..SERIES)
            .map(|i| {
                (
                    Labels::metric("work_total", [("i", i.to_string())]),
                    value(i, t),
                )
            })
            .collect();
        h.append(&Scrape { t, samples }).expect("append");
        t += 1000;
    }
}

#[test]
fn a_kill_at_any_moment_leaves_a_history_that_opens_whole() {
    if let Some(dir) = std::env::var_os(CHILD) {
        write_forever(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut torn = 0;
    // Kill moments spread from before the open to well into the writing.
    for (round, ms) in [5u64, 40, 90, 150, 220, 310, 420, 60, 500, 25, 700, 130]
        .iter()
        .enumerate()
    {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "a_kill_at_any_moment_leaves_a_history_that_opens_whole",
                "--nocapture",
            ])
            .env(CHILD, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the writer");
        std::thread::sleep(Duration::from_millis(*ms));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");

        let h =
            History::open(dir.path(), config()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        if h.recovery().dropped_bytes > 0 {
            torn += 1;
        }
        assert!(h.recovery().corrupt_blocks.is_empty(), "round {round}");
        let series = all(&h);
        let Some(end) = series
            .iter()
            .filter_map(|(_, p)| p.last().map(|x| x.0))
            .max()
        else {
            continue;
        };
        for (labels, points) in &series {
            let i: usize = labels
                .get("i")
                .and_then(|i| i.parse().ok())
                .expect("i label");
            // Every second from the start to the last stored scrape, each value right.
            let expect = ((end - T0) / 1000 + 1) as usize;
            assert_eq!(points.len(), expect, "round {round}: {labels} has a gap");
            for (k, (t, v)) in points.iter().enumerate() {
                assert_eq!(*t, T0 + k as i64 * 1000, "round {round}: {labels}");
                assert_eq!(*v, value(i, *t), "round {round}: {labels} at {t}");
            }
        }
        println!(
            "round {round}: killed after {ms} ms, {} s stored, torn log: {}",
            (end - T0) / 1000 + 1,
            h.recovery().dropped_bytes
        );
    }
    println!("{torn} of 12 kills tore a log record");
}
