//! The run's results: one row per contender and workload, their ratios to
//! the direct connection and to nginx, written as `results.json` and
//! `results.md`.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::peers::{Peer, Placement, Setup};
use super::{Kind, Plan, Workload};
use crate::load::Report;

/// One workload against one contender in one variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// TLS on the client leg.
    pub tls: bool,
    /// Proxy workers.
    pub workers: usize,
    /// The contender.
    pub peer: Peer,
    /// The workload's letter.
    pub workload: String,
    /// What the load generator reported.
    pub load: Report,
    /// Idle: the proxy's resident memory per open connection, KiB.
    pub kib_per_conn: Option<f64>,
    /// The proxy's CPU time over the measured window per echoed message
    /// or per handshake, microseconds: user space and kernel (not for
    /// the direct connection, which has no proxy).
    #[serde(default)]
    pub cpu_us: Option<CpuPer>,
    /// Per cent of the whole machine's CPU time its hypervisor gave to
    /// other guests over the measured window (/proc/stat's `steal`): when
    /// it is high, every process ran on less than its core.
    #[serde(default)]
    pub steal_pct: Option<f64>,
    /// Per cent of each core's time it was busy over the measured window
    /// (/proc/stat's `cpuN` lines, less idle, I/O wait and steal), core 0
    /// first. In the pinned variants it shows which side bounds the
    /// figures: the proxy's core 0, or core 1 of the load generator and
    /// the echo upstream.
    #[serde(default)]
    pub cores_busy_pct: Vec<f64>,
    /// Which round it was measured in (0 in a median row).
    #[serde(default)]
    pub round: usize,
}

/// CPU time per unit of work, microseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CpuPer {
    /// In user space.
    pub user: f64,
    /// In the kernel.
    pub sys: f64,
}

impl Row {
    pub(super) fn new(place: Placement, peer: Peer, w: &Workload) -> Row {
        Row {
            tls: place.tls,
            workers: place.workers,
            peer,
            workload: w.id.into(),
            load: Report::default(),
            kib_per_conn: None,
            cpu_us: None,
            steal_pct: None,
            cores_busy_pct: Vec::new(),
            round: 0,
        }
    }

    fn same_cell(&self, other: &Row) -> bool {
        self.tls == other.tls
            && self.workers == other.workers
            && self.peer == other.peer
            && self.workload == other.workload
    }

    /// The workload's headline figure: messages, handshakes per second, or
    /// KiB per idle connection.
    pub fn figure(&self) -> Option<f64> {
        match self.load.mode.as_str() {
            "echo" => Some(self.load.msgs_per_sec),
            "handshakes" => Some(self.load.handshakes_per_sec),
            _ => self.kib_per_conn,
        }
    }

    /// One line for the progress log.
    pub fn summary(&self) -> String {
        let l = &self.load;
        let errors = match l.errors {
            0 => String::new(),
            n => format!(
                ", {n} errors (first: {})",
                l.first_error.as_deref().unwrap_or("?")
            ),
        };
        let cpu = self.cpu_us.map_or(String::new(), |c| {
            format!(", proxy CPU {:.2} µs ({:.2} user)", c.user + c.sys, c.user)
        });
        let steal = self
            .steal_pct
            .map_or(String::new(), |s| format!(", steal {s:.1} %"));
        let busy = match self.cores_busy_pct.as_slice() {
            [] => String::new(),
            cores => format!(
                ", cores busy {} %",
                cores
                    .iter()
                    .map(|b| format!("{b:.0}"))
                    .collect::<Vec<_>>()
                    .join("/")
            ),
        };
        let steal = format!("{busy}{steal}");
        match l.mode.as_str() {
            "echo" => format!(
                "{:.0} msg/s, {:.1} MB/s, p50 {} µs, p99 {} µs{cpu}{steal}{errors}",
                l.msgs_per_sec,
                l.mb_per_sec,
                fmt_us(l.p50_us),
                fmt_us(l.p99_us)
            ),
            "handshakes" => format!(
                "{:.0} handshakes/s, p99 {} µs{cpu}{steal}{errors}",
                l.handshakes_per_sec,
                fmt_us(l.p99_us)
            ),
            _ => format!(
                "{} open, {} KiB per connection{errors}",
                l.open,
                self.kib_per_conn.map_or("?".into(), |k| format!("{k:.1}"))
            ),
        }
    }

    fn is(&self, place: Placement, peer: Peer, workload: &str) -> bool {
        self.tls == place.tls
            && self.workers == place.workers
            && self.peer == peer
            && self.workload == workload
    }
}

