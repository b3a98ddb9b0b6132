//! Host facts read over SSH from /proc and `df`, parsed here: CPU count and usage over a
//! short sample, memory, root disk, load averages, uptime.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::inventory::Inventory;
use crate::ssh::{Jumps, Session, SshOptions};
use crate::transport::quote_args;

/// The fixed script whose output `parse` reads (no user data in it).
pub const SCRIPT: &str = "echo @@host; hostname; echo @@load; cat /proc/loadavg; echo @@uptime; cat /proc/uptime; \
echo @@mem; cat /proc/meminfo; echo @@cpus; grep -c ^processor /proc/cpuinfo; \
echo @@stat1; head -n1 /proc/stat; sleep 0.2; echo @@stat2; head -n1 /proc/stat; echo @@df; df -Pk /";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub hostname: String,
    pub cpus: u32,
    /// Busy share of all CPUs over a 200 ms sample, in percent.
    pub cpu_percent: f64,
    pub load: [f64; 3],
    pub mem_total_kb: u64,
    pub mem_available_kb: u64,
    pub disk_total_kb: u64,
    pub disk_used_kb: u64,
    pub disk_available_kb: u64,
    pub uptime_s: f64,
}

fn section<'a>(text: &'a str, name: &str) -> &'a str {
    let tag = format!("@@{name}\n");
    let Some(start) = text.find(&tag) else {
        return "";
    };
    let rest = &text[start + tag.len()..];
    match rest.find("@@") {
        Some(end) => &rest[..end],
        None => rest,
    }
}

fn cpu_times(line: &str) -> Option<(u64, u64)> {
    let nums: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    if nums.len() < 4 {
        return None;
    }
    let total: u64 = nums.iter().sum();
    let idle = nums[3] + nums.get(4).copied().unwrap_or(0);
    Some((total, idle))
}

/// Parses the output of `SCRIPT`; missing parts stay zero.
pub fn parse(text: &str) -> Facts {
    let mut f = Facts {
        hostname: section(text, "host").trim().to_string(),
        ..Default::default()
    };
    let load: Vec<f64> = section(text, "load")
        .split_whitespace()
        .take(3)
        .filter_map(|n| n.parse().ok())
        .collect();
    for (i, l) in load.iter().enumerate() {
        f.load[i] = *l;
    }
    f.uptime_s = section(text, "uptime")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    for line in section(text, "mem").lines() {
        let mut w = line.split_whitespace();
        let (Some(k), Some(v)) = (w.next(), w.next().and_then(|v| v.parse::<u64>().ok())) else {
            continue;
        };
        match k {
            "MemTotal:" => f.mem_total_kb = v,
            "MemAvailable:" => f.mem_available_kb = v,
            _ => {}
        }
    }
    f.cpus = section(text, "cpus").trim().parse().unwrap_or(0);
    if let (Some((t1, i1)), Some((t2, i2))) = (
        cpu_times(section(text, "stat1")),
        cpu_times(section(text, "stat2")),
    ) {
        let dt = t2.saturating_sub(t1);
        if dt > 0 {
            f.cpu_percent =
                ((dt - i2.saturating_sub(i1).min(dt)) as f64 * 100.0 / dt as f64 * 10.0).round()
                    / 10.0;
        }
    }
    if let Some(line) = section(text, "df").lines().nth(1) {
        let w: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(3)
            .filter_map(|n| n.parse().ok())
            .collect();
        if w.len() == 3 {
            (f.disk_total_kb, f.disk_used_kb, f.disk_available_kb) = (w[0], w[1], w[2]);
        }
    }
    f
}

/// One host's facts, or why they could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// Reads facts from every host in `ids`, `forks` at a time.
pub async fn gather(
    inv: &Inventory,
    ids: &[String],
    ssh: &SshOptions,
    forks: usize,
) -> Vec<HostFacts> {
    let jumps = Jumps::default();
    let jumps = &jumps;
    let mut out: Vec<HostFacts> = stream::iter(ids.iter().filter_map(|id| inv.hosts.get(id)).map(
        |h| async move {
            let t = std::time::Instant::now();
            let mut r = HostFacts {
                host: h.id.clone(),
                facts: None,
                error: None,
                duration_ms: 0,
            };
            match Session::connect_in(inv, h, ssh, jumps).await {
                Err(e) => r.error = Some(e.to_string()),
                Ok(s) => {
                    match s
                        .exec(
                            &quote_args(&["sh", "-c", SCRIPT]),
                            None,
                            Some(Duration::from_secs(30)),
                        )
                        .await
                    {
                        Ok(o) if o.ok() => {
                            r.facts = Some(parse(&String::from_utf8_lossy(&o.stdout)))
                        }
                        Ok(o) => {
                            r.error = Some(format!("facts script failed: {}", o.text().trim()))
                        }
                        Err(e) => r.error = Some(e.to_string()),
                    }
                    s.close().await;
                }
            }
            r.duration_ms = t.elapsed().as_millis() as i64;
            r
        },
    ))
    .buffer_unordered(forks.max(1))
    .collect()
    .await;
    jumps.close().await;
    out.sort_by(|a, b| a.host.cmp(&b.host));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_and_df() {
        let text = "@@host\nweb1\n@@load\n0.50 0.25 0.10 1/100 42\n@@uptime\n123.4 200.0\n@@mem\nMemTotal:  2048 kB\nMemFree: 10 kB\nMemAvailable: 1024 kB\n@@cpus\n2\n@@stat1\ncpu  100 0 100 800 0 0 0 0 0 0\n@@stat2\ncpu  150 0 150 900 0 0 0 0 0 0\n@@df\nFilesystem 1024-blocks Used Available Capacity Mounted on\n/dev/x 1000 400 600 40% /\n";
        let f = parse(text);
        assert_eq!(f.hostname, "web1");
        assert_eq!(f.load, [0.5, 0.25, 0.1]);
        assert_eq!((f.mem_total_kb, f.mem_available_kb), (2048, 1024));
        assert_eq!(f.cpus, 2);
        assert_eq!(f.cpu_percent, 50.0);
        assert_eq!(
            (f.disk_total_kb, f.disk_used_kb, f.disk_available_kb),
            (1000, 400, 600)
        );
        assert_eq!(parse("garbage"), Facts::default());
    }
}
