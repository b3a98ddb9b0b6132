//! Live progress for up/down/build: one line per container, network or image on a
//! terminal; nothing but failures when output is not a terminal (logs stay clean).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use baton_engine::apply::{Reporter, Step};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub struct Progress {
    bars: Option<(MultiProgress, RefCell<BTreeMap<String, ProgressBar>>)>,
}

impl Progress {
    /// Live bars when stderr is a terminal and `quiet` is false.
    pub fn new(quiet: bool) -> Progress {
        let live = !quiet && std::io::stderr().is_terminal();
        Progress {
            bars: live.then(|| (MultiProgress::new(), RefCell::new(BTreeMap::new()))),
        }
    }

    fn bar(&self, target: &str) -> Option<ProgressBar> {
        let (multi, bars) = self.bars.as_ref()?;
        let mut bars = bars.borrow_mut();
        let bar = bars.entry(target.to_string()).or_insert_with(|| {
            let b = multi.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template(" {spinner:.cyan} {prefix:<40} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(target.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Some(bar.clone())
    }

    pub fn finish(&self) {
        if let Some((_, bars)) = &self.bars {
            for b in bars.borrow().values() {
                if !b.is_finished() {
                    b.finish();
                }
            }
        }
    }
}

impl Reporter for Progress {
    fn report(&self, step: Step<'_>) {
        match step {
            Step::Started { target, what } => {
                if let Some(b) = self.bar(target) {
                    b.set_message(format!("{what}…"));
                }
            }
            Step::Waiting { target, on } => {
                if let Some(b) = self.bar(target) {
                    b.set_message(format!("waiting for {on}…"));
                }
            }
            Step::Done { target, what } => {
                if let Some(b) = self.bar(target) {
                    let done = match what {
                        "creating" => "created",
                        "starting" => "started",
                        "stopping" => "stopped",
                        "removing" => "removed",
                        "pulling" => "pulled",
                        "building" => "built",
                        other => other,
                    };
                    b.set_style(
                        ProgressStyle::with_template(" {prefix:.green.bold:<40} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b.finish_with_message(done.to_string());
                }
            }
            Step::Failed { target, error } => match self.bar(target) {
                Some(b) => b.abandon_with_message(format!("failed: {error}")),
                None => eprintln!("{target}: failed: {error}"),
            },
        }
    }
}

/// `down` shows its steps; there is no plan to show first.
impl baton_control::Watch for Progress {}
