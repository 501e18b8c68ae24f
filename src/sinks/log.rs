//! `log`: a readable summary of each window on stdout, like `kubectl top`, and events one line
//! each, like `kubectl get events`.
//!
//! Nodes first (usage and share of allocatable), then the busiest pods by CPU, then counts. The
//! first window of a run has no CPU rates yet (a rate needs two samples) and shows `-`.
//!
//! The table is global: the graph gathers every worker's [`WindowTable`] share of a window on
//! worker 0 of process 0, and the collector hands the merged table to the sink. So in a cluster
//! process 0 prints the one table of the whole cluster and the other processes print none;
//! events are printed by every process, each its own share.

use std::fmt::Write as _;
use std::io::{self, Write};

use heapster_dataflows::Event;

use super::event_json::event_time_ms;
use super::sink::{LocalWrite, Opened, Sink, SinkContext, SinkError};
#[cfg(test)]
use crate::batch::MetricBatch;
use crate::batch::Window;
use crate::batch::table::{NodeRow, WindowTable};

/// `--sink=log` (options after it are ignored, as Heapster did).
#[derive(Clone, Debug)]
pub struct LogConfig;

impl Sink for LogConfig {
    fn name(&self) -> String {
        "log".to_string()
    }

    fn open(&self, _context: &SinkContext) -> Result<Opened, SinkError> {
        Ok(Opened::Local(Box::new(LogSink::stdout())))
    }

    fn wants_table(&self) -> bool {
        true
    }
}

impl<W: Write + Send> LocalWrite for LogSink<W> {
    /// The table comes whole from the graph instead ([`LocalWrite::table`]): in a cluster this
    /// process's window is only its share.
    fn metrics(&mut self, _window: Window<'_>) -> io::Result<()> {
        Ok(())
    }

    fn table(&mut self, table: &WindowTable) -> io::Result<()> {
        self.write_table(table)
    }

    fn events(&mut self, events: &[Event]) -> io::Result<()> {
        self.write_events(events)
    }
}

pub struct LogSink<W: Write> {
    out: W,
}

impl LogSink<io::Stdout> {
    pub fn stdout() -> Self {
        LogSink { out: io::stdout() }
    }
}

impl<W: Write> LogSink<W> {
    pub fn new(out: W) -> Self {
        LogSink { out }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn write_table(&mut self, table: &WindowTable) -> io::Result<()> {
        let text = render_table(table);
        self.out.write_all(text.as_bytes())?;
        self.out.flush()
    }

    pub fn write_events(&mut self, events: &[Event]) -> io::Result<()> {
        let text = render_events(events);
        self.out.write_all(text.as_bytes())?;
        self.out.flush()
    }
}

/// One line per event, columns aligned: time (RFC 3339 of the time the state is stored at, see
/// [`event_time_ms`]), type, `namespace/kind/name` of the involved object (kind in lower case,
/// as `kubectl` shows it), reason, `x<count>`, message. The message is kept on its line:
/// backslashes, line breaks, tabs and other control characters are escaped as in Rust strings.
/// Empty values show as `-`.
pub fn render_events(events: &[Event]) -> String {
    let mut table = Table::headless();
    for event in events {
        let time = event_time_ms(event)
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .map_or_else(|| "-".to_string(), |t| t.to_string());
        let involved = &event.involved;
        let namespace = if involved.namespace.is_empty() { &event.namespace } else { &involved.namespace };
        let mut object = String::new();
        for part in [namespace.as_str(), &involved.kind.to_lowercase(), &involved.name] {
            if !part.is_empty() {
                if !object.is_empty() {
                    object.push('/');
                }
                object.push_str(part);
            }
        }
        table.row([
            time,
            or_dash(&event.kind),
            or_dash(&object),
            or_dash(&event.reason),
            format!("x{}", event.count),
            one_line(event.message()),
        ]);
    }
    table.render()
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".to_string() } else { s.to_string() }
}

/// `s` on one line, its backslashes and control characters escaped.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// The text for one whole window.
#[cfg(test)]
pub fn render(batch: &MetricBatch) -> String {
    render_table(&WindowTable::of(batch.time, &batch.sets))
}

/// The text of one window's table.
pub fn render_table(table: &WindowTable) -> String {
    let counts = table.counts;
    let time =
        jiff::Timestamp::from_millisecond(table.time as i64).map(|t| t.to_string()).unwrap_or_default();
    let mut out = format!(
        "window {time}: {} nodes, {} pods, {} containers, {} system containers, {} namespaces, {} points\n",
        counts[0], counts[1], counts[2], counts[3], counts[4], table.points
    );

    let mut rows: Vec<&NodeRow> = table.nodes.iter().collect();
    rows.sort_by(|a, b| a.node.cmp(&b.node));
    let mut nodes = Table::new(["NODE", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]);
    for row in rows {
        nodes.row([
            row.node.clone(),
            cpu(row.cpu),
            percent(row.cpu_share),
            memory(row.memory),
            percent(row.memory_share),
        ]);
    }
    out.push_str(&nodes.render());

    let total = counts[1] as usize;
    if total > 0 {
        let mut pods = Table::new(["NAMESPACE", "POD", "CPU(cores)", "MEMORY(bytes)"]);
        for pod in &table.pods {
            pods.row([pod.ns.clone(), pod.pod.clone(), cpu(pod.cpu), memory(pod.memory)]);
        }
        out.push_str(&format!("busiest pods ({} of {total}):\n", table.pods.len()));
        out.push_str(&pods.render());
    }
    out.push('\n');
    out
}

fn cpu(millicores: Option<i64>) -> String {
    millicores.map_or_else(|| "-".to_string(), |m| format!("{m}m"))
}

fn memory(bytes: Option<i64>) -> String {
    bytes.map_or_else(|| "-".to_string(), |b| format!("{}Mi", b >> 20))
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_string(), |r| format!("{:.0}%", r * 100.0))
}

