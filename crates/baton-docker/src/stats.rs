//! A one-off resource sample of a running container, computed the way `docker stats`
//! does (CPU from the delta against the previous sample the engine includes).

use baton_engine::runtime::RuntimeError;
use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptions;
use futures_util::StreamExt;

use crate::client::engine_error;
use crate::Docker;

pub use baton_engine::runtime::Stats;

impl baton_engine::runtime::ResourceStats for Docker {
    fn stats_once<'a>(
        &'a self,
        id: &'a str,
    ) -> baton_engine::runtime::LocalBoxFuture<'a, Result<Stats, RuntimeError>> {
        Box::pin(Docker::stats_once(self, id))
    }
}

impl Docker {
    /// The container's cumulative use, from one reading (`one_shot`: no second reading
    /// is waited for, so it answers at once).
    pub async fn usage_once(&self, id: &str) -> Result<baton_engine::runtime::Usage, RuntimeError> {
        let options = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let op = format!("stats of container {id}");
        let mut stream = self.api.stats(id, Some(options));
        match stream.next().await {
            Some(Ok(sample)) => {
                let s = compute(&sample);
                let cpu_ns = sample
                    .cpu_stats
                    .as_ref()
                    .and_then(|c| c.cpu_usage.as_ref())
                    .and_then(|u| u.total_usage)
                    .unwrap_or(0);
                Ok(baton_engine::runtime::Usage {
                    cpu_seconds: cpu_ns as f64 / 1e9,
                    memory_bytes: s.mem_usage,
                    network_receive_bytes: s.net_rx,
                    network_transmit_bytes: s.net_tx,
                })
            }
            Some(Err(e)) => Err(engine_error(e, &op, &format!("container {id}"))),
            None => Err(RuntimeError::Failed {
                op,
                detail: "the engine sent no sample".to_string(),
            }),
        }
    }

    /// One sample (takes about a second: the engine waits for a second reading).
    pub async fn stats_once(&self, id: &str) -> Result<Stats, RuntimeError> {
        let options = StatsOptions {
            stream: false,
            one_shot: false,
        };
        let op = format!("stats of container {id}");
        let mut stream = self.api.stats(id, Some(options));
        match stream.next().await {
            Some(Ok(sample)) => Ok(compute(&sample)),
            Some(Err(e)) => Err(engine_error(e, &op, &format!("container {id}"))),
            None => Err(RuntimeError::Failed {
                op,
                detail: "the engine sent no sample".to_string(),
            }),
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn compute(s: &ContainerStatsResponse) -> Stats {
    let total = |c: &Option<bollard::models::ContainerCpuStats>| {
        c.as_ref()
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .unwrap_or(0)
    };
    let system = |c: &Option<bollard::models::ContainerCpuStats>| {
        c.as_ref().and_then(|c| c.system_cpu_usage).unwrap_or(0)
    };
    let cpu_delta = total(&s.cpu_stats).saturating_sub(total(&s.precpu_stats));
    let system_delta = system(&s.cpu_stats).saturating_sub(system(&s.precpu_stats));
    let cpus = s
        .cpu_stats
        .as_ref()
        .and_then(|c| {
            c.online_cpus.map(u64::from).or_else(|| {
                c.cpu_usage
                    .as_ref()
                    .and_then(|u| u.percpu_usage.as_ref())
                    .map(|p| p.len() as u64)
            })
        })
        .unwrap_or(1);
    let cpu_percent = if cpu_delta > 0 && system_delta > 0 {
        cpu_delta as f64 / system_delta as f64 * cpus as f64 * 100.0
    } else {
        0.0
    };
    let mem = s.memory_stats.as_ref();
    let usage = mem.and_then(|m| m.usage).unwrap_or(0);
    // cgroup v1 reports page cache as `cache`, v2 as `inactive_file`.
    let cache = mem
        .and_then(|m| m.stats.as_ref())
        .and_then(|st| {
            st.get("inactive_file")
                .or_else(|| st.get("total_inactive_file"))
                .or_else(|| st.get("cache"))
        })
        .copied()
        .unwrap_or(0);
    let (net_rx, net_tx) = s
        .networks
        .as_ref()
        .map(|nets| {
            nets.values().fold((0, 0), |(rx, tx), n| {
                (rx + n.rx_bytes.unwrap_or(0), tx + n.tx_bytes.unwrap_or(0))
            })
        })
        .unwrap_or((0, 0));
    Stats {
        cpu_percent,
        mem_usage: usage.saturating_sub(cache),
        mem_limit: mem.and_then(|m| m.limit).unwrap_or(0),
        net_rx,
        net_tx,
        pids: s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
    }
}