/// The memory of wsgate holding connections with churn, over time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Churn {
    /// Connections held.
    pub conns: usize,
    /// Closed and reopened each second.
    pub per_sec: usize,
    /// (seconds since start, resident KiB).
    pub samples: Vec<(u64, u64)>,
    /// Connections the load generator failed to open.
    pub errors: u64,
    /// Connections still open at the end (the rest the proxy closed).
    #[serde(default)]
    pub open_at_end: usize,
}

impl Churn {
    /// How the resident memory moved over the second half of the run: the
    /// sample taken at half its length (or the first after it) and the
    /// last, as (seconds, KiB) each. The first half is the allocator
    /// filling its free lists as connections first close and reopen; what
    /// grows after that grows with the connections churned, which is what
    /// "no growth" is about. `None` with fewer than two samples there.
    pub fn second_half(&self) -> Option<((u64, u64), (u64, u64))> {
        let last = *self.samples.last()?;
        let half = *self.samples.iter().find(|(s, _)| *s * 2 >= last.0)?;
        (half.0 < last.0).then_some((half, last))
    }
}

/// Everything a run measured, and where.
#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    /// When (UTC, RFC 3339).
    pub date: String,
    /// The processor, from /proc/cpuinfo.
    pub cpu: String,
    /// The contenders' versions.
    pub versions: Vec<(String, String)>,
    /// Measured window of each workload, seconds.
    pub seconds: f64,
    /// Idle connections in workload e.
    pub idle: usize,
    /// Every row: with more than one round, each figure is the median of
    /// the rounds'.
    pub rows: Vec<Row>,
    /// Rounds run: every contender ran every workload this many times, the
    /// rounds interleaved.
    #[serde(default = "one")]
    pub rounds: usize,
    /// With more than one round, every round's rows as measured.
    #[serde(default)]
    pub raw: Vec<Row>,
    /// The churn run, when asked for.
    pub churn: Option<Churn>,
}

impl Results {
    pub(super) fn new(setup: &Setup, plan: &Plan, raw: Vec<Row>, churn: Option<Churn>) -> Results {
        let rounds = raw.iter().map(|r| r.round + 1).max().unwrap_or(1);
        let (rows, raw) = if rounds > 1 {
            (medians(&raw), raw)
        } else {
            (raw, Vec::new())
        };
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        Results {
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            cpu: format!(
                "{cpu}, {} cores",
                std::thread::available_parallelism().map_or(0, |n| n.get())
            ),
            versions: super::peers::versions(setup),
            seconds: plan.duration.as_secs_f64(),
            idle: plan.idle,
            rows,
            rounds,
            raw,
            churn,
        }
    }

    /// How far apart the rounds' headline figures were: the largest and the
    /// median of (max - min) / median over every cell, in per cent.
    pub fn spread(&self) -> Option<(f64, f64)> {
        let mut spreads: Vec<f64> = self
            .rows
            .iter()
            .filter_map(|row| {
                let figures: Vec<f64> = self
                    .raw
                    .iter()
                    .filter(|r| r.same_cell(row))
                    .filter_map(Row::figure)
                    .collect();
                let median = median(figures.clone())?;
                let (lo, hi) = figures
                    .iter()
                    .fold((f64::MAX, f64::MIN), |(lo, hi), &f| (lo.min(f), hi.max(f)));
                (figures.len() > 1 && median > 0.0).then(|| (hi - lo) / median * 100.0)
            })
            .collect();
        let worst = spreads.iter().copied().reduce(f64::max)?;
        Some((worst, median(std::mem::take(&mut spreads))?))
    }