/// Left-aligned columns, two spaces apart.
struct Table<const N: usize> {
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    fn new(header: [&str; N]) -> Self {
        Table { rows: vec![header.map(str::to_string)] }
    }

    fn headless() -> Self {
        Table { rows: Vec::new() }
    }

    fn row(&mut self, row: [String; N]) {
        self.rows.push(row);
    }

    fn render(&self) -> String {
        let mut widths = [0usize; N];
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                if i + 1 == N {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  "));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapster_dataflows::{EntityKey, MetricId, MetricSet, Value};

    fn node(name: &str, rate: Option<i64>, util: f64) -> MetricSet {
        let mut s = MetricSet::new(EntityKey::Node { node: name.into() });
        if let Some(r) = rate {
            s.values.set(MetricId::CpuUsageRate, Value::Int(r));
        }
        s.values.set(MetricId::CpuNodeUtilization, Value::Float(util));
        s.values.set(MetricId::MemoryWorkingSet, Value::Int(3 << 30));
        s
    }

    fn pod(name: &str, rate: i64) -> MetricSet {
        let mut s = MetricSet::new(EntityKey::Pod { ns: "web".into(), pod: name.into() });
        s.values.set(MetricId::CpuUsageRate, Value::Int(rate));
        s
    }

    #[test]
    fn renders_nodes_busiest_pods_and_counts() {
        let mut sets = vec![node("node-a", Some(850), 0.2125), node("node-b", None, 0.0)];
        sets.extend((0..12).map(|i| pod(&format!("p{i:02}"), i * 10)));
        let text = render(&MetricBatch { time: 1_793_527_260_000, sets });
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("window 2026-11-01T10:01:00Z: 2 nodes, 12 pods"), "{text}");
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["NODE", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
        );
        assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["node-a", "850m", "21%", "3072Mi", "-"]);
        assert_eq!(lines[3].split_whitespace().collect::<Vec<_>>(), ["node-b", "-", "0%", "3072Mi", "-"]);
        assert_eq!(lines[4], "busiest pods (10 of 12):");
        assert_eq!(lines[6].split_whitespace().next_back(), Some("-"));
        assert!(lines[6].contains("p11") && lines[6].contains("110m"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("web")).count(), 10);
    }

    #[test]
    fn shares_merged_in_any_order_print_the_whole_window() {
        let mut sets =
            vec![node("node-a", Some(850), 0.2125), node("node-b", None, 0.0), node("node-c", Some(5), 0.5)];
        // Ties on CPU: the name decides, as in the window's sorted sets.
        sets.extend((0..15).map(|i| pod(&format!("p{i:02}"), (i % 4) * 10)));
        sets.push(MetricSet::new(EntityKey::Cluster));
        let time = 1_793_527_260_000;
        let whole = render(&MetricBatch { time, sets: sets.clone() });
        let mut shares: Vec<Vec<MetricSet>> = vec![Vec::new(); 3];
        for (i, set) in sets.into_iter().enumerate() {
            shares[(i * 7) % 3].push(set);
        }
        let mut merged = WindowTable::empty(time);
        for share in shares.iter().rev() {
            merged.merge(WindowTable::of(time, share));
        }
        assert_eq!(render_table(&merged), whole);
        assert!(whole.contains("3 nodes, 15 pods"), "{whole}");
        assert!(whole.contains("busiest pods (10 of 15)"), "{whole}");
    }

    #[test]
    fn renders_one_line_per_event_with_the_message_escaped() {
        use crate::sinks::influxdb::events::tests::{LAST_MS, pulled, service_event};
        let mut no_time = service_event();
        no_time.last_timestamp = 0;
        no_time.first_timestamp = 0;
        no_time.reason = "".into();
        no_time.involved.namespace = "".into();
        no_time.namespace = "".into();
        let events = [
            pulled(3, LAST_MS, "Back-off pulling \"img\"\nsecond line\r\n\tC:\\x \u{1b}[0m"),
            service_event(),
            no_time,
        ];
        let text = render_events(&events);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[0].split("  ").filter(|c| !c.is_empty()).map(str::trim).collect::<Vec<_>>(),
            [
                "2019-08-30T20:43:05Z",
                "Normal",
                "default/pod/hello-1567197780-mn4mv",
                "Pulled",
                "x3",
                r#"Back-off pulling "img"\nsecond line\r\n\tC:\\x \u{1b}[0m"#,
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().take(5).collect::<Vec<_>>(),
            ["2017-04-06T09:45:53Z", "Normal", "default/service/all-hello", "CreatingLoadBalancer", "x1"]
        );
        assert!(lines[1].ends_with("x1  Creating load balancer"), "{text}");
        assert_eq!(
            lines[2].split_whitespace().take(5).collect::<Vec<_>>(),
            ["-", "Normal", "service/all-hello", "-", "x1"]
        );
        // Columns line up.
        let count_at: Vec<usize> = lines.iter().map(|l| l.find(" x").unwrap()).collect();
        assert!(count_at.iter().all(|at| *at == count_at[0]), "{text}");
    }
}