    /// The row of one contender's workload in one variant.
    pub fn row(&self, place: Placement, peer: Peer, workload: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.is(place, peer, workload))
    }

    /// `base`'s row beside `row`: the same variant and workload.
    fn beside(&self, row: &Row, base: Peer) -> Option<&Row> {
        let place = Placement {
            tls: row.tls,
            workers: row.workers,
        };
        self.row(place, base, &row.workload)
    }

    /// `figure / figure of `base``, same variant and workload.
    pub fn ratio(&self, row: &Row, base: Peer) -> Option<f64> {
        let b = self.beside(row, base)?.figure()?;
        (b > 0.0).then(|| row.figure().unwrap_or(0.0) / b)
    }

    /// This row's proxy CPU time per message or handshake as a ratio to
    /// `base`'s in the same variant: the proxies' own cost, which moves
    /// with the machine far less than their throughput does.
    pub fn cpu_ratio(&self, row: &Row, base: Peer) -> Option<f64> {
        let b = self.beside(row, base)?.cpu_us?;
        let c = row.cpu_us?;
        let total = b.user + b.sys;
        (total > 0.0).then(|| (c.user + c.sys) / total)
    }

    /// The variants present, in run order.
    pub fn placements(&self) -> Vec<Placement> {
        let mut seen: Vec<Placement> = Vec::new();
        for r in &self.rows {
            if !seen
                .iter()
                .any(|p| p.tls == r.tls && p.workers == r.workers)
            {
                seen.push(Placement {
                    tls: r.tls,
                    workers: r.workers,
                });
            }
        }
        seen
    }

    /// The contenders present, in table order.
    pub fn peers(&self) -> Vec<Peer> {
        Peer::ALL
            .into_iter()
            .filter(|p| self.rows.iter().any(|r| r.peer == *p))
            .collect()
    }

    /// Writes `results.json` and `results.md` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(self)?,
        )?;
        std::fs::write(dir.join("results.md"), self.markdown())?;
        Ok(())
    }

    /// The tables: one per variant, a line per workload's figure, a column per contender.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "Run {}, {}, {} s windows.\n",
            self.date, self.cpu, self.seconds
        );
        if let Some((worst, typical)) = self.spread() {
            let _ = writeln!(
                md,
                "Each figure is the median of {} interleaved rounds. A contender's headline figure \
                 (messages or handshakes per second, KiB per connection) differed between its rounds \
                 by {typical:.1} % in the median cell and by {worst:.1} % at most; `raw` in \
                 results.json has every round.\n",
                self.rounds
            );
        }
        for (name, version) in &self.versions {
            let _ = writeln!(md, "- {name}: {version}");
        }
        let peers = self.peers();
        for place in self.placements() {
            let _ = writeln!(
                md,
                "\n### {}, {}\n",
                if place.tls {
                    "wss (TLS on the client leg)"
                } else {
                    "ws (plain)"
                },
                if place.workers == 1 {
                    "one proxy worker on core 0; load generator and echo upstream on core 1"
                        .to_owned()
                } else {
                    format!("{} proxy workers; nothing pinned", place.workers)
                }
            );
            let _ = write!(md, "| workload | figure |");
            for p in &peers {
                let _ = write!(md, " {} |", p.name());
            }
            let _ = write!(md, "\n|---|---|");
            for _ in &peers {
                let _ = write!(md, "---|");
            }
            md.push('\n');
            for w in super::WORKLOADS {
                for (label, value) in figures(&w) {
                    let cells: Vec<String> = peers
                        .iter()
                        .map(|&p| match self.row(place, p, w.id) {
                            Some(r) => self.cell(r, value),
                            None => "".into(),
                        })
                        .collect();
                    if cells.iter().all(String::is_empty) {
                        continue;
                    }
                    let _ = writeln!(md, "| {} | {label} | {} |", w.id, cells.join(" | "));
                }
            }
        }
        md.push_str(
            "\nThroughput and handshake cells: the figure, then (its ratio to direct / to nginx). \
             Latency: microseconds, round trip with the workload's messages in flight. \
             Memory: resident KiB per open idle connection (after minus before, divided by connections). \
             Proxy CPU: the proxy's processes' CPU time over the measured window (user and kernel, \
             from /proc in 10 ms ticks) per echoed message or handshake, then its user part and its \
             ratio to nginx's. Steal: the per cent of the machine's CPU time (both cores) its \
             hypervisor gave to other guests over the measured window, from /proc/stat; where it \
             is high, every process ran on less than its core and the figures beside it are low. \
             Cores busy: the per cent of each core's time (core 0 / core 1) spent on work over the \
             measured window, from /proc/stat; with one worker, a core near 100 is the side that \
             bounds the figures.\n",
        );
        for w in super::WORKLOADS {
            let _ = writeln!(md, "\n- {}: {}", w.id, w.what);
        }
        if let Some(c) = &self.churn {
            let _ = writeln!(
                md,
                "\n### wsgate memory with churn: {} connections held, {} closed and reopened a second\n\n| seconds | RSS KiB |\n|---|---|",
                c.conns, c.per_sec
            );
            for (s, kib) in &c.samples {
                let _ = writeln!(md, "| {s} | {kib} |");
            }
            if let Some(((s0, k0), (s1, k1))) = c.second_half() {
                let growth = i128::from(k1) - i128::from(k0);
                let _ = writeln!(
                    md,
                    "\nOver the second half of the run, from {s0} s to {s1} s: {growth:+} KiB ({k0} to {k1})."
                );
            }
            let _ = writeln!(
                md,
                "\n{} connections failed to open; {} of {} were still open at the end.",
                c.errors, c.open_at_end, c.conns
            );
        }
        md
    }

    fn cell(&self, r: &Row, value: Value) -> String {
        let err = if r.load.errors > 0 {
            format!(" ⚠ {} errors", r.load.errors)
        } else {
            String::new()
        };
        let ratios = || {
            let d = self
                .ratio(r, Peer::Direct)
                .map_or("–".into(), |x| format!("{x:.2}"));
            let n = self
                .ratio(r, Peer::Nginx)
                .map_or("–".into(), |x| format!("{x:.2}"));
            format!(" ({d} / {n})")
        };
        match value {
            Value::Msgs => format!("{:.0}{}{err}", r.load.msgs_per_sec, ratios()),
            Value::Mb => format!("{:.1}", r.load.mb_per_sec),
            Value::Mean => fmt_us(r.load.mean_us),
            Value::P50 => fmt_us(r.load.p50_us),
            Value::P99 => fmt_us(r.load.p99_us),
            Value::P999 => fmt_us(r.load.p999_us),
            Value::Handshakes => format!("{:.0}{}{err}", r.load.handshakes_per_sec, ratios()),
            Value::Kib => r
                .kib_per_conn
                .map_or("–".into(), |k| format!("{k:.1}{err}")),
            Value::Steal => r.steal_pct.map_or(String::new(), |s| format!("{s:.1}")),
            Value::Busy => r
                .cores_busy_pct
                .iter()
                .map(|b| format!("{b:.0}"))
                .collect::<Vec<_>>()
                .join(" / "),
            Value::Cpu => r.cpu_us.map_or(String::new(), |c| {
                // Three significant figures or so: ticks of 10 ms over a
                // few seconds measure no finer.
                let places = match c.user + c.sys {
                    t if t < 10.0 => 2,
                    t if t < 100.0 => 1,
                    _ => 0,
                };
                let nginx = self
                    .cpu_ratio(r, Peer::Nginx)
                    .map_or(String::new(), |x| format!("; {x:.2} of nginx's"));
                format!(
                    "{:.places$} ({:.places$} user{nginx})",
                    c.user + c.sys,
                    c.user
                )
            }),
        }
    }

    /// For `--smoke`: nothing failed, every throughput and handshake
    /// workload moved something and has its proxy's CPU time and each
    /// core's busy share, and every idle connection opened. (A few hundred
    /// idle connections may fit in memory the proxy freed after the
    /// workloads before, so their memory can read as zero.)
    pub fn check_smoke(&self) -> anyhow::Result<()> {
        let broken: Vec<String> = self
            .rows
            .iter()
            .filter(|r| {
                let measured = match r.load.mode.as_str() {
                    "idle" => r.load.open == r.load.connections && r.kib_per_conn.is_some(),
                    _ => {
                        r.figure().is_some_and(|f| f > 0.0)
                            && (r.peer == Peer::Direct || r.cpu_us.is_some())
                            && !r.cores_busy_pct.is_empty()
                    }
                };
                r.load.errors > 0 || !measured
            })
            .map(|r| {
                format!(
                    "{} {}w {} {}: {}",
                    if r.tls { "wss" } else { "ws" },
                    r.workers,
                    r.peer.name(),
                    r.workload,
                    r.summary()
                )
            })
            .collect();
        anyhow::ensure!(
            broken.is_empty(),
            "the harness is broken:\n{}",
            broken.join("\n")
        );
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Value {
    Msgs,
    Mb,
    Mean,
    P50,
    P99,
    P999,
    Handshakes,
    Kib,
    Cpu,
    Steal,
    Busy,
}

/// The lines a workload contributes to a table.
fn figures(w: &Workload) -> Vec<(&'static str, Value)> {
    match w.kind {
        Kind::Echo { .. } => vec![
            ("msg/s", Value::Msgs),
            ("MB/s", Value::Mb),
            ("mean µs", Value::Mean),
            ("p50 µs", Value::P50),
            ("p99 µs", Value::P99),
            ("p99.9 µs", Value::P999),
            ("proxy CPU µs/msg", Value::Cpu),
            ("cores busy %", Value::Busy),
            ("steal %", Value::Steal),
        ],
        Kind::Handshakes { .. } => vec![
            ("handshakes/s", Value::Handshakes),
            ("p99 µs", Value::P99),
            ("proxy CPU µs/handshake", Value::Cpu),
            ("cores busy %", Value::Busy),
            ("steal %", Value::Steal),
        ],
        Kind::Idle => vec![("KiB/conn", Value::Kib)],
    }
}

fn fmt_us(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.0}"))
}

fn one() -> usize {
    1
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// One row per cell, each figure the median of the rounds'; errors summed.
fn medians(raw: &[Row]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for r in raw {
        if rows.iter().any(|m| m.same_cell(r)) {
            continue;
        }
        let cell: Vec<&Row> = raw.iter().filter(|x| x.same_cell(r)).collect();
        let of = |f: fn(&Row) -> Option<f64>| median(cell.iter().filter_map(|x| f(x)).collect());
        let mut m = r.clone();
        m.round = 0;
        m.load.msgs_per_sec = of(|x| Some(x.load.msgs_per_sec)).unwrap_or(0.0);
        m.load.mb_per_sec = of(|x| Some(x.load.mb_per_sec)).unwrap_or(0.0);
        m.load.handshakes_per_sec = of(|x| Some(x.load.handshakes_per_sec)).unwrap_or(0.0);
        m.load.mean_us = of(|x| x.load.mean_us);
        m.load.p50_us = of(|x| x.load.p50_us);
        m.load.p99_us = of(|x| x.load.p99_us);
        m.load.p999_us = of(|x| x.load.p999_us);
        m.kib_per_conn = of(|x| x.kib_per_conn);
        m.cpu_us = match (of(|x| Some(x.cpu_us?.user)), of(|x| Some(x.cpu_us?.sys))) {
            (Some(user), Some(sys)) => Some(CpuPer { user, sys }),
            _ => None,
        };
        m.steal_pct = of(|x| x.steal_pct);
        m.cores_busy_pct = (0..r.cores_busy_pct.len())
            .map_while(|core| {
                median(
                    cell.iter()
                        .filter_map(|x| x.cores_busy_pct.get(core).copied())
                        .collect(),
                )
            })
            .collect();
        m.load.errors = cell.iter().map(|x| x.load.errors).sum();
        m.load.first_error = cell.iter().find_map(|x| x.load.first_error.clone());
        m.load.open = cell.iter().map(|x| x.load.open).min().unwrap_or(0);
        rows.push(m);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_row(peer: Peer, cpu_us: Option<CpuPer>) -> Row {
        Row {
            tls: false,
            workers: 1,
            peer,
            workload: "a".into(),
            load: Report {
                mode: "echo".into(),
                msgs_per_sec: 1000.0,
                ..Report::default()
            },
            kib_per_conn: None,
            cpu_us,
            steal_pct: None,
            cores_busy_pct: vec![90.0, 100.0],
            round: 0,
        }
    }

    fn results(rows: Vec<Row>) -> Results {
        Results {
            date: String::new(),
            cpu: String::new(),
            versions: Vec::new(),
            seconds: 1.0,
            idle: 0,
            rows,
            rounds: 1,
            raw: Vec::new(),
            churn: None,
        }
    }

    #[test]
    fn a_smoke_run_fails_without_a_proxys_cpu_time() {
        let cpu = Some(CpuPer {
            user: 0.2,
            sys: 1.5,
        });
        let whole = results(vec![
            echo_row(Peer::Direct, None),
            echo_row(Peer::Wsgate, cpu),
        ]);
        assert!(whole.check_smoke().is_ok());
        let missing = results(vec![
            echo_row(Peer::Direct, None),
            echo_row(Peer::Nginx, None),
        ]);
        let err = missing.check_smoke().expect_err("nginx has no CPU time");
        assert!(err.to_string().contains("ws 1w nginx a"), "{err}");
    }

    #[test]
    fn a_smoke_run_fails_without_the_cores_busy_share() {
        let cpu = Some(CpuPer {
            user: 0.2,
            sys: 1.5,
        });
        let mut wsgate = echo_row(Peer::Wsgate, cpu);
        wsgate.cores_busy_pct.clear();
        let err = results(vec![echo_row(Peer::Direct, None), wsgate])
            .check_smoke()
            .expect_err("wsgate's row has no cores line");
        assert!(err.to_string().contains("ws 1w wsgate a"), "{err}");
    }

    #[test]
    fn a_proxys_cpu_time_is_also_given_as_a_ratio_to_nginxs() {
        let cpu = |user, sys| Some(CpuPer { user, sys });
        let md = results(vec![
            echo_row(Peer::Direct, None),
            echo_row(Peer::Wsgate, cpu(0.5, 2.0)),
            echo_row(Peer::Nginx, cpu(0.2, 1.8)),
        ])
        .markdown();
        assert!(md.contains("| 2.50 (0.50 user; 1.25 of nginx's) |"), "{md}");
        assert!(md.contains("| 2.00 (0.20 user; 1.00 of nginx's) |"), "{md}");
        // Without nginx in the run, no ratio.
        let md = results(vec![echo_row(Peer::Wsgate, cpu(0.5, 2.0))]).markdown();
        assert!(md.contains("| 2.50 (0.50 user) |"), "{md}");
    }

    #[test]
    fn the_hypervisors_steal_has_a_line_of_its_own() {
        let mut direct = echo_row(Peer::Direct, None);
        direct.steal_pct = Some(3.31);
        let mut wsgate = echo_row(Peer::Wsgate, None);
        wsgate.steal_pct = Some(21.0);
        let md = results(vec![direct, wsgate]).markdown();
        assert!(md.contains("| a | steal % | 3.3 | 21.0 |"), "{md}");
        // Rows from before the runner read it have no line for it.
        let md = results(vec![echo_row(Peer::Direct, None)]).markdown();
        assert!(!md.contains("| steal % |"), "{md}");
    }

    #[test]
    fn each_cores_busy_time_has_a_line() {
        let mut direct = echo_row(Peer::Direct, None);
        direct.cores_busy_pct = vec![1.2, 99.6];
        let mut wsgate = echo_row(Peer::Wsgate, None);
        wsgate.cores_busy_pct = vec![91.4, 100.0];
        let md = results(vec![direct, wsgate]).markdown();
        assert!(
            md.contains("| a | cores busy % | 1 / 100 | 91 / 100 |"),
            "{md}"
        );
        // Rows from before the runner read it have no line for it.
        let mut old = echo_row(Peer::Direct, None);
        old.cores_busy_pct.clear();
        let md = results(vec![old]).markdown();
        assert!(!md.contains("| cores busy % |"), "{md}");
    }

    #[test]
    fn churn_growth_is_read_over_the_second_half_of_the_run() {
        let churn = |samples: Vec<(u64, u64)>| Churn {
            conns: 2000,
            per_sec: 20,
            samples,
            errors: 0,
            open_at_end: 2000,
        };
        // Rising while the allocator fills its lists, then flat.
        let settled = churn(vec![(0, 100), (30, 150), (60, 160), (90, 160), (120, 160)]);
        assert_eq!(settled.second_half(), Some(((60, 160), (120, 160))));
        let mut r = results(Vec::new());
        r.churn = Some(churn(vec![
            (0, 100),
            (30, 150),
            (60, 160),
            (90, 170),
            (120, 180),
        ]));
        let md = r.markdown();
        assert!(
            md.contains("from 60 s to 120 s: +20 KiB (160 to 180)"),
            "{md}"
        );
        assert_eq!(churn(vec![(0, 100)]).second_half(), None);
    }

    #[test]
    fn medians_take_the_middle_round_of_each_cell() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
        let row = |round, msgs, p99, mean, errors| Row {
            tls: false,
            workers: 1,
            peer: Peer::Wsgate,
            workload: "a".into(),
            load: Report {
                mode: "echo".into(),
                msgs_per_sec: msgs,
                p99_us: Some(p99),
                mean_us: Some(mean),
                errors,
                ..Report::default()
            },
            kib_per_conn: None,
            cpu_us: None,
            steal_pct: Some(p99 / 100.0),
            cores_busy_pct: vec![p99 / 10.0, 100.0],
            round,
        };
        let raw = vec![
            row(0, 10.0, 900.0, 450.0, 0),
            row(1, 30.0, 700.0, 350.0, 1),
            row(2, 20.0, 800.0, 400.0, 0),
        ];
        let rows = medians(&raw);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].load.msgs_per_sec, 20.0);
        assert_eq!(rows[0].load.p99_us, Some(800.0));
        assert_eq!(rows[0].load.mean_us, Some(400.0));
        assert_eq!(rows[0].steal_pct, Some(8.0));
        assert_eq!(
            rows[0].cores_busy_pct,
            vec![80.0, 100.0],
            "each core's own median"
        );
        assert_eq!(rows[0].load.errors, 1, "errors are summed, not hidden");
    }
}
